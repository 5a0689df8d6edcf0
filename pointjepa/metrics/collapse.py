"""A warning sign of representation collapse: how much token features still vary."""

from __future__ import annotations

import torch


def token_std(tokens: torch.Tensor) -> torch.Tensor:
    """(..., C) -> std of every channel over all tokens of the batch, averaged: a collapse warning."""
    return tokens.reshape(-1, tokens.shape[-1]).float().std(0).mean()
