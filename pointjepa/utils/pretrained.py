"""Pretrained backbone weights from every supported checkpoint layout, mapped to our names.

Layouts: our own Lightning checkpoints (pretraining ``student.*`` or downstream ``encoder.*``), the
original Point-JEPA and Point2Vec Lightning checkpoints, and Point-MAE / Point-BERT ``base_model``
checkpoints (pretraining ``transformer_q.*`` or fine-tuned). The result uses the downstream names
``tokenizer.*``, ``positional_encoding.*``, ``encoder.*`` (plus ``cls_token`` / ``cls_pos`` where a
layout has them); Point-BERT's ``reduce_dim`` (256-d tokens -> encoder width) becomes
``tokenizer.projection``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from pointjepa.utils.checkpoint import CheckpointError, load_checkpoint, reset_nan_batchnorm_stats

BACKBONE_PREFIXES = ("tokenizer.", "positional_encoding.", "encoder.")
EXTRA_KEYS = ("cls_token", "cls_pos")

# (old prefix, new prefix), applied in order, first match wins.
_LIGHTNING_RENAMES = (("student.", "encoder."), ("pos_embedding.", "positional_encoding."))
_POINT_MAE_RENAMES = (
    ("MAE_encoder.blocks.blocks.", "encoder.blocks."),
    ("MAE_encoder.norm.", "encoder.norm."),
    ("MAE_encoder.pos_embed.", "positional_encoding."),
    ("MAE_encoder.encoder.", "tokenizer.embedding."),
)
_POINT_BERT_RENAMES = (
    ("blocks.blocks.", "encoder.blocks."),
    ("norm.", "encoder.norm."),
    ("pos_embed.", "positional_encoding."),
    ("reduce_dim.", "tokenizer.projection."),
    ("encoder.", "tokenizer.embedding."),
)


#: (conv bias, running mean of the batch norm right after it) in the mini-PointNet. Point-MAE and
#: Point-BERT give these convolutions a bias, ours have none: a bias right before a batch norm only
#: shifts its mean, so it is folded into the running mean (the same outputs in training and eval).
_FOLDED_CONV_BIASES = tuple(
    (f"tokenizer.embedding.encoder.{conv}.0.bias", f"tokenizer.embedding.encoder.{conv}.1.running_mean")
    for conv in ("first_conv", "second_conv")
)


def _fold_conv_biases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Point-MAE / Point-BERT mini-PointNet tensors -> ours: pre-norm conv biases folded into the norms."""
    state = dict(state)
    for bias_key, mean_key in _FOLDED_CONV_BIASES:
        if bias_key in state and mean_key in state:
            state[mean_key] = state[mean_key] - state.pop(bias_key)
    return state


def _rename(key: str, renames: Iterable[tuple[str, str]]) -> str:
    for old, new in renames:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _nest_pointnet(key: str) -> str:
    """Point2Vec / Point-MAE keep the mini-PointNet directly under ``tokenizer.embedding``;
    ours nests it in ``encoder``."""
    prefix = "tokenizer.embedding."
    if key.startswith(prefix) and not key.startswith(prefix + "encoder."):
        return prefix + "encoder." + key[len(prefix) :]
    return key


def backbone_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """A loaded checkpoint of any supported layout -> backbone tensors under our downstream names."""
    if "state_dict" in checkpoint:
        items = ((_rename(k, _LIGHTNING_RENAMES), v) for k, v in checkpoint["state_dict"].items())
    elif "base_model" in checkpoint:
        base = {k.removeprefix("module."): v for k, v in checkpoint["base_model"].items()}
        if any(k.startswith("transformer_q.") for k in base):  # Point-BERT pretraining: the query encoder
            base = {k.removeprefix("transformer_q."): v for k, v in base.items() if k.startswith("transformer_q.")}
        renames = _POINT_MAE_RENAMES if any(k.startswith("MAE_encoder.") for k in base) else _POINT_BERT_RENAMES
        items = ((_rename(k, renames), v) for k, v in base.items())
    else:
        raise CheckpointError(
            "unknown checkpoint layout: expected a Lightning checkpoint ('state_dict') or a Point-MAE / "
            f"Point-BERT checkpoint ('base_model'); found keys {sorted(checkpoint)[:10]}"
        )
    state = {}
    for key, value in items:
        key = _nest_pointnet(key)
        if key.startswith(BACKBONE_PREFIXES) or key in EXTRA_KEYS:
            state[key] = value.squeeze(0).squeeze(0) if key in EXTRA_KEYS else value
    if "base_model" in checkpoint:
        state = _fold_conv_biases(state)
    if not any(k.startswith("encoder.") for k in state):
        raise CheckpointError("the checkpoint holds no encoder weights (no student.*, encoder.* or blocks.*)")
    return state


def load_backbone(
    module: nn.Module, path: str | os.PathLike, ignore_encoder_layers: Iterable[int] = (), trusted: bool = False
) -> tuple[list[str], list[str]]:
    """Load pretrained backbone weights from ``path`` into ``module`` (which has ``tokenizer``,
    ``positional_encoding`` and ``encoder``), skipping encoder blocks in ``ignore_encoder_layers``. The file is
    read weights-only unless ``trusted`` (``load_checkpoint``).

    Raises ``CheckpointError`` naming the parameter when shapes do not fit. Batch-norm running
    statistics holding NaN are reset to 0 / 1 (with a warning). Prints one summary of what was
    loaded, missing and unexpected; returns (missing keys, unexpected keys).
    """
    state = backbone_state_dict(load_checkpoint(path, trusted=trusted))
    ignored = tuple(f"encoder.blocks.{i}." for i in ignore_encoder_layers)
    state = {k: v for k, v in state.items() if not k.startswith(ignored)}
    own = module.state_dict()
    if "tokenizer.projection.weight" in state and "tokenizer.projection.weight" not in own:
        width = state["tokenizer.projection.weight"].shape[1]
        raise CheckpointError(
            f"{path}: the checkpoint's tokenizer makes {width}-d tokens projected to the encoder width "
            f"(Point-BERT's reduce_dim); set tokenizer_embedding_dim: {width} to load it"
        )
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(
                f"{path}: parameter {key} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the model "
                "(check encoder_dim / depth / tokenizer options, e.g. tokenizer_embedding_dim)"
            )
    result = module.load_state_dict(state, strict=False)
    reset_nan_batchnorm_stats(module)
    missing = [k for k in result.missing_keys if k.startswith(BACKBONE_PREFIXES)]
    unexpected = list(result.unexpected_keys)
    rank_zero_info(
        f"Pretrained weights from {path}: loaded {len(state) - len(unexpected)} tensors; "
        f"missing backbone keys: {missing or 'none'}; unexpected keys: {unexpected or 'none'}"
    )
    return missing, unexpected
