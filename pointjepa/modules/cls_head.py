"""Classification pooling and heads (parameter names of the original ``cls_head.*``)."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from pointjepa.modules.backbone import pooled_features

Pooling = Literal["cls_token", "mean", "max", "mean+max", "mean+max+cls_token"]
HeadKind = Literal["mlp", "linear"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
HEADS: tuple[str, ...] = get_args(HeadKind)


def uses_cls_token(pooling: Pooling) -> bool:
    """Whether ``pooling`` needs a learned class token prepended to the tokens."""
    return pooling in ("cls_token", "mean+max+cls_token")


def pooled_dim(pooling: Pooling, dim: int) -> int:
    """Width of the pooled embedding for token width ``dim``."""
    if pooling not in POOLINGS:
        raise ValueError(f"cls_head_pooling: expected one of {list(POOLINGS)}, got {pooling!r}")
    return {"cls_token": dim, "mean": dim, "max": dim, "mean+max": 2 * dim, "mean+max+cls_token": 3 * dim}[pooling]


def pool_tokens(tokens: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Encoder output (B, T, C) -> embedding (B, pooled_dim).

    With a class-token pooling, token 0 is the class token and the others are the point tokens;
    ``mean+max`` concatenates max then mean (the SVM probe features), ``mean+max+cls_token`` puts
    the class token first.
    """
    if pooling == "cls_token":
        return tokens[:, 0]
    points = tokens[:, 1:] if pooling == "mean+max+cls_token" else tokens
    if pooling == "mean":
        return points.mean(dim=1)
    if pooling == "max":
        return points.max(dim=1).values
    pooled = pooled_features(points)
    return torch.cat([tokens[:, 0], pooled], dim=-1) if pooling == "mean+max+cls_token" else pooled


def build_cls_head(
    kind: HeadKind, in_dim: int, num_classes: int, hidden_dim: int = 256, dropout: float = 0.5
) -> nn.Module:
    """Embedding (B, in_dim) -> logits (B, num_classes).

    Args:
        kind: ``mlp`` (Linear-BN-ReLU-Dropout twice with width ``hidden_dim``, then Linear) or ``linear``.
        in_dim: embedding width.
        num_classes: number of classes.
        hidden_dim: MLP width (``cls_head_dim``).
        dropout: MLP dropout (``cls_head_dropout``).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes}")
    if kind == "linear":
        return nn.Linear(in_dim, num_classes)
    if kind != "mlp":
        raise ValueError(f"cls_head: expected one of {list(HEADS)}, got {kind!r}")
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),  # no bias: a batch norm follows
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, num_classes),
    )
