r"""Test-time voting for a fine-tuned classification checkpoint.

    python -m pointjepa.eval.voting --ckpt artifacts/<run>/checkpoints/last.ckpt \
        --config configs/Point-JEPA/classification/modelnet40.yaml [--vote_num 10] [--vote_iterations 300]

The data module comes from a training config's ``data:`` section (``--config``) and/or ``--data``
options (``--data.class_path ... --data.init_args.data_dir ...``).

The original's protocol (``--vote_method random_start``): each iteration subsamples every validation cloud
by FPS from a random start and applies the validation transforms once, then averages the softmax of
``--vote_num`` forward passes that differ only in the tokenizer's random FPS start points. Prints the
accuracy of the plain eval pass, each iteration's vote, the best (what the original reports) and the
mean ± std over the ``--vote_iterations`` iterations. Every random draw comes from ``--seed``: the same
command gives the same numbers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from functools import partial
from typing import get_args

import numpy as np
import pytorch_lightning as pl
import torch
from jsonargparse import ArgumentParser

from pointjepa.api import load_classifier
from pointjepa.eval._cli_common import ordered_loader, parse_data_args, pick_device
from pointjepa.models.classification import PointJepaClassification, VoteMethod
from pointjepa.modules.transforms import fps_subsample
from pointjepa.utils.checkpoint import TRUST_HELP, TRUST_OPTION, opt_in_named
from pointjepa.utils.io import atomic_write


@torch.no_grad()
def accuracy(predict: Callable[[torch.Tensor], torch.Tensor], batches: Iterable, device: torch.device) -> float:
    """Share of the clouds of ``(points, labels, ...)`` batches whose ``predict(points (B, N, 3)) -> (B, K)``
    argmax is the label."""
    correct = total = torch.zeros((), dtype=torch.long, device=device)
    for batch in batches:
        points, labels = batch[0].to(device), batch[1].to(device)
        correct = correct + (predict(points).argmax(-1) == labels).sum()
        total = total + labels.numel()
    if int(total) == 0:
        raise ValueError("voting: the data module's validation split is empty")
    return float(correct) / float(total)


def plain_pass(model: PointJepaClassification, points: torch.Tensor) -> torch.Tensor:
    """Raw points (B, N, 3) -> logits (B, K) of the plain evaluation pass."""
    return model(model.prepare(points, train=False))


def vote(model: PointJepaClassification, points: torch.Tensor) -> torch.Tensor:
    """Raw points (B, N, 3) -> voted class probabilities (B, K). With ``random_start`` the passes start from
    the validation transforms applied once to an FPS subsample from a random start, as in the original."""
    if model.vote_method != "random_start":
        return model.vote_probabilities(points)
    prepared = model.val_transformations(fps_subsample(points, model.num_points, random_start=True))
    return model.vote_probabilities(points, prepared)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ckpt", "--finetuned_ckpt_path", type=str, required=True, help="fine-tuned classification checkpoint"
    )
    parser.add_argument(TRUST_OPTION, action="store_true", help=TRUST_HELP)
    parser.add_argument("--config", type=str | None, default=None, help="training config whose data: section to use")
    parser.add_subclass_arguments(
        pl.LightningDataModule, "data", required=False, help="data module (overrides --config)"
    )
    parser.add_argument("--vote_num", type=int, default=10, help="forward passes averaged per vote")
    parser.add_argument("--vote_iterations", type=int, default=300, help="how many times to repeat the vote")
    parser.add_argument(
        "--vote_method",
        type=VoteMethod,
        default="random_start",
        help=f"{' or '.join(get_args(VoteMethod))}: passes differing only in the tokenizer's random FPS start "
        "(the original's), or the plain pass plus scaled and translated passes",
    )
    parser.add_argument("--seed", "--seed_everything", type=int, default=0, help="random seed of the voting passes")
    parser.add_argument("--device", type=str, default="auto", help="'auto' (GPU when available), 'cpu', 'cuda:0', ...")
    parser.add_argument(
        "--json",
        type=str | None,
        default=None,
        help="also write val_acc, val_vote_acc (the best vote) and its mean, std and runs (in [0, 1]) here as JSON",
    )
    return parser


def main(args: list[str] | None = None) -> None:
    parser = build_parser()
    cfg = parse_data_args(parser, args)
    if cfg.vote_num < 1 or cfg.vote_iterations < 1:
        parser.error("--vote_num and --vote_iterations must be positive")
    datamodule = parser.instantiate(cfg).data
    device = pick_device(cfg.device)

    pl.seed_everything(cfg.seed, verbose=False)  # every random draw below, the data set's included
    loader = ordered_loader(datamodule, "val", cfg.seed)
    with opt_in_named(TRUST_OPTION):
        model = load_classifier(
            cfg.ckpt, datamodule.num_classes, cfg.vote_num, device, cfg.vote_method, trusted=cfg.trust_checkpoint
        )
    plain = 100 * accuracy(partial(plain_pass, model), loader, device)
    print(f"{cfg.ckpt}: accuracy without voting {plain:.2f}%")
    voted = []
    for i in range(cfg.vote_iterations):
        voted.append(100 * accuracy(partial(vote, model), loader, device))
        print(f"{i + 1}/{cfg.vote_iterations} vote accuracy {voted[-1]:.2f}%, best {max(voted):.2f}%")
    runs = np.array(voted)
    print(
        f"with voting ({cfg.vote_num} passes, {cfg.vote_iterations} iterations): best {runs.max():.2f}%, "
        f"mean {runs.mean():.2f} ± {runs.std():.2f}%"
    )
    if cfg.json:
        result = {"ckpt": cfg.ckpt, "vote_num": cfg.vote_num, "vote_method": cfg.vote_method, "val_acc": plain / 100}
        result |= {"val_vote_acc": runs.max() / 100, "val_vote_acc_mean": runs.mean() / 100}
        result |= {"val_vote_acc_std": runs.std() / 100, "val_vote_acc_runs": (runs / 100).tolist()}
        atomic_write(cfg.json, lambda f: f.write(json.dumps(result, indent=2).encode()))


if __name__ == "__main__":
    from pointjepa.cli import run_cli

    run_cli(main)
