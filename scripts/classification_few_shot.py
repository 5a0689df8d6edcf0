r"""ModelNet40 few-shot protocol: fine-tune on every fold of every way/shot setting, print mean ± std.

    python scripts/classification_few_shot.py --pretrained_ckpt_path artifacts/<run>/checkpoints/last.ckpt
    python scripts/classification_few_shot.py --ways 5 --shots 10 --folds 0 1 2 -- --trainer.max_epochs 50

Each run is ``python -m pointjepa.tasks.classification fit -c <config>`` with the way, shot and fold
set, writing to ``<output_dir>/<way>way_<shot>shot/fold<k>``; arguments after ``--`` go to every run.
A run's score is its best ``val_acc`` (the checkpoint callback's best score), saved in
``result.json``; finished runs are not repeated when the script is started again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def best_score(last_ckpt: Path) -> float:
    """The best monitored value the ModelCheckpoint callback recorded in ``last.ckpt``."""
    checkpoint = torch.load(last_ckpt, map_location="cpu", weights_only=False)
    for key, state in checkpoint.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and state.get("best_model_score") is not None:
            return float(state["best_model_score"])
    raise RuntimeError(f"{last_ckpt}: no best val_acc recorded (did validation run?)")


def run_fold(args: argparse.Namespace, way: int, shot: int, fold: int, extra: Sequence[str]) -> float:
    """Fine-tune one fold (or reuse its ``result.json``) -> best val accuracy in [0, 1]."""
    run_dir = Path(args.output_dir) / f"{way}way_{shot}shot" / f"fold{fold}"
    result = run_dir / "result.json"
    if result.is_file():
        return json.loads(result.read_text())["val_acc"]
    command = [
        sys.executable, "-m", "pointjepa.tasks.classification", "fit", "-c", args.config,
        "--data.init_args.way", str(way), "--data.init_args.shot", str(shot), "--data.init_args.fold", str(fold),
        "--trainer.default_root_dir", str(run_dir),
    ]  # fmt: skip
    if args.data_dir is not None:
        command += ["--data.init_args.data_dir", args.data_dir]
    if args.pretrained_ckpt_path is not None:
        command += ["--model.pretrained_ckpt_path", args.pretrained_ckpt_path]
    command += list(extra)
    print(f"[{way}-way {shot}-shot fold {fold}] {' '.join(command)}", flush=True)
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{way}-way {shot}-shot fold {fold} failed (exit code {completed.returncode})")
    score = best_score(run_dir / "checkpoints" / "last.ckpt")
    result.write_text(json.dumps({"way": way, "shot": shot, "fold": fold, "val_acc": score}))
    return score


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/Point-JEPA/classification/modelnet_fewshot.yaml")
    parser.add_argument("--pretrained_ckpt_path", default=None, help="backbone to fine-tune (default: from scratch)")
    parser.add_argument("--data_dir", default=None, help="ModelNetFewshot directory (default: the config's)")
    parser.add_argument("--ways", type=int, nargs="+", default=[5, 10], choices=[5, 10])
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 20], choices=[10, 20])
    parser.add_argument("--folds", type=int, nargs="+", default=list(range(10)), choices=range(10))
    parser.add_argument("--output_dir", default="artifacts/few_shot")
    return parser.parse_args(own), extra


def main(argv: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Run the chosen settings and folds; print and return the accuracies (%) per setting."""
    args, extra = parse_args(argv)
    results = {}
    for way in args.ways:
        for shot in args.shots:
            accuracies = [run_fold(args, way, shot, fold, extra) for fold in args.folds]
            results[f"{way}-way {shot}-shot"] = np.array(accuracies) * 100
    print(f"\nModelNet40 few-shot, best val_acc over epochs, {len(args.folds)} fold(s) per setting:")
    for setting, scores in results.items():
        print(
            f"  {setting}: {scores.mean():.2f} ± {scores.std():.2f}  (folds: {', '.join(f'{s:.1f}' for s in scores)})"
        )
    return results


if __name__ == "__main__":
    main()
