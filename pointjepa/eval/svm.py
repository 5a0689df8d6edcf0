"""SVM linear probe of a pretrained encoder.

    python -m pointjepa.eval.svm --ckpt artifacts/.../last.ckpt                       # ModelNet40 + ScanObjectNN
    python -m pointjepa.eval.svm --ckpt last.ckpt --data synthetic --seeds 0 1 2 --C 0.005 0.012 0.05
    python -m pointjepa.eval.svm --ckpt last.ckpt --config configs/demo/pretraining.yaml   # its svm_validation(_C)

Clouds go through the checkpoint's own evaluation transforms (FPS to its transformation_subsample_points,
center, unit sphere; 1024 points without hyper-parameters), the FPS starting at points drawn with the
seed (one start per cloud, both splits in their stored order: the same command and seeds give the same
numbers). Features are the max and mean of the encoder's final tokens (as in SVM validation during
pretraining), a linear ``SVC`` is fitted on the train split and scored on the test split.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytorch_lightning as pl
import torch
import yaml

from pointjepa.api import PointEncoder, load_encoder
from pointjepa.eval._cli_common import ordered_loader
from pointjepa.metrics.svm import extract_features, linear_svm_accuracy
from pointjepa.utils.checkpoint import TRUST_HELP, TRUST_OPTION, opt_in_named
from pointjepa.utils.io import atomic_write

if TYPE_CHECKING:  # the data modules are imported when a data set is asked for
    from pointjepa.datasets.scanobjectnn import ScanObjectNNSplit

#: A built-in data set: (data root, batch size) -> its data module.
DataFactory = Callable[[Path, int], pl.LightningDataModule]
BUILTIN_DATA: dict[str, DataFactory] = {}
#: The SVM's C when neither --C nor the --config's svm_validation_C gives one (the published value).
DEFAULT_C = 0.012


def _builtin(name: str) -> Callable[[DataFactory], DataFactory]:
    def register(factory: DataFactory) -> DataFactory:
        BUILTIN_DATA[name] = factory
        return factory

    return register


@_builtin("modelnet40")
def _modelnet40(root: Path, batch_size: int) -> pl.LightningDataModule:
    from pointjepa.datasets import ModelNet40Ply2048DataModule

    return ModelNet40Ply2048DataModule(str(root / "modelnet40_ply_hdf5_2048"), batch_size=batch_size, drop_last=False)


def _scanobjectnn(split: ScanObjectNNSplit, perturbed: bool) -> DataFactory:
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

    return SyntheticShapesDataModule(
        samples_per_class=32, val_samples_per_class=16, seed=100, batch_size=batch_size, drop_last=False
    )


def svm_validation_from_config(path: str) -> tuple[dict[str, pl.LightningDataModule], float | None]:
    """A YAML file's ``svm_validation`` data modules and its ``svm_validation_C`` (``None`` when absent),
    read at the top level or under ``model:``."""
    from jsonargparse import ArgumentParser

    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"--config {path}: cannot read YAML ({err})") from err
    model = config.get("model") or {}
    block = config.get("svm_validation") or model.get("svm_validation")
    if not block:
        raise SystemExit(f"--config {path}: expected an 'svm_validation' mapping of name -> data module")
    parser = ArgumentParser()
    parser.add_argument("--svm_validation", type=dict[str, pl.LightningDataModule])
    parser.add_argument("--svm_validation_C", type=float | None, default=None)
    C = config.get("svm_validation_C", model.get("svm_validation_C"))
    parsed = parser.instantiate(parser.parse_object({"svm_validation": block, "svm_validation_C": C}))
    return parsed.svm_validation, parsed.svm_validation_C


def probe(
    encoder: PointEncoder,
    datamodule: pl.LightningDataModule,
    device: torch.device,
    seed: int,
    Cs: list[float],
) -> list[tuple[float, float]]:
    """Features of both splits -> (train, test) accuracy per C. Clouds are subsampled to the encoder's
    ``num_points`` by FPS from starts drawn with ``seed``, then go through its transforms.

    Both splits are read in their stored order (``ordered_loader``), one start per cloud, so the same seed
    gives the same features in every process, whatever the batch size; the global random streams (what a
    data set may draw when it is set up or read) are seeded with ``seed`` too."""
    pl.seed_everything(seed, verbose=False)
    embed = encoder.seeded(seed)
    datamodule.setup("fit")
    train, test = ordered_loader(datamodule, "train", seed), ordered_loader(datamodule, "val", seed)
    x_train, y_train = extract_features(embed, train, device, progress=True, desc="train features")
    x_test, y_test = extract_features(embed, test, device, progress=True, desc="test features")
    return [linear_svm_accuracy(x_train, y_train, x_test, y_test, C) for C in Cs]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pointjepa.eval.svm", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt",
        required=True,
        help="pretraining checkpoint (ours, original Point-JEPA / Point2Vec, Point-MAE / Point-BERT)",
    )
    parser.add_argument(TRUST_OPTION, action="store_true", help=TRUST_HELP)
    parser.add_argument(
        "--data",
        nargs="+",
        default=None,
        choices=sorted(BUILTIN_DATA),
        help="built-in data sets under --data_root (default: modelnet40 scanobjectnn)",
    )
    parser.add_argument(
        "--config", help="YAML with an svm_validation mapping (e.g. a pretraining config) for any data module"
    )
    parser.add_argument("--data_root", default="./data", help="root of the data/ layout of DATASETS.md")
    parser.add_argument(
        "--num_points",
        type=int,
        default=None,
        help="clouds are subsampled to this many points (FPS); default: as the checkpoint's model "
        "(its transformation_subsample_points or num_points; 1024 without hyper-parameters)",
    )
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="subsampling seeds; several give mean ± std")
    parser.add_argument(
        "--C",
        type=float,
        nargs="+",
        default=None,
        help=f"SVM C values (several = a sweep); default: --config's svm_validation_C, else {DEFAULT_C}",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.config and args.data:
        raise SystemExit("give either --data or --config, not both")
    config_C = None
    if args.config:
        datamodules, config_C = svm_validation_from_config(args.config)
    else:
        names = args.data or ["modelnet40", "scanobjectnn"]
        datamodules = {name: BUILTIN_DATA[name](Path(args.data_root), args.batch_size) for name in names}
    Cs = args.C or [DEFAULT_C if config_C is None else config_C]
    device = torch.device(args.device)
    with opt_in_named(TRUST_OPTION):
        encoder = load_encoder(args.ckpt, device=device, num_points=args.num_points, trusted=args.trust_checkpoint)
    result: dict = {"ckpt": str(args.ckpt), "num_points": encoder.num_points, "seeds": args.seeds, "results": {}}
    for name, datamodule in datamodules.items():
        runs = np.array([probe(encoder, datamodule, device, seed, Cs) for seed in args.seeds])  # (S, C, 2)
        result["results"][name] = [
            {
                "C": C,
                "train_acc_mean": float(runs[:, i, 0].mean()),
                "test_acc_mean": float(runs[:, i, 1].mean()),
                "test_acc_std": float(runs[:, i, 1].std()),
                "test_acc_runs": runs[:, i, 1].tolist(),
            }
            for i, C in enumerate(Cs)
        ]
        for row in result["results"][name]:
            print(
                f"{name:>24}  C={row['C']:<8g} train {100 * row['train_acc_mean']:.2f}%  "
                f"test {100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f}% ({len(args.seeds)} seed(s))"
            )
    if args.json:
        atomic_write(args.json, lambda f: f.write(json.dumps(result, indent=2).encode()))
    return result


if __name__ == "__main__":
    from pointjepa.cli import run_cli

    run_cli(main)
