r"""Collect the final metrics of several runs into a Markdown table of mean ± std per group.

    python -m pointjepa.eval.aggregate artifacts/protocol/modelnet40/seed* --metric val_acc --percent
    python -m pointjepa.eval.aggregate runs/*/seed* --metric val_acc val_macc --output table.md
    python -m pointjepa.eval.aggregate runs/*/*/fold* --group-by '(\d+way_\d+shot)'

Each RUN_DIR is one run (a trainer's ``default_root_dir``). Its value of a metric is read, first
found, from: CSVLogger ``metrics.csv`` files, result JSON files in the run directory (few-shot
``result.json``, ``--json`` of the SVM probe and of voting), W&B ``wandb-summary.json`` or offline
``run-*.wandb`` logs, the ``best_model_score`` of a ``ModelCheckpoint`` monitoring the metric in a ``.ckpt``, and
last the ``<metric>=<value>`` part of checkpoint file names. ``--reduce best`` (default) takes the
best value over the run (the minimum for metrics named ``*loss*``, else the maximum), ``last`` the
last one. Runs are grouped by their parent directory, or by the first group (else the whole match)
of the ``--group-by`` regular expression searched in the run path. The std is the population std
(``numpy.std``), as in the SVM probe and few-shot outputs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pickle
import re
import struct
import sys
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
from pytorch_lightning.utilities import rank_zero_warn
from tqdm.auto import tqdm

Reduce = Literal["best", "last"]
Direction = Literal["max", "min", "last"]

WANDB_LOG_BLOCK, WANDB_LOG_HEADER = 32768, 7  # the LevelDB log layout of W&B's ``run-<id>.wandb`` files


def direction(metric: str, reduce: Reduce) -> Direction:
    """How to pick a run's value of ``metric``: the last one, or the best (min for losses, else max)."""
    if reduce == "last":
        return "last"
    return "min" if "loss" in metric else "max"


def pick(values: Sequence[float], how: Direction) -> float | None:
    """The last, largest or smallest finite value of ``values`` (None when there is none)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return finite[-1] if how == "last" else (max(finite) if how == "max" else min(finite))


def csv_values(run: Path, metric: str) -> list[float]:
    """All logged values of ``metric`` in the run's CSVLogger ``metrics.csv`` files (versions in order)."""
    values = []
    for path in sorted(run.rglob("metrics.csv")):
        with path.open(newline="") as f:
            values += [float(row[metric]) for row in csv.DictReader(f) if row.get(metric) not in (None, "")]
    return values


def json_values(run: Path, metric: str) -> list[float]:
    """``metric`` from the result JSON files at the top of the run directory: flat ``{metric: value}``
    (few-shot ``result.json``, ``pointjepa.eval.voting --json``) or the SVM probe's ``--json``, whose
    first C gives ``svm_val_acc_<name>`` / ``svm_train_acc_<name>``."""
    values = []
    for path in sorted(run.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        results = data.get("results")
        for name, rows in results.items() if isinstance(results, dict) else ():
            if isinstance(rows, list) and rows and isinstance(rows[0], dict):
                data.setdefault(f"svm_val_acc_{name}", rows[0].get("test_acc_mean"))
                data.setdefault(f"svm_train_acc_{name}", rows[0].get("train_acc_mean"))
        value = data.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values.append(float(value))
    return values


def wandb_records(path: Path) -> Iterator[bytes]:
    """The serialized records of a W&B ``run-<id>.wandb`` log (LevelDB log format: 7-byte file header,
    32 KiB blocks of records with a 7-byte header checksum / length / type, records split across blocks)."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run log")
    pos, pending = WANDB_LOG_HEADER, b""
    while pos + WANDB_LOG_HEADER <= len(data):
        left = WANDB_LOG_BLOCK - pos % WANDB_LOG_BLOCK
        if left < WANDB_LOG_HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + WANDB_LOG_HEADER])
        if pos + WANDB_LOG_HEADER + length > len(data):
            break  # the tail of a run that was killed while writing
        chunk = data[pos + WANDB_LOG_HEADER : pos + WANDB_LOG_HEADER + length]
        pos += WANDB_LOG_HEADER + length
        if kind == 0:
            break
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


def wandb_offline_run(path: Path) -> tuple[dict, list[dict]]:
    """Config (top-level key -> value) and history rows (key -> value) of a W&B ``run-<id>.wandb`` log."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    config: dict = {}
    history: list[dict] = []
    for data in wandb_records(path):
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(data)
        except DecodeError as err:
            raise ValueError(f"{path}: damaged W&B record ({err})") from err
        kind = record.WhichOneof("record_type")
        if kind in ("run", "config"):
            items = record.run.config.update if kind == "run" else record.config.update
            config.update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items})
        elif kind == "history":
            history.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return config, history


def wandb_value(run: Path, metric: str, how: Direction) -> float | None:
    """The metric from W&B run directories under ``run``: ``files/wandb-summary.json`` when present
    (``{"max": ..., "last": ...}`` summaries included), else the history of the offline run log."""
    run_dirs = {p.parent.resolve() for p in run.rglob("run-*.wandb")}
    run_dirs |= {p.parents[1].resolve() for p in run.rglob("wandb-summary.json") if p.parent.name == "files"}
    values = []
    for run_dir in sorted(run_dirs):
        summary_file = run_dir / "files" / "wandb-summary.json"
        if summary_file.is_file():
            entry = json.loads(summary_file.read_text()).get(metric)
            if isinstance(entry, dict):
                entry = entry.get(how, entry.get("last"))
            if isinstance(entry, (int, float)):
                values.append(float(entry))
            continue
        for log in run_dir.glob("run-*.wandb"):
            try:
                history = wandb_offline_run(log)[1]
            except ValueError as err:
                rank_zero_warn(f"{err}; skipped")
                continue
            series = [float(row[metric]) for row in history if isinstance(row.get(metric), (int, float))]
            if (value := pick(series, how)) is not None:
                values.append(value)
    return pick(values, how)


def checkpoint_value(run: Path, metric: str, how: Direction) -> float | None:
    """Best ``metric`` recorded by a ``ModelCheckpoint`` monitoring it (in any ``.ckpt`` of the run), else
    the best ``<metric>=<value>`` in checkpoint file names."""
    import torch

    checkpoints = sorted(run.rglob("*.ckpt"), key=lambda p: (p.name != "last.ckpt", str(p)))
    scores = []
    for path in checkpoints:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:  # damaged: go on
            rank_zero_warn(f"{path}: unreadable checkpoint skipped ({err})")
            continue
        for key, state in (checkpoint.get("callbacks") or {}).items():
            monitored = f"'monitor': '{metric}'" in key and f"'mode': '{how}'" in key
            if monitored and isinstance(state, dict) and state.get("best_model_score") is not None:
                scores.append(float(state["best_model_score"]))
        if scores:
            return pick(scores, how)
    pattern = re.compile(rf"(?:^|[-_]){re.escape(metric)}=(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
    named = [float(m.group(1)) for path in checkpoints if (m := pattern.search(path.stem))]
    return pick(named, how) if how != "last" else None


def run_value(run: Path, metric: str, reduce: Reduce) -> tuple[float, str] | None:
    """(value, source) of ``metric`` for one run directory, or None when no source has it."""
    how = direction(metric, reduce)
    if (value := pick(csv_values(run, metric), how)) is not None:
        return value, "metrics.csv"
    if (value := pick(json_values(run, metric), how)) is not None:
        return value, "json"
    if (value := wandb_value(run, metric, how)) is not None:
        return value, "wandb"
    if how != "last" and (value := checkpoint_value(run, metric, how)) is not None:
        return value, "checkpoint"
    return None


def group_of(run: Path, group_by: str | None) -> str:
    """The run's group: its parent directory, or the ``group_by`` regex's first group / match in its path."""
    if group_by is None:
        return str(run.parent)
    match = re.search(group_by, run.as_posix())
    if match is None:
        return str(run.parent)
    return match.group(1) if match.groups() else match.group(0)


def aggregate(
    runs: Sequence[Path],
    metrics: Sequence[str],
    reduce: Reduce = "best",
    group_by: str | None = None,
    progress: bool = False,
) -> list[dict]:
    """-> one row per (group, metric): ``group``, ``metric``, ``mean``, ``std``, ``n``, ``values``,
    ``missing`` (runs of the group without the metric)."""
    table: dict[tuple[str, str], dict] = {}
    for run in tqdm(runs, desc="runs", disable=not progress, leave=False):
        group = group_of(run, group_by)
        for metric in metrics:
            row = table.setdefault((group, metric), {"group": group, "metric": metric, "values": [], "missing": []})
            found = run_value(run, metric, reduce)
            if found is None:
                row["missing"].append(str(run))
            else:
                row["values"].append(found[0])
    for row in table.values():
        values = np.array(row["values"], dtype=float)
        stats = (float(values.mean()), float(values.std())) if len(values) else (math.nan, math.nan)
        row.update(n=len(values), mean=stats[0], std=stats[1])
    return list(table.values())


def markdown_table(rows: Sequence[dict], percent: bool = False, digits: int = 2) -> str:
    """``| group | metric | mean ± std | n |`` Markdown table of ``aggregate`` rows; with ``percent`` the
    values of metrics other than losses are shown times 100."""
    lines = ["| group | metric | mean ± std | n |", "|---|---|---|---|"]
    for row in rows:
        scale = 100.0 if percent and "loss" not in row["metric"] else 1.0
        cell = "n/a" if row["n"] == 0 else f"{scale * row['mean']:.{digits}f} ± {scale * row['std']:.{digits}f}"
        lines.append(f"| {row['group']} | {row['metric']} | {cell} | {row['n']} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pointjepa.eval.aggregate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories (default_root_dir of each run)"
    )
    parser.add_argument("--metric", nargs="+", default=["val_acc"], help="metrics to collect (default: val_acc)")
    parser.add_argument(
        "--reduce", choices=["best", "last"], default="best", help="best value over the run (default) or the last"
    )
    parser.add_argument(
        "--group-by", dest="group_by", default=None, help="regular expression on the run path giving its group"
    )
    parser.add_argument("--percent", action="store_true", help="show accuracies and the like times 100 (not losses)")
    parser.add_argument("--digits", type=int, default=2, help="decimals in the table")
    parser.add_argument("--output", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    missing = [str(run) for run in args.runs if not run.is_dir()]
    if missing:
        parser.error(f"RUN_DIR: not a directory: {', '.join(missing)}")
    if args.group_by is not None:
        try:
            re.compile(args.group_by)
        except re.error as err:
            parser.error(f"--group-by {args.group_by!r}: not a regular expression ({err})")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Aggregate, print the table (and write ``--output``) -> the rows."""
    args = parse_args(argv)
    rows = aggregate(args.runs, args.metric, args.reduce, args.group_by, progress=True)
    for row in rows:
        for run in row["missing"]:
            print(f"warning: {run}: no {row['metric']} found", file=sys.stderr)
    if all(row["n"] == 0 for row in rows):
        raise ValueError(
            f"none of the {len(args.runs)} run(s) has {', '.join(args.metric)} (metrics.csv, W&B run or checkpoint)"
        )
    table = markdown_table(rows, args.percent, args.digits)
    print(table, end="")
    if args.output is not None:
        from pointjepa.eval._cli_common import atomic_write

        atomic_write(args.output, lambda f: f.write(table.encode()))
    return rows


if __name__ == "__main__":
    from pointjepa.utils.cli import run_cli

    run_cli(main)
