"""Small checkpoints in every key layout that pretrained-weight loading accepts (this is not a test module).

``write_checkpoint(path, layout, backbone)`` stores the tensors of ``backbone`` (a state dict under our
downstream names ``tokenizer.embedding.encoder.*``, ``positional_encoding.*``, ``encoder.*``) renamed
the way ``layout`` names them, with the other entries that project saves and the Python types they hold
(``pointjepa.utils.checkpoint_types`` says where each comes from): the Lightning 1.x training state of the
original Point-JEPA and Point2Vec, and Point-MAE's / Point-BERT's ``optimizer``, ``epoch`` and metrics (a
numpy float64 in Point-BERT's pretraining checkpoint, pickled by numpy 1.x as those files were).
``plant_payload`` makes a hostile checkpoint: one whose loading with pickle runs a shell command.
"""

from __future__ import annotations

import argparse
import os
import shlex
import zipfile
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
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


#: Hyper-parameters of the original Point-JEPA pretraining besides the backbone's (Lightning saves the
#: constructor arguments; ``svm_validation`` holds data modules in training and is replaced by ``{}`` on saving).
ORIGINAL_HPARAMS: dict[str, Any] = dict(
    predictor_embed_dim=192,
    target_sample_ratio=(0.15, 0.2),
    context_sample_ratio=(0.4, 0.75),
    target_layers=[11],
    target_norm=None,
    ema_tau_max=0.9995,
    loss="smooth_l1",
    learning_rate=1e-3,
    transformation_scale_symmetries=(1, 0, 1),
    svm_validation={},
    svm_validation_C=0.012,
    fix_estimated_stepping_batches=None,
    pretrained_ckpt_path=None,
)
#: The same for Point2Vec's pretraining.
POINT2VEC_HPARAMS: dict[str, Any] = dict(
    d2v_masking_ratio=0.65,
    d2v_target_layers=[6, 7, 8, 9, 10, 11],
    decoder=True,
    learning_rate=1e-3,
    transformation_scale_symmetries=(1, 0, 1),
    svm_validation={},
    svm_validation_C=0.012,
)


def _progress(count: int, *stages: str) -> dict[str, Any]:
    """A Lightning loop progress record: ``total`` / ``current`` counters of ``stages``."""
    return {"total": dict.fromkeys(stages, count), "current": dict.fromkeys(stages, 0)}


def adamw_state(tensors: dict[str, torch.Tensor], lr: float = 1e-3) -> dict[str, Any]:
    """The state dict of an AdamW over copies of ``tensors`` after one step, with a cosine schedule's
    ``initial_lr`` in its parameter groups; and that scheduler's state."""
    params = [value.detach().clone().requires_grad_() for value in tensors.values() if value.is_floating_point()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    for param in params:
        param.grad = torch.ones_like(param)
    optimizer.step()
    scheduler.step()
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


def lightning1_state(weights: dict[str, torch.Tensor], version: str, monitor: str) -> dict[str, Any]:
    """What Lightning ``version`` (1.7 / 1.9) saves besides ``state_dict`` and ``hyper_parameters`` after a
    pretraining run of 500 epochs: loop progress, the ModelCheckpoint state, AdamW and pl_bolts' warm-up cosine
    scheduler states, the 16-bit AMP scaler, the hyper-parameter names and the data module's hyper-parameters."""
    steps, epochs = 40500, 500
    batches = _progress(81, "ready", "started", "processed", "completed") | {"is_last_batch": True}
    fit_loop = {
        "state_dict": {},
        "epoch_loop.state_dict": {"_batches_that_stepped": steps},
        "epoch_loop.batch_progress": batches,
        "epoch_loop.scheduler_progress": _progress(epochs, "ready", "completed"),
        "epoch_loop.batch_loop.state_dict": {},
        "epoch_loop.batch_loop.optimizer_loop.state_dict": {},
        "epoch_loop.batch_loop.optimizer_loop.optim_progress": {
            "optimizer": {
                "step": _progress(steps, "ready", "completed"),
                "zero_grad": _progress(steps, "ready", "started", "completed"),
            },
            "optimizer_position": 1,
        },
        "epoch_loop.val_loop.state_dict": {},
        "epoch_loop.val_loop.dataloader_progress": _progress(1, "ready", "completed"),
        "epoch_loop.val_loop.epoch_loop.state_dict": {},
        "epoch_loop.val_loop.epoch_loop.batch_progress": batches,
        "epoch_progress": _progress(epochs, "ready", "started", "processed", "completed"),
    }
    evaluation = {
        "state_dict": {},
        "dataloader_progress": _progress(0, "ready", "completed"),
        "epoch_loop.state_dict": {},
        "epoch_loop.batch_progress": _progress(0, "ready", "started", "processed", "completed")
        | {"is_last_batch": False},
    }
    best = "artifacts/pretraining/version_0/checkpoints/epoch=499-step=40500.ckpt"
    checkpoint_key = (
        f"ModelCheckpoint{{'monitor': '{monitor}', 'mode': '{'min' if 'loss' in monitor else 'max'}', "
        "'every_n_train_steps': 0, 'every_n_epochs': 1, "
        "'train_time_interval': None}"
    )
    training = adamw_state(weights)
    scheduler = training["scheduler"] | dict(warmup_epochs=10, max_epochs=epochs, warmup_start_lr=1e-6, eta_min=1e-6)
    scaler = dict(scale=65536.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000, _growth_tracker=7)
    precision_key = "MixedPrecisionPlugin" if version.startswith("1.9") else "NativeMixedPrecisionPlugin"
    return {
        "epoch": epochs - 1,
        "global_step": steps,
        "pytorch-lightning_version": version,
        "loops": dict(fit_loop=fit_loop, validate_loop=evaluation, test_loop=evaluation, predict_loop=evaluation),
        "callbacks": {
            checkpoint_key: {
                "monitor": monitor,
                "best_model_score": torch.tensor(0.93),
                "best_model_path": best,
                "current_score": torch.tensor(0.93),
                "dirpath": str(Path(best).parent),
                "best_k_models": {best: torch.tensor(0.93)},
                "kth_best_model_path": best,
                "kth_value": torch.tensor(0.93),
                "last_model_path": str(Path(best).parent / "last.ckpt"),
            }
        },
        "optimizer_states": [training["optimizer"]],
        "lr_schedulers": [scheduler],
        precision_key: scaler,
        "hparams_name": "kwargs",
        "datamodule_hparams_name": "kwargs",
        "datamodule_hyper_parameters": {"data_dir": "./data/ShapeNet55", "batch_size": 512, "in_memory": True},
    }


def base_model_state(base: dict[str, torch.Tensor], epoch: int, acc: Any, best_acc: Any) -> dict[str, Any]:
    """What Point-MAE / Point-BERT's ``save_checkpoint`` stores besides ``base_model``: the optimizer's state,
    the epoch and ``Acc_Metric.state_dict()`` of the last and best metrics."""
    return {
        "optimizer": adamw_state(base, lr=5e-4)["optimizer"],
        "epoch": epoch,
        "metrics": {"acc": acc},
        "best_metrics": {"acc": best_acc},
    }


def save_as_numpy1(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` with numpy scalars under numpy 1.x's name, ``numpy.core.multiarray.scalar`` (numpy 2 writes
    ``numpy._core.multiarray.scalar``): the pickle inside the zip is rewritten (protocol 2 names globals in text)."""
    path = Path(path)
    torch.save(checkpoint, path)
    with zipfile.ZipFile(path) as archive:
        records = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for info, data in records:
            if info.filename.endswith("/data.pkl"):
                data = data.replace(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
            archive.writestr(info, data)
    return path


class RunsCommand:
    """An object whose unpickling runs ``command`` in a shell: what a hostile checkpoint carries."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


def plant(path: str | Path, value: Any, out: str | Path | None = None, hyper_parameter: bool = True) -> Path:
    """Add ``value`` to the checkpoint at ``path``, as ``hyper_parameters['note']`` (created if missing) or as
    the top-level entry ``notes`` (which Lightning and the loaders ignore), and save it to ``out`` (default: in
    place); returns the written path."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if hyper_parameter:
        checkpoint.setdefault("hyper_parameters", {})["note"] = value
    else:
        checkpoint["notes"] = value
    out = Path(out or path)
    torch.save(checkpoint, out)
    return out


def plant_payload(path: str | Path, marker: Path, out: str | Path | None = None) -> Path:
    """The checkpoint at ``path`` with a hyper-parameter whose unpickling creates the file ``marker``."""
    return plant(path, RunsCommand(f"touch {shlex.quote(str(marker))}"), out)


def plant_namespace(path: str | Path, out: str | Path | None = None) -> Path:
    """The checkpoint at ``path`` with an entry ``notes`` holding an ``argparse.Namespace``: harmless, but not
    weights-only."""
    return plant(path, argparse.Namespace(lr=0.1), out, hyper_parameter=False)


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
        if layout == "ours":
            return {"state_dict": state, "hyper_parameters": dict(BACKBONE), "epoch": 3}
        state |= {
            k.replace("student.", "teacher.online_model.", 1): v for k, v in state.items() if k.startswith("student.")
        }
        state |= {"teacher.initted": torch.tensor(True), "mask_token": torch.zeros(dim)}
        hparams = dict(BACKBONE) | ORIGINAL_HPARAMS
        return {"state_dict": state, "hyper_parameters": hparams, **lightning1_state(state, "1.9.5", "val_loss")}
    if layout == "point2vec":
        prefixes = {
            "tokenizer.embedding.encoder.": "tokenizer.embedding.",
            "positional_encoding.": "positional_encoding.",
            "encoder.": "student.",
        }
        state = _rename(backbone, prefixes)
        state |= {"regressor.weight": torch.zeros(dim, dim), "mask_token": torch.zeros(dim)}
        hparams = dict(BACKBONE) | POINT2VEC_HPARAMS
        return {"state_dict": state, "hyper_parameters": hparams, **lightning1_state(state, "1.7.7", "svm_val_acc")}
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
        }  # pretraining with its validation commented out: the metrics stay at Acc_Metric(0.)
        return {"base_model": base, **base_model_state(base, 300, 0.0, 0.0)}
    state |= {"cls_token": torch.randn(1, 1, dim), "cls_pos": torch.randn(1, 1, dim)}
    if layout == "point_bert_finetuned":  # Point-BERT's fine-tuned model: no transformer_q, its own head
        base = {f"module.{k}": v for k, v in state.items()}
        base |= {"module.cls_head_finetune.0.weight": torch.zeros(256, 2 * dim)}
        accuracy = torch.tensor(93.2)  # (pred == label).sum() / float(n) * 100.: a 0-d tensor
        return {"base_model": base, **base_model_state(base, 299, accuracy, accuracy)}
    state |= {"lm_head.weight": torch.zeros(8, dim)}
    base = {f"module.transformer_q.{k}": v for k, v in state.items()}
    base |= {"module.transformer_k.norm.weight": torch.ones(dim), "module.dvae.codebook": torch.zeros(8, 4)}
    svm_accuracy = np.sum(np.arange(10) < 9) * 1.0 / 10  # evaluate_svm's np.sum(...) * 1. / n: a numpy float64
    return {"base_model": base, **base_model_state(base, 300, svm_accuracy, svm_accuracy)}


def write_checkpoint(path: str | Path, layout: Layout, backbone: dict[str, torch.Tensor]) -> Path:
    """Save ``layout_checkpoint(layout, backbone)`` to ``path`` (numpy scalars under numpy 1.x's names, as in
    the published Point-MAE / Point-BERT files); returns the path."""
    return save_as_numpy1(layout_checkpoint(layout, backbone), path)
