r"""Collect the final metrics of several runs into a Markdown table of mean ± std per group.

    python -m pointjepa.eval.aggregate artifacts/protocol/modelnet40/seed* --metric val_acc --percent
    python -m pointjepa.eval.aggregate runs/*/*/fold* --metric val_acc val_macc --group-by '(\d+way_\d+shot)'

Each RUN_DIR is one run (a trainer's ``default_root_dir``). A metric's value is read, first found, from
CSVLogger ``metrics.csv`` histories; JSON: the ``metrics.json`` summary every training run writes and result
files at the top of the run (few-shot ``result.json``, ``--json`` of the SVM probe and of voting); W&B
``wandb-summary.json``. ``--reduce best`` takes the best value of the run (minimum for ``*loss*`` metrics,
else maximum), ``last`` the last one. Runs are grouped by parent directory, or by the first group (else the
match) of ``--group-by`` in the run path. The std is the population std, as in the SVM and few-shot outputs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from pointjepa.utils.io import atomic_write

Reduce = Literal["best", "last"]
Direction = Literal["max", "min", "last"]


def pick(values: Sequence[float], how: Direction) -> float | None:
    """The last, largest or smallest finite value of ``values`` (None when there is none)."""
    finite = [v for v in values if math.isfinite(v)]
    return None if not finite else finite[-1] if how == "last" else max(finite) if how == "max" else min(finite)


def csv_values(run: Path, metric: str) -> list[float]:
    """All logged values of ``metric`` in the run's CSVLogger ``metrics.csv`` files (versions in order)."""
    values = []
    for path in sorted(run.rglob("metrics.csv")):
        with path.open(newline="") as f:
            values += [float(row[metric]) for row in csv.DictReader(f) if row.get(metric) not in (None, "")]
    return values


def json_values(paths: Iterable[Path], metric: str, how: Direction) -> list[float]:
    """``metric`` from JSON files: ``{metric: value}``, summaries ``{metric: {"last", "max", "min"}}`` (the
    ``how`` entry, else ``last``) or the SVM probe's ``--json``, whose first C gives ``svm_val_acc_<name>`` /
    ``svm_train_acc_<name>``."""
    values = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):  # unreadable, not text, not JSON
            continue
        if not isinstance(data, dict):
            continue
        results = data.get("results")
        for name, rows in results.items() if isinstance(results, dict) else ():
            if isinstance(rows, list) and rows and isinstance(rows[0], dict):
                data.setdefault(f"svm_val_acc_{name}", rows[0].get("test_acc_mean"))
                data.setdefault(f"svm_train_acc_{name}", rows[0].get("train_acc_mean"))
        value = data.get(metric)
        value = value.get(how, value.get("last")) if isinstance(value, dict) else value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values.append(float(value))
    return values


def run_value(run: Path, metric: str, reduce: Reduce) -> tuple[float, str] | None:
    """(value, source) of ``metric`` for one run directory, or None when no source has it."""
    how: Direction = "last" if reduce == "last" else ("min" if "loss" in metric else "max")
    results = sorted({*run.glob("*.json"), *run.rglob("metrics.json")})
    wandb = sorted(p for p in run.rglob("wandb-summary.json") if p.parent.name == "files")
    for source, values in [
        ("metrics.csv", csv_values(run, metric)),
        ("json", json_values(results, metric, how)),
        ("wandb", json_values(wandb, metric, how)),
    ]:
        if (value := pick(values, how)) is not None:
            return value, source
    return None


def aggregate(
    runs: Sequence[Path], metrics: Sequence[str], reduce: Reduce = "best", group_by: str | None = None
) -> list[dict]:
    """-> one row per (group, metric): ``group``, ``metric``, ``mean``, ``std``, ``n``, ``values``, ``missing``
    (runs of the group without the metric). A run's group is its parent directory, or the ``group_by`` regex's
    first group (else its match) in the run's path."""
    table: dict[tuple[str, str], dict] = {}
    for run in runs:
        match = re.search(group_by, run.as_posix()) if group_by is not None else None
        group = str(run.parent) if match is None else match.group(1) if match.groups() else match.group(0)
        for metric in metrics:
            row = table.setdefault((group, metric), {"group": group, "metric": metric, "values": [], "missing": []})
            if (found := run_value(run, metric, reduce)) is None:
                row["missing"].append(str(run))
            else:
                row["values"].append(found[0])
    for row in table.values():
        mean, std = (float(np.mean(v)), float(np.std(v))) if (v := row["values"]) else (math.nan, math.nan)
        row.update(n=len(v), mean=mean, std=std)
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


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Aggregate, print the table (and write ``--output``) -> the rows."""
    parser = argparse.ArgumentParser(
        "python -m pointjepa.eval.aggregate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories (default_root_dir)")
    parser.add_argument("--metric", nargs="+", default=["val_acc"], help="metrics to collect (default: val_acc)")
    parser.add_argument("--reduce", choices=["best", "last"], default="best", help="best value over the run, or last")
    parser.add_argument("--group-by", dest="group_by", help="regular expression on the run path giving its group")
    parser.add_argument("--percent", action="store_true", help="show accuracies and the like times 100 (not losses)")
    parser.add_argument("--digits", type=int, default=2, help="decimals in the table")
    parser.add_argument("--output", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    if missing := [str(run) for run in args.runs if not run.is_dir()]:
        parser.error(f"RUN_DIR: not a directory: {', '.join(missing)}")
    try:
        re.compile(args.group_by or "")
    except re.error as err:
        parser.error(f"--group-by {args.group_by!r}: not a regular expression ({err})")
    rows = aggregate(args.runs, args.metric, args.reduce, args.group_by)
    for row in rows:
        for run in row["missing"]:
            print(f"warning: {run}: no {row['metric']} found", file=sys.stderr)
    if all(row["n"] == 0 for row in rows):
        sources = "metrics.csv, JSON or wandb-summary.json"
        raise ValueError(f"none of the {len(args.runs)} run(s) has {', '.join(args.metric)} ({sources})")
    table = markdown_table(rows, args.percent, args.digits)
    print(table, end="")
    if args.output is not None:
        atomic_write(args.output, lambda f: f.write(table.encode()))
    return rows


if __name__ == "__main__":
    from pointjepa.cli import run_cli

    run_cli(main)
