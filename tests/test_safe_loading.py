"""The one checkpoint loader: every published layout loads weights-only (our own training checkpoints:
``test_hostile_checkpoints``), numpy scalars only of numeric dtypes, anything else is refused in one line
naming it unless the caller opts in."""

from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pointjepa.api import load_classifier, load_encoder
from pointjepa.utils.checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint
from pointjepa.utils.checkpoint_types import NumpyDtype, numpy_scalar
from tests.conftest import tiny_classifier
from tests.fakeckpt import (
    BASE_MODEL_LAYOUTS,
    LAYOUTS,
    lightning1_state,
    plant_namespace,
    save_as_numpy1,
    tiny_backbone_state,
    write_checkpoint,
)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_published_layout_loads_weights_only(tmp_path, layout):
    backbone = tiny_backbone_state(qkv_bias=layout not in BASE_MODEL_LAYOUTS)
    checkpoint = load_checkpoint(write_checkpoint(tmp_path / "x.ckpt", layout, backbone))
    if layout in ("original", "point2vec"):  # Lightning 1.x: the training state and plain hyper-parameters
        assert checkpoint["hyper_parameters"]["svm_validation"] == {}
        assert checkpoint["optimizer_states"][0]["param_groups"][0]["initial_lr"] == 1e-3
        assert checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] == 40500
    if layout in BASE_MODEL_LAYOUTS:
        assert set(checkpoint) == {"base_model", "optimizer", "epoch", "metrics", "best_metrics"}
    if layout == "point_bert":  # the SVM accuracy of Point-BERT's pretraining: a numpy float64
        assert type(checkpoint["metrics"]["acc"]) is np.float64 and checkpoint["metrics"]["acc"] == 0.9


def test_an_original_fine_tuned_classifier_loads_weights_only(tmp_path):
    model = tiny_classifier()
    hparams = {k: v for k, v in model.hparams.items() if k != "num_classes"}  # as the original's checkpoints
    state = model.state_dict()
    checkpoint = {"state_dict": state, "hyper_parameters": hparams, **lightning1_state(state, "1.9.5", "val_acc")}
    torch.save(checkpoint, tmp_path / "o.ckpt")
    loaded = load_classifier(tmp_path / "o.ckpt", 5, 2, torch.device("cpu"))
    assert torch.equal(loaded.cls_head.state_dict()["4.weight"], model.cls_head.state_dict()["4.weight"])


@pytest.mark.parametrize("save", [torch.save, save_as_numpy1], ids=["numpy2", "numpy1"])
def test_numeric_numpy_scalars_load_under_both_numpy_names(tmp_path, save):
    values = [np.float64(93.25), np.float32(-1.5), np.int64(-7), np.uint8(200), np.bool_(True), np.complex64(1 - 2j)]
    values.append(np.array([2.5], dtype=">f8")[0])  # big-endian
    save({"metrics": values}, tmp_path / "n.pth")
    old_name = b"numpy.core.multiarray\nscalar" in zipfile.ZipFile(tmp_path / "n.pth").read("n/data.pkl")
    assert old_name == (save is save_as_numpy1)
    loaded = load_checkpoint(tmp_path / "n.pth")["metrics"]
    assert [type(v) for v in loaded] == [type(v) for v in values] and loaded == values


def test_the_numpy_stand_ins_build_numeric_scalars_only():
    assert numpy_scalar(NumpyDtype("f8", 0, 1), np.float64(3.5).tobytes()) == 3.5  # numpy 1.x's int flags
    for name in ("O", "O8", "V8", "S4", "M8[s]", "i4,O"):
        with pytest.raises(pickle.UnpicklingError, match="only bool, integer, float and complex"):
            NumpyDtype(name)
    with pytest.raises(pickle.UnpicklingError, match="only numeric dtype names"):
        NumpyDtype([("a", "O")])
    with pytest.raises(pickle.UnpicklingError, match="byte order"):
        NumpyDtype("f8").__setstate__((3, "?", None))
    with pytest.raises(pickle.UnpicklingError, match="numeric dtype and its bytes"):
        numpy_scalar(NumpyDtype("f8"), b"\x00" * 4)


class ObjectScalar:
    """Pickles as numpy's scalar unpickler asked for an object-dtype scalar."""

    def __reduce__(self):
        return np._core.multiarray.scalar, (np.dtype("O"), 1)


@pytest.mark.parametrize(
    "value, blocked",
    [
        (np.arange(3), "numpy._core.multiarray._reconstruct"),
        (ObjectScalar(), "numpy.dtype('O8')"),
        (argparse.Namespace(lr=0.1), "argparse.Namespace"),
        (Path("data"), "pathlib"),
    ],
)
def test_other_types_are_refused_naming_them(tmp_path, value, blocked):
    torch.save({"hyper_parameters": {"x": value}}, tmp_path / "x.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="refused") as info:
        load_checkpoint(tmp_path / "x.ckpt")
    message = str(info.value)
    assert blocked in message and "trusted=True" in message and "\n" not in message
    assert message.startswith(f"{tmp_path / 'x.ckpt'}: ")


def test_trusted_loads_a_file_that_needs_pickle(tmp_path):
    path = plant_namespace(write_checkpoint(tmp_path / "ours.ckpt", "ours", tiny_backbone_state()))
    with pytest.raises(UnsafeCheckpointError, match="argparse.Namespace"):
        load_encoder(path)
    assert load_checkpoint(path, trusted=True)["notes"] == argparse.Namespace(lr=0.1)
    assert load_encoder(path, trusted=True).encoder.norm.weight.shape == (32,)


def test_a_trusted_file_naming_a_missing_class_is_one_error(tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"x": argparse.Namespace()}, path)
    path.write_bytes(path.read_bytes().replace(b"argparse\nNamespace", b"argparsf\nNamespace"))
    with pytest.raises(CheckpointError, match="needs Python code that is not installed"):
        load_checkpoint(path, trusted=True)
    with pytest.raises(UnsafeCheckpointError, match="argparsf.Namespace"):
        load_checkpoint(path)


def test_a_damaged_pickle_is_not_called_unsafe(tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"w": torch.zeros(2)}, path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"\x80\x02}", b"\x80\x02\xff", 1))  # an unknown opcode after the protocol
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
