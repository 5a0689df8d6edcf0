"""Feature normalisations used for JEPA targets."""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

NormKind = Literal["layer", "instance", "group", "batch"]
NORM_KINDS: tuple[str, ...] = get_args(NormKind)


def normalize(x: torch.Tensor, kind: NormKind | Literal["none"] | None) -> torch.Tensor:
    """x (B, T, C) -> same shape, normalised without learned parameters.

    ``layer``: over C per token; ``instance``: over T per channel; ``group``: over (T, C) per
    sample; ``batch``: over (B, T) per channel; ``None``: unchanged.
    """
    if kind is None or kind == "none":
        return x
    if kind == "layer":
        return F.layer_norm(x, x.shape[-1:])
    if kind == "instance":
        return F.instance_norm(x.transpose(1, 2)).transpose(1, 2)
    if kind == "group":
        return F.layer_norm(x, x.shape[-2:])
    if kind == "batch":
        return F.batch_norm(x.transpose(1, 2), None, None, training=True).transpose(1, 2)
    raise ValueError(f"normalisation: expected one of {list(NORM_KINDS)} or null, got {kind!r}")
