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

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from pytorch_lightning.utilities import rank_zero_info

from pointjepa.eval._cli_common import build_parser, parse_with_data, pick_device, save_png, split_loader
from pointjepa.models.point_jepa import PointJepa
from pointjepa.modules.samplers import sample_context, sample_targets
from pointjepa.modules.sequencer import sequence_order
from pointjepa.ops import ball_query, gather_points, knn
from pointjepa.utils.checkpoint import CheckpointError, load_checkpoint

REST, CONTEXT = -2, -1  # point roles; target block i has role i


@dataclass
class TargetContext:
    """The blocks chosen on one cloud: points (N, 3), centers (T, 3) and groups (T, K) point indices in
    sequence order, target positions (M, k), context positions (n,) and each point's role (N,)."""

    points: np.ndarray
    centers: np.ndarray
    groups: np.ndarray
    targets: np.ndarray
    context: np.ndarray
    roles: np.ndarray


@torch.no_grad()
def choose_blocks(model: PointJepa, points: torch.Tensor, generator: torch.Generator | None = None) -> TargetContext:
    """Validation transforms, grouping, sequencing and target / context sampling of ``model`` on one
    cloud points (N, 3) -> the chosen blocks (FPS from the first point, as in evaluation)."""
    if points.dim() != 2 or points.shape[-1] != 3:
        raise ValueError(f"points: expected one cloud (N, 3), got {tuple(points.shape)}")
    hp = model.hparams
    was_training = model.training
    model.eval()
    try:
        cloud = model.val_transformations(points.unsqueeze(0).float())  # (1, N', 3)
        _, centers = model.tokenizer.grouping(cloud)  # (1, T, 3)
    finally:
        model.train(was_training)
    grouping = model.tokenizer.grouping
    if grouping.group_radius is None:
        idx = knn(centers, cloud, grouping.group_size)[1]
    else:
        idx = ball_query(centers, cloud, grouping.group_size, grouping.group_radius)
    order = sequence_order(centers, model.sequencer.method)  # (1, T)
    centers = gather_points(centers, order)[0]
    groups = idx[0][order[0]]  # (T, K)
    num_tokens = centers.shape[0]
    targets = sample_targets(
        num_tokens, hp.num_targets_per_sample, model.target_ratio, hp.target_sample_method, generator
    )
    context = sample_context(num_tokens, targets, model.context_ratio, hp.context_sample_method, generator)

    roles = torch.full((cloud.shape[1],), REST, dtype=torch.long, device=cloud.device)
    roles[groups[context.to(groups.device)].reshape(-1)] = CONTEXT
    for block, positions in enumerate(targets.to(groups.device)):
        roles[groups[positions].reshape(-1)] = block
    return TargetContext(
        points=cloud[0].cpu().numpy(),
        centers=centers.cpu().numpy(),
        groups=groups.cpu().numpy(),
        targets=targets.numpy(),
        context=context.numpy(),
        roles=roles.cpu().numpy(),
    )


def target_context_figure(
    blocks: TargetContext, title: str = "context and target blocks", elev: float = 20.0, azim: float = -60.0
) -> Figure:
    """3-D scatter of ``blocks``: context points blue, one colour per target block, the rest grey."""
    figure = Figure(figsize=(5.5, 5.0))
    ax = figure.add_subplot(projection="3d")
    colours = matplotlib.colormaps["tab10"]
    p = blocks.points
    # y is "up" in ShapeNet; matplotlib's vertical axis is the third one
    rest = blocks.roles == REST
    ax.scatter(p[rest, 0], p[rest, 2], p[rest, 1], s=2, color="0.8", depthshade=False)
    ax.scatter(*_xzy(p[blocks.roles == CONTEXT]), s=4, color=colours(0), depthshade=False)
    for block in range(len(blocks.targets)):
        ax.scatter(*_xzy(p[blocks.roles == block]), s=5, color=colours(1 + block % 9), depthshade=False)
    ax.plot(*_xzy(blocks.centers), color="0.3", linewidth=0.5, alpha=0.6)
    handles = [
        Line2D([], [], marker="o", linestyle="", color="0.8", label="rest"),
        Line2D([], [], marker="o", linestyle="", color=colours(0), label=f"context ({len(blocks.context)} tokens)"),
    ]
    handles += [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color=colours(1 + i % 9),
            label=f"target {i + 1} ({blocks.targets.shape[1]} tokens)",
        )
        for i in range(len(blocks.targets))
    ]
    handles.append(Line2D([], [], color="0.3", linewidth=0.8, label="sequence order"))
    ax.legend(handles=handles, loc="upper left", fontsize="x-small", framealpha=0.8)
    ax.view_init(elev=elev, azim=azim)
    extent = np.abs(p).max() if len(p) else 1.0
    for axis in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        axis(-extent, extent)
    ax.set_box_aspect((1, 1, 1), zoom=1.3)
    ax.set_axis_off()
    ax.set_title(title, fontsize="small")
    figure.tight_layout()
    return figure


def _xzy(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return points[:, 0], points[:, 2], points[:, 1]


def point_jepa_from_hparams(hparams: dict, source: str) -> PointJepa:
    """``PointJepa`` of a checkpoint's hyper-parameters or a config's ``model:`` section, without SVM
    validation and pretrained weights; keys it does not know are reported and left out."""
    left_out = {"self", "svm_validation", "pretrained_ckpt_path"}
    accepted = set(inspect.signature(PointJepa.__init__).parameters) - left_out
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
    if cfg.index >= len(dataset):
        raise ValueError(f"--index {cfg.index}: the {cfg.split} split has {len(dataset)} clouds")
    item = dataset[cfg.index]
    points = torch.as_tensor(item[0]).to(device)
    blocks = choose_blocks(model, points, torch.Generator().manual_seed(cfg.seed))
    title = f"{Path(cfg.ckpt).name}: {cfg.split} cloud {cfg.index}, {model.hparams.token_seq_method}"
    return save_png(target_context_figure(blocks, title), cfg.output, cfg.dpi)


if __name__ == "__main__":
    from pointjepa.utils.cli import run_cli

    run_cli(lambda: print(f"wrote {main()}"))
