"""The context tokens, target blocks and remaining tokens that Point-JEPA chooses on one cloud, and
their 3-D figure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import nn

from pointjepa.modules.samplers import ContextMethod, TargetMethod, sample_context, sample_targets
from pointjepa.modules.sequencer import PointSequencer, sequence_order
from pointjepa.modules.tokenizer import PointcloudTokenizer
from pointjepa.ops import ball_query, gather_points, knn

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


class BlockChoosingModel(Protocol):
    """What ``choose_blocks`` reads of a model: a ``PointJepa`` has it all."""

    training: bool

    def train(self, mode: bool = True) -> object: ...

    def eval(self) -> object: ...

    @property
    def val_transformations(self) -> nn.Module: ...

    @property
    def tokenizer(self) -> PointcloudTokenizer: ...

    @property
    def sequencer(self) -> PointSequencer: ...

    @property
    def num_targets(self) -> int: ...

    @property
    def target_ratio(self) -> tuple[float, float]: ...

    @property
    def target_method(self) -> TargetMethod: ...

    @property
    def context_ratio(self) -> tuple[float, float] | None: ...

    @property
    def context_method(self) -> ContextMethod: ...


@torch.no_grad()
def choose_blocks(
    model: BlockChoosingModel, points: torch.Tensor, generator: torch.Generator | None = None
) -> TargetContext:
    """Validation transforms, grouping, sequencing and target / context sampling of a ``PointJepa``
    ``model`` on one cloud points (N, 3) -> the chosen blocks (FPS from the first point, as in evaluation)."""
    if points.dim() != 2 or points.shape[-1] != 3:
        raise ValueError(f"points: expected one cloud (N, 3), got {tuple(points.shape)}")
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
    targets = sample_targets(num_tokens, model.num_targets, model.target_ratio, model.target_method, generator)
    context = sample_context(num_tokens, targets, model.context_ratio, model.context_method, generator)

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
