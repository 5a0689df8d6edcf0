"""ViT encoder over point tokens, built from timm blocks (fused scaled-dot-product attention)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Block as TimmBlock
from torch import nn


class Block(TimmBlock):
    """timm's pre-norm ViT block that also hands back its MLP ("ffn") output.

    Parameter names are timm's (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``,
    ``mlp.fc2``), which are also the original Point-JEPA names.
    """

    def forward_with_ffn(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> block output (B, T, C), MLP output before the residual (B, T, C)."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        ffn = self.mlp(self.norm2(x))
        return x + self.drop_path2(self.ls2(ffn)), ffn


@dataclass
class TransformerEncoderOutput:
    """What the encoder returns: the final normed state and, on request, per-block tensors."""

    last_hidden_state: torch.Tensor  # (B, T, C)
    hidden_states: list[torch.Tensor] | None = None  # depth x (B, T, C), block outputs before the final norm
    ffns: list[torch.Tensor] | None = None  # depth x (B, T, C), MLP outputs


def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Stochastic depth rising linearly from 0 to ``drop_path_rate`` over ``depth`` blocks."""
    return torch.linspace(0, drop_path_rate, depth).tolist()


class TransformerEncoder(nn.Module):
    """Stack of ViT blocks with the positional embedding added before every block (or once).

    Args:
        embed_dim: token width C.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / C.
        qkv_bias: bias on the qkv projection.
        drop_rate: dropout after attention projection and in the MLP.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: one rate for all blocks, or one per block.
        add_pos_at_every_layer: add ``pos`` to the input of every block instead of only the first.
    """

    def __init__(
        self,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float | list[float] = 0.0,
        add_pos_at_every_layer: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed dim {embed_dim} is not divisible by the number of heads {num_heads}")
        rates = drop_path_rate if isinstance(drop_path_rate, list) else [drop_path_rate] * depth
        if len(rates) != depth:
            raise ValueError(f"drop_path_rate: expected {depth} per-block rates, got {len(rates)}")
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rate,
                norm_layer=nn.LayerNorm,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.add_pos_at_every_layer = add_pos_at_every_layer

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        return_hidden_states: bool = False,
        return_ffns: bool = False,
    ) -> TransformerEncoderOutput:
        """x (B, T, C), pos (B, T, C) -> TransformerEncoderOutput."""
        hidden_states: list[torch.Tensor] | None = [] if return_hidden_states else None
        ffns: list[torch.Tensor] | None = [] if return_ffns else None
        if not self.add_pos_at_every_layer:
            x = x + pos
        for block in self.blocks:
            if self.add_pos_at_every_layer:
                x = x + pos
            if ffns is None:
                x = block(x)
            else:
                if not isinstance(block, Block):
                    raise TypeError(f"return_ffns needs {Block.__qualname__} blocks, got {type(block).__name__}")
                x, ffn = block.forward_with_ffn(x)
                ffns.append(ffn)
            if hidden_states is not None:
                hidden_states.append(x)
        return TransformerEncoderOutput(self.norm(x), hidden_states, ffns)
