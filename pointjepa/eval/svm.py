"""SVM linear probe of a pretrained encoder.

    python -m pointjepa.eval.svm --ckpt artifacts/.../last.ckpt                       # ModelNet40 + ScanObjectNN
    python -m pointjepa.eval.svm --ckpt last.ckpt --data synthetic --seeds 0 1 2 --C 0.005 0.012 0.05
    python -m pointjepa.eval.svm --ckpt last.ckpt --config configs/demo/pretraining.yaml   # its svm_validation

Features are the max and mean of the encoder's final tokens (as in SVM validation during
pretraining), a linear ``SVC`` is fitted on the train split and scored on the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch
import yaml

from pointjepa.eval.features import extract_features, linear_svm_accuracy
from pointjepa.ops import farthest_point_sample

BUILTIN_DATA: dict[str, Callable[[Path, int], pl.LightningDataModule]] = {}


def _builtin(name: str):
    def register(factory: Callable[[Path, int], pl.LightningDataModule]):
        BUILTIN_DATA[name] = factory
        return factory

    return register


@_builtin("modelnet40")
def _modelnet40(root: Path, batch_size: int) -> pl.LightningDataModule:
    from pointjepa.datasets import ModelNet40Ply2048DataModule

    return ModelNet40Ply2048DataModule(str(root / "modelnet40_ply_hdf5_2048"), batch_size=batch_size, drop_last=False)


def _scanobjectnn(split: str, perturbed: bool) -> Callable[[Path, int], pl.LightningDataModule]:
    def factory(root: Path, batch_size: int) -> pl.LightningDataModule:
        from pointjepa.datasets import ScanObjectNNDataModule

        return ScanObjectNNDataModule(
            str(root / "ScanObjectNN"), split=split, perturbed=perturbed, batch_size=batch_size, drop_last=False
        )

    return factory


BUILTIN_DATA["scanobjectnn"] = _scanobjectnn("main_split", False)  # OBJ_BG, as in pretraining's SVM validation
BUILTIN_DATA["scanobjectnn_obj_only"] = _scanobjectnn("main_split_nobg", False)
BUILTIN_DATA["scanobjectnn_pb_t50_rs"] = _scanobjectnn("main_split", True)


@_builtin("synthetic")
def _synthetic(root: Path, batch_size: int) -> pl.LightningDataModule:
    from pointjepa.datasets import SyntheticShapesDataModule

    return SyntheticShapesDataModule(samples_per_class=32, val_samples_per_class=16, seed=100, batch_size=batch_size, drop_last=False)


def datamodules_from_config(path: str) -> dict[str, pl.LightningDataModule]:
    """Data modules of a YAML file's ``svm_validation`` mapping (top level or under ``model:``)."""
    from jsonargparse import ArgumentParser

    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"--config {path}: cannot read YAML ({err})") from err
    block = (config or {}).get("svm_validation") or ((config or {}).get("model") or {}).get("svm_validation")
    if not block:
        raise SystemExit(f"--config {path}: expected an 'svm_validation' mapping of name -> data module")
    parser = ArgumentParser()
    parser.add_argument("--svm_validation", type=dict[str, pl.LightningDataModule])
    return parser.instantiate_classes(parser.parse_object({"svm_validation": block})).svm_validation


def probe(
    encoder: torch.nn.Module,
    datamodule: pl.LightningDataModule,
    device: torch.device,
    num_points: int,
    seed: int,
    Cs: list[float],
) -> list[tuple[float, float]]:
    """Features of both splits, clouds subsampled by FPS from starts drawn with ``seed`` -> (train, test) acc per C."""
    generator = torch.Generator(device=device).manual_seed(seed)

    def embed(points: torch.Tensor) -> torch.Tensor:
        if points.shape[1] > num_points:
            points = farthest_point_sample(points, num_points, random_start=True, generator=generator)[0]
        return encoder(points)

    datamodule.setup("fit")
    x_train, y_train = extract_features(embed, datamodule.train_dataloader(), device, progress=True, desc="train features")
    x_test, y_test = extract_features(embed, datamodule.val_dataloader(), device, progress=True, desc="test features")
    return [linear_svm_accuracy(x_train, y_train, x_test, y_test, C) for C in Cs]


def write_json_atomically(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pointjepa.eval.svm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="pretraining checkpoint (ours, original Point-JEPA / Point2Vec, Point-MAE / Point-BERT)")
    parser.add_argument("--data", nargs="+", default=None, choices=sorted(BUILTIN_DATA),
                        help="built-in data sets under --data_root (default: modelnet40 scanobjectnn)")
    parser.add_argument("--config", help="YAML with an svm_validation mapping (e.g. a pretraining config) for any data module")
    parser.add_argument("--data_root", default="./data", help="root of the data/ layout of DATASETS.md")
    parser.add_argument("--num_points", type=int, default=1024, help="clouds are subsampled to this many points (FPS)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="subsampling seeds; several give mean ± std")
    parser.add_argument("--C", type=float, nargs="+", default=[0.012], help="SVM C values (several = a sweep)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from pointjepa.api import load_encoder

    if args.config and args.data:
        raise SystemExit("give either --data or --config, not both")
    datamodules = (
        datamodules_from_config(args.config)
        if args.config
        else {name: BUILTIN_DATA[name](Path(args.data_root), args.batch_size) for name in args.data or ["modelnet40", "scanobjectnn"]}
    )
    device = torch.device(args.device)
    encoder = load_encoder(args.ckpt, device=device)
    result: dict = {"ckpt": str(args.ckpt), "num_points": args.num_points, "seeds": args.seeds, "results": {}}
    for name, datamodule in datamodules.items():
        runs = np.array([probe(encoder, datamodule, device, args.num_points, seed, args.C) for seed in args.seeds])  # (S, C, 2)
        result["results"][name] = [
            {
                "C": C,
                "train_acc_mean": float(runs[:, i, 0].mean()),
                "test_acc_mean": float(runs[:, i, 1].mean()),
                "test_acc_std": float(runs[:, i, 1].std()),
                "test_acc_runs": runs[:, i, 1].tolist(),
            }
            for i, C in enumerate(args.C)
        ]
        for row in result["results"][name]:
            print(
                f"{name:>24}  C={row['C']:<8g} train {100 * row['train_acc_mean']:.2f}%  "
                f"test {100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f}% ({len(args.seeds)} seed(s))"
            )
    if args.json:
        write_json_atomically(result, args.json)
    return result


if __name__ == "__main__":
    from pointjepa.utils.cli import run_cli

    run_cli(main)
