"""Point cloud tokenizer: FPS centers, kNN / ball-query groups, mini-PointNet tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from pointjepa.modules.pointnet import PointNetEncoder
from pointjepa.ops import ball_query, farthest_point_sample, gather_points, knn


class PointcloudGrouping(nn.Module):
    """Split a cloud into ``num_groups`` local neighbourhoods made relative to their centers.

    Centers come from farthest point sampling: a random start point in training mode, the first
    point in eval mode unless ``random_start_in_eval`` is set (a public attribute: set it to force
    random starts in eval, e.g. for voting passes). Each center takes its ``group_size`` nearest
    points, or with ``group_radius`` a ball query (missing slots filled with the first neighbour),
    divided by the radius.

    Args:
        num_groups: number of groups (tokens) T.
        group_size: points per group K.
        group_radius: ball-query radius; ``None`` for kNN.
        random_start_in_eval: start FPS at a random point in eval mode too.
    """

    def __init__(
        self, num_groups: int, group_size: int, group_radius: float | None = None, random_start_in_eval: bool = False
    ) -> None:
        super().__init__()
        if num_groups < 1 or group_size < 1:
            raise ValueError(f"num_groups and group_size must be positive, got {num_groups} and {group_size}")
        if group_radius is not None and group_radius <= 0:
            raise ValueError(f"group_radius: expected a positive radius or null, got {group_radius}")
        self.num_groups = num_groups
        self.group_size = group_size
        self.group_radius = group_radius
        self.random_start_in_eval = random_start_in_eval

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B, N, 3) -> groups (B, T, K, 3), centers (B, T, 3)."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"points: expected (B, N, 3), got {tuple(points.shape)}")
        num_points = points.shape[1]
        if num_points < max(self.num_groups, self.group_size):
            raise ValueError(
                f"point clouds have {num_points} points, fewer than tokenizer_num_groups={self.num_groups} "
                f"or tokenizer_group_size={self.group_size}"
            )
        random_start = self.training or self.random_start_in_eval
        centers, _ = farthest_point_sample(points, self.num_groups, random_start=random_start)
        if self.group_radius is None:
            _, idx = knn(centers, points, self.group_size)
        else:
            idx = ball_query(centers, points, self.group_size, self.group_radius)
        groups = gather_points(points, idx) - centers.unsqueeze(2)  # (B, T, K, 3)
        if self.group_radius is not None:
            groups = groups / self.group_radius
        return groups, centers


class PointcloudTokenizer(nn.Module):
    """Grouping followed by a mini-PointNet per group (and, optionally, a linear projection).

    Args:
        num_groups: tokens per cloud T.
        group_size: points per group K.
        group_radius: ball-query radius, ``None`` for kNN.
        token_dim: token width C.
        embedding: ``small`` or ``large`` mini-PointNet.
        embedding_dim: mini-PointNet output width when it differs from ``token_dim``; a
            ``projection`` Linear(embedding_dim -> token_dim) follows (Point-BERT's 256-d
            tokens and ``reduce_dim``). ``None``: the mini-PointNet makes ``token_dim`` tokens.
        random_start_in_eval: FPS starts at a random point in eval mode too; also a settable
            attribute (that of ``grouping``).
    """

    def __init__(
        self,
        num_groups: int,
        group_size: int,
        group_radius: float | None,
        token_dim: int,
        embedding: Literal["small", "large"] = "small",
        embedding_dim: int | None = None,
        random_start_in_eval: bool = False,
    ) -> None:
        super().__init__()
        if embedding_dim is not None and embedding_dim < 1:
            raise ValueError(f"tokenizer_embedding_dim: expected a positive width or null, got {embedding_dim}")
        self.token_dim = token_dim
        self.grouping = PointcloudGrouping(num_groups, group_size, group_radius, random_start_in_eval)
        width = token_dim if embedding_dim is None else embedding_dim
        self.embedding = PointNetEncoder(3, width, embedding)
        self.projection = nn.Linear(width, token_dim) if width != token_dim else None

    @property
    def random_start_in_eval(self) -> bool:
        """Whether FPS starts at a random point in eval mode too (settable)."""
        return self.grouping.random_start_in_eval

    @random_start_in_eval.setter
    def random_start_in_eval(self, value: bool) -> None:
        self.grouping.random_start_in_eval = value

    @contextmanager
    def random_start(self, enabled: bool = True) -> Iterator[None]:
        """Within the block, FPS starts at a random point in eval mode too (when ``enabled``)."""
        previous = self.random_start_in_eval
        self.random_start_in_eval = previous or enabled
        try:
            yield
        finally:
            self.random_start_in_eval = previous

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B, N, 3) -> tokens (B, T, C), centers (B, T, 3)."""
        groups, centers = self.grouping(points)
        B, T, K, _ = groups.shape
        tokens = self.embedding(groups.reshape(B * T, K, 3)).reshape(B, T, -1)
        if self.projection is not None:
            tokens = self.projection(tokens)
        return tokens, centers
