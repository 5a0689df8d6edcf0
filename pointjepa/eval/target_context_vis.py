r"""One point cloud with the context tokens, target blocks and the remaining tokens that Point-JEPA's
sequencer and samplers choose on it, as a PNG.

    python -m pointjepa.eval.target_context_vis --ckpt artifacts/<run>/checkpoints/last.ckpt \
        --config configs/Point-JEPA/pretraining/shapenet.yaml --index 0 --seed 0 --output target_context.png

The tokenizer, sequencer and sampler settings come from the pretraining checkpoint's hyper-parameters;
the cloud is item ``--index`` of the data module's split (``--config``'s ``data:`` section or
``--data.*`` options), with the validation transforms applied. Every point takes the colour of the
token group it belongs to (target over context over the rest); the line joins the token centers in
sequence order.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from pathlib import Path

import torch
from pytorch_lightning.utilities import rank_zero_info

from pointjepa.eval._cli_common import build_parser, parse_with_data, pick_device, split_loader
from pointjepa.models.point_jepa import PointJepa
from pointjepa.utils.checkpoint import CheckpointError, load_checkpoint
from pointjepa.viz import choose_blocks, save_png, target_context_figure


def point_jepa_from_hparams(hparams: dict, source: str) -> PointJepa:
    """``PointJepa`` of a checkpoint's hyper-parameters or a config's ``model:`` section, without SVM
    validation and pretrained weights; keys it does not know are reported and left out."""
    left_out = {"self", "svm_validation", "pretrained_ckpt_path"}
    accepted = set(PointJepa.config_keys()) - left_out
    ignored = sorted(k for k in hparams if k not in accepted | left_out and not k.startswith("_"))
    if ignored:
        rank_zero_info(f"{source}: hyper-parameters not used by PointJepa: {', '.join(ignored)}")
    return PointJepa(**{k: v for k, v in hparams.items() if k in accepted})


def model_from_checkpoint(path: str) -> PointJepa:
    """The ``PointJepa`` of a pretraining checkpoint's hyper-parameters (ours or the original's; no weights
    are needed: grouping, sequencing and sampling do not depend on them)."""
    checkpoint = load_checkpoint(path)
    state = checkpoint.get("state_dict", {})
    if not any(key.startswith(("student.", "predictor.")) for key in state):
        raise CheckpointError(f"{path}: not a Point-JEPA pretraining checkpoint (no student.* / predictor.* weights)")
    return point_jepa_from_hparams(dict(checkpoint.get("hyper_parameters") or {}), path)


def main(args: Sequence[str] | None = None) -> Path:
    """Run the command on ``args`` (default: the command line) -> the PNG written."""
    parser = build_parser(__doc__, "python -m pointjepa.eval.target_context_vis", "target_context.png")
    parser.add_argument("--index", type=int, default=0, help="which cloud of the split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the target and context samplers")
    cfg, datamodule = parse_with_data(parser, args)
    if cfg.index < 0:
        parser.error(f"--index: expected >= 0, got {cfg.index}")
    device = pick_device(cfg.device)
    model = model_from_checkpoint(cfg.ckpt).to(device)
    dataset = split_loader(datamodule, cfg.split).dataset
    if not isinstance(dataset, Sized):
        raise ValueError(f"--index: the {cfg.split} split is a stream without a length; expected a map-style data set")
    if cfg.index >= len(dataset):
        raise ValueError(f"--index {cfg.index}: the {cfg.split} split has {len(dataset)} clouds")
    item = dataset[cfg.index]
    points = torch.as_tensor(item[0]).to(device)
    blocks = choose_blocks(model, points, torch.Generator().manual_seed(cfg.seed))
    title = f"{Path(cfg.ckpt).name}: {cfg.split} cloud {cfg.index}, {model.sequencer.method}"
    return save_png(target_context_figure(blocks, title), cfg.output, cfg.dpi)


if __name__ == "__main__":
    from pointjepa.cli import run_cli

    run_cli(lambda: print(f"wrote {main()}"))
