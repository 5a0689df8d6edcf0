"""One builder for the tokenizer, positional encoding and encoder shared by every task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pointjepa.modules.positional import positional_mlp
from pointjepa.modules.tokenizer import PointcloudTokenizer
from pointjepa.modules.transformer import TransformerEncoder, drop_path_rates


@dataclass
class Backbone:
    """The three modules a task assigns to ``tokenizer``, ``positional_encoding`` and ``student``/``encoder``."""

    tokenizer: PointcloudTokenizer
    positional_encoding: nn.Sequential
    encoder: TransformerEncoder


def build_backbone(
    num_groups: int = 64,
    group_size: int = 32,
    group_radius: float | None = None,
    dim: int = 384,
    depth: int = 12,
    heads: int = 6,
    dropout: float = 0.0,
    attention_dropout: float = 0.0,
    drop_path_rate: float = 0.0,
    add_pos_at_every_layer: bool = True,
    qkv_bias: bool = True,
    tokenizer_embedding_dim: int | None = None,
    random_start_in_eval: bool = False,
) -> Backbone:
    """Tokenizer (mini-PointNet ``small``, projected to ``dim`` when ``tokenizer_embedding_dim`` differs;
    FPS from a random start in eval mode too with ``random_start_in_eval``), positional MLP and ViT
    encoder with linear stochastic depth."""
    return Backbone(
        tokenizer=PointcloudTokenizer(
            num_groups,
            group_size,
            group_radius,
            dim,
            embedding_dim=tokenizer_embedding_dim,
            random_start_in_eval=random_start_in_eval,
        ),
        positional_encoding=positional_mlp(dim),
        encoder=TransformerEncoder(
            embed_dim=dim,
            depth=depth,
            num_heads=heads,
            qkv_bias=qkv_bias,
            drop_rate=dropout,
            attn_drop_rate=attention_dropout,
            drop_path_rate=drop_path_rates(drop_path_rate, depth),
            add_pos_at_every_layer=add_pos_at_every_layer,
        ),
    )


def pooled_features(tokens: torch.Tensor) -> torch.Tensor:
    """Encoder output (B, T, C) -> max and mean over tokens concatenated (B, 2C), the SVM probe features."""
    return torch.cat([tokens.max(dim=1).values, tokens.mean(dim=1)], dim=-1)


def backbone_from_hparams(hparams: Mapping[str, Any]) -> Backbone:
    """``build_backbone`` from a task's ``tokenizer_*`` / ``encoder_*`` config keys."""
    return build_backbone(
        num_groups=hparams["tokenizer_num_groups"],
        group_size=hparams["tokenizer_group_size"],
        group_radius=hparams["tokenizer_group_radius"],
        dim=hparams["encoder_dim"],
        depth=hparams["encoder_depth"],
        heads=hparams["encoder_heads"],
        dropout=hparams["encoder_dropout"],
        attention_dropout=hparams["encoder_attention_dropout"],
        drop_path_rate=hparams["encoder_drop_path_rate"],
        add_pos_at_every_layer=hparams["encoder_add_pos_at_every_layer"],
        qkv_bias=hparams.get("encoder_qkv_bias", True),
        tokenizer_embedding_dim=hparams.get("tokenizer_embedding_dim"),
        random_start_in_eval=hparams.get("fps_random_start_in_eval", False),
    )
