r"""t-SNE of a checkpoint's encoder features on a data module's split, coloured by class, as a PNG.

    python -m pointjepa.eval.embedding_cluster_vis --ckpt artifacts/<run>/checkpoints/last.ckpt \
        --config configs/Point-JEPA/classification/modelnet40.yaml --output tsne.png [--max_samples 2000]

Any backbone checkpoint works (ours for pretraining or fine-tuning, the original Point-JEPA / Point2Vec
ones, Point-MAE / Point-BERT ``base_model``). Features are the max and mean of the encoder's final
tokens, as in the SVM probe; clouds go through the checkpoint's evaluation transforms (FPS to ``--num_points``,
from starts drawn with ``--seed``). The clouds are the first ``--max_samples`` of the split in its stored order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from pointjepa.datasets.device_loader import DeviceBatchLoader
from pointjepa.eval._cli_common import build_parser, ordered_loader, parse_with_data, pick_device
from pointjepa.metrics.svm import extract_features
from pointjepa.utils.checkpoint import TRUST_OPTION, opt_in_named
from pointjepa.viz import label_names, save_png, tsne_figure


class FirstBatches:
    """The first ``count`` batches of ``loader``, with a length (for the progress bar)."""

    def __init__(self, loader: DataLoader | DeviceBatchLoader, count: int) -> None:
        self.loader, self.count = loader, min(count, len(loader))

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator:
        return itertools.islice(iter(self.loader), self.count)


def main(args: Sequence[str] | None = None) -> Path:
    """Run the command on ``args`` (default: the command line) -> the PNG written."""
    from pointjepa.api import load_encoder

    parser = build_parser(__doc__, "python -m pointjepa.eval.embedding_cluster_vis", "tsne.png")
    parser.add_argument(
        "--num_points", type=int | None, default=None, help="FPS subsample size (default: the checkpoint model's)"
    )
    parser.add_argument("--max_samples", type=int, default=2000, help="embed at most this many clouds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the FPS start points and of t-SNE")
    cfg, datamodule = parse_with_data(parser, args)
    if (cfg.num_points is not None and cfg.num_points < 1) or cfg.max_samples < 3:
        parser.error(
            f"--num_points must be positive and --max_samples at least 3, got {cfg.num_points} and {cfg.max_samples}"
        )
    device = pick_device(cfg.device)
    with opt_in_named(TRUST_OPTION):
        encoder = load_encoder(cfg.ckpt, device=device, num_points=cfg.num_points, trusted=cfg.trust_checkpoint)
    pl.seed_everything(cfg.seed, verbose=False)  # draws a data set makes when set up or read
    embed = encoder.seeded(cfg.seed)

    loader = ordered_loader(datamodule, cfg.split, cfg.seed)  # the first clouds of the split, not a shuffle
    batches = FirstBatches(loader, math.ceil(cfg.max_samples / (loader.batch_size or 1)))
    features, labels = extract_features(embed, batches, device, progress=True, desc=f"{cfg.split} features")
    features, labels = features[: cfg.max_samples], labels[: cfg.max_samples]
    with tqdm(total=1, desc=f"t-SNE of {len(features)} clouds", leave=False) as bar:
        figure = tsne_figure(features, labels, label_names(datamodule), seed=cfg.seed)
        bar.update()
    figure.axes[0].set_title(f"t-SNE: {Path(cfg.ckpt).name}, {cfg.split} split ({len(features)} clouds)")
    return save_png(figure, cfg.output, cfg.dpi)


if __name__ == "__main__":
    from pointjepa.cli import run_cli

    run_cli(lambda: print(f"wrote {main()}"))
