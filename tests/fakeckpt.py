"""Small checkpoints in every key layout that pretrained-weight loading accepts (this is not a test module).

``write_checkpoint(path, layout, backbone)`` stores the tensors of ``backbone`` (a state dict under our
downstream names ``tokenizer.embedding.encoder.*``, ``positional_encoding.*``, ``encoder.*``) renamed
the way ``layout`` names them, with that layout's extra entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypedDict

import torch

from pointjepa.modules.backbone import build_backbone
from tests.conftest import BACKBONE

Layout = Literal["ours", "original", "point2vec", "point_mae", "point_bert", "point_bert_finetuned"]
LAYOUTS: tuple[Layout, ...] = ("ours", "original", "point2vec", "point_mae", "point_bert", "point_bert_finetuned")
#: Layouts of Point-MAE / Point-BERT: no qkv bias, no hyper-parameters in the checkpoint.
BASE_MODEL_LAYOUTS: tuple[Layout, ...] = ("point_mae", "point_bert", "point_bert_finetuned")


class BackboneSizes(TypedDict):
    """Sizes of a backbone under `build_backbone`'s names."""

    num_groups: int
    group_size: int
    dim: int
    depth: int
    heads: int


#: ``BACKBONE`` under `build_backbone`'s names.
TINY = BackboneSizes(num_groups=8, group_size=4, dim=32, depth=2, heads=4)


def tiny_backbone_state(
    seed: int = 0, qkv_bias: bool = True, tokenizer_embedding_dim: int | None = None
) -> dict[str, torch.Tensor]:
    """A random tiny backbone (TINY sizes) under our downstream names, with non-trivial BN statistics;
    with ``tokenizer_embedding_dim`` its tokenizer has Point-BERT's projection (``tokenizer.projection``)."""
    torch.manual_seed(seed)
    backbone = build_backbone(**TINY, qkv_bias=qkv_bias, tokenizer_embedding_dim=tokenizer_embedding_dim)
    modules = {
        "tokenizer": backbone.tokenizer,
        "positional_encoding": backbone.positional_encoding,
        "encoder": backbone.encoder,
    }
    state = {f"{name}.{k}": v.clone() for name, module in modules.items() for k, v in module.state_dict().items()}
    for key in state:
        if key.endswith(("running_mean", "running_var")):
            state[key] = torch.rand_like(state[key]) + 0.5
    return state


def _rename(state: dict[str, torch.Tensor], prefixes: dict[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        old = next(p for p in prefixes if key.startswith(p))
        out[prefixes[old] + key[len(old) :]] = value
    return out


def layout_checkpoint(layout: Layout, backbone: dict[str, torch.Tensor]) -> dict:
    """The checkpoint dict ``layout`` would hold for these backbone tensors."""
    dim = backbone["encoder.norm.weight"].shape[0]
    if layout in ("ours", "original"):
        state = _rename(
            backbone,
            {"tokenizer.": "tokenizer.", "positional_encoding.": "positional_encoding.", "encoder.": "student."},
        )
        state |= {
            k.replace("student.", "teacher.ema_model.", 1): v + 1 for k, v in state.items() if k.startswith("student.")
        }
        state |= {"teacher.step": torch.tensor(7), "predictor.mask_token": torch.zeros(1, 1, 16)}
        if layout == "original":
            state |= {
                k.replace("student.", "teacher.online_model.", 1): v
                for k, v in state.items()
                if k.startswith("student.")
            }
            state |= {"teacher.initted": torch.tensor(True), "mask_token": torch.zeros(dim)}
        return {"state_dict": state, "hyper_parameters": dict(BACKBONE), "epoch": 3}
    if layout == "point2vec":
        prefixes = {
            "tokenizer.embedding.encoder.": "tokenizer.embedding.",
            "positional_encoding.": "positional_encoding.",
            "encoder.": "student.",
        }
        state = _rename(backbone, prefixes)
        state |= {"regressor.weight": torch.zeros(dim, dim), "mask_token": torch.zeros(dim)}
        return {"state_dict": state, "hyper_parameters": dict(BACKBONE)}
    prefixes = {
        "tokenizer.embedding.encoder.": "encoder.",
        "tokenizer.projection.": "reduce_dim.",
        "positional_encoding.": "pos_embed.",
        "encoder.blocks.": "blocks.blocks.",
        "encoder.norm.": "norm.",
    }
    state = _rename(backbone, prefixes)
    for conv in ("first_conv", "second_conv"):  # their pre-norm convolutions have a bias; ours fold it away
        bias = torch.randn_like(state[f"encoder.{conv}.1.running_mean"])
        state[f"encoder.{conv}.0.bias"] = bias
        state[f"encoder.{conv}.1.running_mean"] = state[f"encoder.{conv}.1.running_mean"] + bias
    if layout == "point_mae":
        base = {f"module.MAE_encoder.{k}": v for k, v in state.items()}
        base |= {"module.mask_token": torch.zeros(1, 1, dim), "module.MAE_decoder.norm.weight": torch.ones(dim)}
        base |= {
            "module.decoder_pos_embed.0.weight": torch.zeros(128, 3),
            "module.increase_dim.0.weight": torch.zeros(96, dim, 1),
        }
        return {"base_model": base, "epoch": 300}
    state |= {"cls_token": torch.randn(1, 1, dim), "cls_pos": torch.randn(1, 1, dim)}
    if layout == "point_bert_finetuned":  # Point-BERT's fine-tuned model: no transformer_q, its own head
        base = {f"module.{k}": v for k, v in state.items()}
        return {"base_model": base | {"module.cls_head_finetune.0.weight": torch.zeros(256, 2 * dim)}}
    state |= {"lm_head.weight": torch.zeros(8, dim)}
    base = {f"module.transformer_q.{k}": v for k, v in state.items()}
    base |= {"module.transformer_k.norm.weight": torch.ones(dim), "module.dvae.codebook": torch.zeros(8, 4)}
    return {"base_model": base}


def write_checkpoint(path: str | Path, layout: Layout, backbone: dict[str, torch.Tensor]) -> Path:
    """Save ``layout_checkpoint(layout, backbone)`` to ``path``; returns the path."""
    path = Path(path)
    torch.save(layout_checkpoint(layout, backbone), path)
    return path
