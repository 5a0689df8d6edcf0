"""JEPA predictor: predicts target-token features from context encodings and target centers."""

from __future__ import annotations

import torch
from torch import nn

from pointjepa.modules.positional import positional_mlp
from pointjepa.modules.transformer import TransformerEncoder


class TransformerPredictor(nn.Module):
    """Narrow transformer over [context; queries]; a query is the positional embedding of a target
    center plus a learned mask token, with zero features.

    ``predictor_norm`` exists so that original Point-JEPA checkpoints load key for key; like the
    original, the output is normalised by the inner encoder's final ``norm`` and ``predictor_norm``
    is left out of the computation (it is frozen).

    Args:
        embed_dim: encoder width C.
        predictor_embed_dim: predictor width D.
        depth: predictor blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        qkv_bias: bias on the qkv projection.
        drop_rate: dropout.
        attn_drop_rate: attention dropout.
        drop_path_rate: stochastic depth of every block (constant over depth, as published).
        add_pos_at_every_layer: add positions before every block.
        add_target_pos: give context tokens their positional embedding (else zeros).
    """

    def __init__(
        self,
        embed_dim: int = 384,
        predictor_embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        add_pos_at_every_layer: bool = False,
        add_target_pos: bool = True,
    ) -> None:
        super().__init__()
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        self.positional_encoding = positional_mlp(predictor_embed_dim)
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim).requires_grad_(False)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)
        self.predictor = TransformerEncoder(
            embed_dim=predictor_embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            add_pos_at_every_layer=add_pos_at_every_layer,
        )
        self.add_target_pos = add_target_pos

    def forward(
        self, context: torch.Tensor, context_centers: torch.Tensor, target_centers: torch.Tensor
    ) -> torch.Tensor:
        """context (B, N, C), context_centers (B, N, 3), target_centers (B, M, K, 3) -> predictions (B, M, K, C).

        The M target blocks are predicted in one call: each (sample, block) pair is one row of the batch.
        """
        B, M, K, _ = target_centers.shape
        x = self.predictor_embed(context)  # (B, N, D)
        N, D = x.shape[1], x.shape[2]
        if self.add_target_pos:
            context_pos = self.positional_encoding(context_centers)
        else:
            context_pos = x.new_zeros(B, N, D)
        queries = self.positional_encoding(target_centers) + self.mask_token  # (B, M, K, D)

        x = x.unsqueeze(1).expand(B, M, N, D)
        context_pos = context_pos.unsqueeze(1).expand(B, M, N, D).to(queries.dtype)
        tokens = torch.cat([x, torch.zeros_like(queries, dtype=x.dtype)], dim=2).reshape(B * M, N + K, D)
        pos = torch.cat([context_pos, queries], dim=2).reshape(B * M, N + K, D)
        out = self.predictor(tokens, pos).last_hidden_state[:, N:]  # (B*M, K, D)
        return self.predictor_proj(out).reshape(B, M, K, -1)
