r"""Confusion matrix of a fine-tuned classification checkpoint on a data module's split, as a PNG.

    python -m pointjepa.eval.plot_confusion --ckpt artifacts/<run>/checkpoints/last.ckpt \
        --config configs/Point-JEPA/classification/modelnet40.yaml --output confusion.png [--normalize true]

The data module comes from a training config's ``data:`` section (``--config``) and/or ``--data``
options (``--data.class_path ... --data.init_args.data_dir ...``). Rows are the true classes,
columns the predictions of the plain evaluation pass (FPS subsampling, validation transforms).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torchmetrics.classification import MulticlassConfusionMatrix
from tqdm.auto import tqdm

from pointjepa.api import load_classifier
from pointjepa.eval._cli_common import build_parser, parse_with_data, pick_device, split_loader
from pointjepa.models.classification import PointJepaClassification
from pointjepa.viz import confusion_figure, label_names, save_png
from pointjepa.viz.confusion import Normalize


@torch.no_grad()
def confusion_matrix(
    model: PointJepaClassification,
    batches: Iterable,
    device: torch.device,
    progress: bool = False,
) -> torch.Tensor:
    """Predictions of ``model`` on ``(points (B, N, 3), labels (B,), ...)`` batches -> confusion counts (K, K)
    (rows: true class, columns: prediction)."""
    metric = MulticlassConfusionMatrix(model.num_classes).to(device)
    for batch in tqdm(batches, desc="predicting", disable=not progress, leave=False):
        points, labels = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        metric.update(model(model.prepare(points, train=False)), labels.reshape(-1))
    return metric.compute().cpu()


def main(args: Sequence[str] | None = None) -> Path:
    """Run the command on ``args`` (default: the command line) -> the PNG written."""
    parser = build_parser(__doc__, "python -m pointjepa.eval.plot_confusion", "confusion_matrix.png")
    parser.add_argument(
        "--normalize", type=Normalize, default="none", help="normalise over true classes (rows), predictions or all"
    )
    cfg, datamodule = parse_with_data(parser, args)
    device = pick_device(cfg.device)
    num_classes = getattr(datamodule, "num_classes", None)
    if not isinstance(num_classes, int):
        raise ValueError(f"--data: {type(datamodule).__name__} has no num_classes (expected a classifying data module)")
    loader = split_loader(datamodule, cfg.split)
    model = load_classifier(cfg.ckpt, num_classes, vote_num=1, device=device)
    counts = confusion_matrix(model, loader, device, progress=True)
    title = f"{Path(cfg.ckpt).name}, {cfg.split} split"
    figure = confusion_figure(counts, label_names(datamodule, model.num_classes), title, cfg.normalize)
    return save_png(figure, cfg.output, cfg.dpi)


if __name__ == "__main__":
    from pointjepa.cli import run_cli

    run_cli(lambda: print(f"wrote {main()}"))
