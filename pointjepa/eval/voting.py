r"""Test-time voting for a fine-tuned classification checkpoint.

    python -m pointjepa.eval.voting --ckpt artifacts/<run>/checkpoints/last.ckpt \
        --config configs/Point-JEPA/classification/modelnet40.yaml [--vote_num 10] [--repeats 10]

The data module comes from a training config's ``data:`` section (``--config``) and/or ``--data``
options (``--data.class_path ... --data.init_args.data_dir ...``). Prints the accuracy of the plain
eval pass and the voted accuracy (mean ± std and best over ``--repeats`` runs).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import ArgumentParser

from pointjepa.models.classification import PointJepaClassification
from pointjepa.utils.checkpoint import CheckpointError, load_checkpoint


@torch.no_grad()
def voting_accuracy(
    model: PointJepaClassification, batches: Sequence | torch.utils.data.DataLoader, device: torch.device
) -> tuple[float, float]:
    """-> (accuracy of the plain eval pass, accuracy of the ``vote_num``-pass vote) over ``batches``."""
    model.eval()
    plain = voted = total = torch.zeros((), dtype=torch.long, device=device)
    for batch in batches:
        points, labels = batch[0].to(device), batch[1].to(device)
        logits = model(model.prepare(points, train=False))
        plain = plain + (logits.argmax(-1) == labels).sum()
        voted = voted + (model.vote_probabilities(points, logits).argmax(-1) == labels).sum()
        total = total + labels.numel()
    if int(total) == 0:
        raise ValueError("voting: the data module's validation split is empty")
    return float(plain) / float(total), float(voted) / float(total)


def load_classifier(
    path: str | os.PathLike, num_classes: int, vote_num: int, device: torch.device
) -> PointJepaClassification:
    """A fine-tuned classification checkpoint (ours or the original layout) as an eval-mode model."""
    checkpoint = load_checkpoint(path)
    if "state_dict" not in checkpoint or not any(k.startswith("cls_head.") for k in checkpoint["state_dict"]):
        raise CheckpointError(f"{path}: not a classification checkpoint (no cls_head.* weights)")
    hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    hparams.update(num_classes=num_classes, vote_num=vote_num, pretrained_ckpt_path=None)
    model = PointJepaClassification(**hparams)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model (wrong data set / num_classes?): {err}") from err
    return model.to(device).eval()


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=str, required=True, help="fine-tuned classification checkpoint")
    parser.add_argument("--config", type=str | None, default=None, help="training config whose data: section to use")
    parser.add_subclass_arguments(
        pl.LightningDataModule, "data", required=False, help="data module (overrides --config)"
    )
    parser.add_argument("--vote_num", type=int, default=10, help="passes averaged per vote")
    parser.add_argument("--repeats", type=int, default=1, help="how many times to repeat the vote")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the augmented passes")
    parser.add_argument("--device", type=str, default="auto", help="'auto' (GPU when available), 'cpu', 'cuda:0', ...")
    parser.add_argument("--json", type=str | None, default=None, help="also write val_acc and val_vote_acc (in [0, 1]) here as JSON")
    return parser


def main(args: Sequence[str] | None = None) -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config_path = pre.parse_known_args(args)[0].config
    parser = build_parser()
    if config_path is not None:
        if not Path(config_path).is_file():
            parser.error(f"--config {config_path}: file not found")
        data = (yaml.safe_load(Path(config_path).read_text()) or {}).get("data")
        if data is None:
            parser.error(f"--config {config_path}: no data: section")
        parser.set_defaults(data=data)
    cfg = parser.parse_args(args)
    if cfg.data is None:
        parser.error("give the data module with --config <training config> or --data.class_path ...")
    if cfg.vote_num < 1 or cfg.repeats < 1:
        parser.error("--vote_num and --repeats must be positive")
    datamodule = parser.instantiate(cfg).data
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)

    datamodule.setup("validate")
    model = load_classifier(cfg.ckpt, datamodule.num_classes, cfg.vote_num, device)
    pl.seed_everything(cfg.seed, verbose=False)
    results = [voting_accuracy(model, datamodule.val_dataloader(), device) for _ in range(cfg.repeats)]
    plain, voted = np.array(results).T * 100
    print(f"{cfg.ckpt}: accuracy without voting {plain[0]:.2f}%")
    print(
        f"with voting ({cfg.vote_num} passes, {cfg.repeats} repeats): {voted.mean():.2f} ± {voted.std():.2f}% "
        f"(best {voted.max():.2f}%)"
    )
    if cfg.json:
        from pointjepa.eval.svm import write_json_atomically

        result = {"ckpt": cfg.ckpt, "vote_num": cfg.vote_num, "val_acc": plain[0] / 100, "val_vote_acc": voted.mean() / 100}
        write_json_atomically({**result, "val_vote_acc_runs": (voted / 100).tolist()}, Path(cfg.json))


if __name__ == "__main__":
    from pointjepa.utils.cli import run_cli

    run_cli(main)
