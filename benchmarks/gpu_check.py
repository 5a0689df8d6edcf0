"""One-command check of the CUDA code paths, for a short lease of a GPU machine (`gpu_check.sh`).

Six steps, each in its own subprocess with a time limit; a failing step is recorded with its error
and the next one runs:

1. environment: GPU, driver, torch, CUDA, Triton and package versions;
2. the CUDA-only tests (`tests/test_ops.py`, `tests/test_device_loader.py`, `tests/test_fast_paths.py`),
   where a skip fails unless it is one expected on a GPU machine (`EXPECTED_SKIPS`);
3. the Triton FPS kernel against the torch path on real sizes (512 x 8192 -> 1024, 512 x 1024 -> 64);
4. `pretrain_throughput.py --device cuda --compare --json` at the published size, batch 512 and 128;
5. `python -m pointjepa fit -c configs/Point-JEPA/pretraining/shapenet.yaml` for 32 steps on
   generated ShapeNet55 npz data (in-memory GPU path, bf16), 16 steps, then resumed from
   `last.ckpt` for 16 more; the SVM validation runs on generated ModelNet40 / ScanObjectNN data;
6. a 20-step fine-tune with `configs/Point-JEPA/classification/modelnet40.yaml` on generated h5
   data, from the step-5 checkpoint.

Without CUDA, or with ``--quick``, every size is tiny (a few seconds a step on a CPU) and steps 2-3
are reported as skipped. Writes ``gpu_check.json``, ``gpu_check.md`` and ``gpu_check.log`` (all
output) to ``--out``, else ``$OUT`` if set, else ``artifacts/gpu_check/``. Exit status 1 if a step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402

from tests.fakedata import write_modelnet40, write_scanobjectnn, write_shapenet55  # noqa: E402

Status = Literal["pass", "fail", "skipped"]
CUDA_TEST_FILES = ("tests/test_ops.py", "tests/test_device_loader.py", "tests/test_fast_paths.py")
# Skips that are right on a GPU machine: tests of the no-CUDA message, pytorch3d absent or present.
EXPECTED_SKIPS = re.compile(r"when CUDA is missing|pytorch3d is (not )?installed")
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
# Quick mode: a model small enough for a CPU, the same layout as the published one.
TINY_BACKBONE = ["--model.tokenizer_num_groups=8", "--model.tokenizer_group_size=8", "--model.encoder_dim=32",
                 "--model.encoder_depth=2", "--model.encoder_heads=2"]  # fmt: skip
TINY_PRETRAIN = [*TINY_BACKBONE, "--model.predictor_embed_dim=16", "--model.predictor_depth=1",
                 "--model.predictor_heads=2", "--model.target_layers=[1]", "--model.num_targets_per_sample=2",
                 "--model.transformation_subsample_points=128"]  # fmt: skip
TINY_FINETUNE = [*TINY_BACKBONE, "--model.num_points=64", "--model.cls_head_dim=16"]


@dataclass
class StepResult:
    """What one step reports: ``status``, a one-line ``summary``, the ``error`` (output tail) on
    failure or the reason of a skip, and the figures it measured in ``data``."""

    step: int
    name: str
    status: Status
    seconds: float = 0.0
    summary: str = ""
    error: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class StepFailed(Exception):
    """A step's check failed; ``output`` is the tail of what its command printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class StepSkipped(Exception):
    """A step does not apply here (the message says why)."""


@dataclass
class Check:
    """Settings and shared state of one run: mode, time budget, scratch directory, log file."""

    quick: bool
    cuda: bool
    work: Path
    log: Path
    deadline: float
    python: str = sys.executable
    checkpoint: Path | None = None  # last.ckpt of step 5, for step 6

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, args: list[str], limit: float, label: str) -> str:
        """Run ``args`` from the repository root within ``limit`` seconds (and the budget); output
        goes to the log and is returned; a non-zero exit or a timeout raises `StepFailed`."""
        timeout = max(1.0, min(limit, self.remaining()))
        paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}
        start = time.monotonic()
        try:
            proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            output, code = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            output = _text(e.stdout) + _text(e.stderr) + f"\n[timed out after {timeout:.0f} s]"
            code = 124
        with self.log.open("a") as f:
            f.write(f"\n===== {label} ({time.monotonic() - start:.1f} s, exit {code}): {' '.join(args)}\n{output}")
        if code != 0:
            raise StepFailed(f"{label}: exit status {code}", _tail(output))
        return output

    def python_snippet(self, code: str, limit: float, label: str) -> dict[str, Any]:
        """Run Python ``code`` that prints one JSON object on its last line; return that object."""
        output = self.run([self.python, "-c", textwrap.dedent(code)], limit, label)
        return json.loads(output.strip().splitlines()[-1])


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---- step 1 ------------------------------------------------------------------------------------
ENV_SNIPPET = """
    import importlib.metadata as md, json, platform, subprocess, torch
    def version(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
            "cuda_available": torch.cuda.is_available()}
    for name in ("triton", "pytorch-lightning", "lightning", "jsonargparse", "timm", "h5py", "scikit-learn", "wandb"):
        info[name] = version(name)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                 "compute_capability": f"{props.major}.{props.minor}", "gpu_count": torch.cuda.device_count()}
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            info["driver"] = f"nvidia-smi failed: {e}"
    print(json.dumps(info))
"""


def step_environment(check: Check) -> tuple[str, dict[str, Any]]:
    info = check.python_snippet(ENV_SNIPPET, 120, "environment")
    gpu = (
        f"{info['gpu']} ({info['gpu_memory_gib']} GiB), driver {info['driver']}"
        if info.get("gpu")
        else "no CUDA device"
    )
    summary = (
        f"{gpu}; torch {info['torch']}, CUDA {info['cuda_runtime']}, triton {info['triton']}, "
        f"Python {info['python']}, Lightning {info['pytorch-lightning']}, jsonargparse {info['jsonargparse']}"
    )
    if info["jsonargparse"] is None:
        raise StepFailed(f"{summary}: jsonargparse is missing (see benchmarks/README.md: carried wheels in .whl/)")
    return summary, info


# ---- step 2 ------------------------------------------------------------------------------------
def step_cuda_tests(check: Check) -> tuple[str, dict[str, Any]]:
    if not check.cuda:
        raise StepSkipped("no CUDA device: the CUDA-only tests skip themselves here")
    args = [check.python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *CUDA_TEST_FILES]
    try:
        output = check.run(args, 240, "CUDA tests")
    except StepFailed as e:
        raise StepFailed(f"{e}: {_pytest_counts(e.output)}", e.output) from None
    skips = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    unexpected = [line for line in skips if not EXPECTED_SKIPS.search(line)]
    data = {"counts": _pytest_counts(output), "skips": skips}
    if unexpected:
        raise StepFailed(f"{len(unexpected)} test(s) skipped with CUDA present", "\n".join(unexpected))
    return f"{data['counts']} ({len(skips)} expected skips)", data


def _pytest_counts(output: str) -> str:
    found = re.findall(r"\d+ (?:passed|failed|skipped|errors?|xfailed|xpassed)", output)
    return ", ".join(found) or "no pytest summary"


# ---- step 3 ------------------------------------------------------------------------------------
TRITON_SNIPPET = """
    import json, time, torch
    from pointjepa.ops.fps import _fps_torch, _triton_applies, farthest_point_sample
    from pointjepa.ops.fps_triton import fps_triton

    def timed(fn):
        torch.cuda.synchronize(); start = time.perf_counter(); out = fn(); torch.cuda.synchronize()
        return out, (time.perf_counter() - start) * 1e3

    gen = torch.Generator(device="cuda").manual_seed(0)
    results = []
    for batch, num_points, k, grid in ((512, 8192, 1024, False), (512, 1024, 64, False), (64, 8192, 1024, True)):
        points = torch.rand(batch, num_points, 3, device="cuda", generator=gen) * 2 - 1
        if grid:  # coarse grid: exact distance ties everywhere
            points = (points * 8).round() / 8
        start = torch.randint(num_points, (batch,), device="cuda", generator=gen)
        fps_triton(points[:2], k, start[:2])  # compile outside the timing
        triton_idx, triton_ms = timed(lambda: fps_triton(points, k, start))
        torch_idx, torch_ms = timed(lambda: _fps_torch(points, k, start))
        auto_idx = farthest_point_sample(points, k, start_idx=start)[1]
        results.append({
            "batch": batch, "num_points": num_points, "k": k, "grid": grid,
            "equal": torch.equal(triton_idx, torch_idx), "auto_uses_triton": _triton_applies(points),
            "auto_equal": torch.equal(auto_idx, torch_idx),
            "mismatched_clouds": int((triton_idx != torch_idx).any(1).sum()),
            "triton_ms": round(triton_ms, 2), "torch_ms": round(torch_ms, 2),
        })
    print(json.dumps({"cases": results}))
"""


def step_triton_fps(check: Check) -> tuple[str, dict[str, Any]]:
    if not check.cuda:
        raise StepSkipped("no CUDA device (the CPU tests check the kernel under TRITON_INTERPRET=1)")
    data = check.python_snippet(TRITON_SNIPPET, 180, "Triton FPS")
    cases = data["cases"]
    summary = "; ".join(
        f"{c['batch']}x{c['num_points']}->{c['k']}{' grid' if c['grid'] else ''}: "
        + ("equal" if c["equal"] else f"{c['mismatched_clouds']} clouds differ")
        + f", triton {c['triton_ms']} ms vs torch {c['torch_ms']} ms"
        for c in cases
    )
    if not all(c["equal"] and c["auto_equal"] and c["auto_uses_triton"] for c in cases):
        raise StepFailed(f"Triton and torch FPS indices differ, or auto does not use the kernel: {summary}",
                         json.dumps(cases, indent=1))  # fmt: skip
    return summary, data


# ---- step 4 ------------------------------------------------------------------------------------
def step_benchmark(check: Check) -> tuple[str, dict[str, Any]]:
    script = str(REPO_ROOT / "benchmarks" / "pretrain_throughput.py")
    if check.quick:
        runs = {"quick": ["--device", "cpu", "--batch-size", "2", "--num-points", "256", "--subsample-points", "64",
                          "--num-groups", "16", "--steps", "1", "--warmup", "1", "--compare-steps", "1",
                          "--config", str(REPO_ROOT / "configs" / "demo" / "pretraining.yaml")]}  # fmt: skip
    else:
        runs = {f"batch{b}": ["--device", "cuda", "--batch-size", str(b)] for b in (512, 128)}
    data, lines = {}, []
    for name, extra in runs.items():
        out = check.work / f"bench_{name}.json"
        check.run([check.python, script, *extra, "--compare", "--json", str(out)], 240, f"benchmark {name}")
        figures = json.loads(out.read_text())
        data[name] = figures
        syncs = figures["host_syncs_per_step"]
        lines.append(
            f"{name}: {figures['ms_per_step']:.1f} ms/step, {figures['samples_per_s']:,.0f} samples/s, "
            f"peak {figures['peak_mem_mb']:,.0f} MB, {figures['speedup_vs_plain']:.2f}x vs plain"
            + ("" if syncs is None else f", {syncs} host syncs")
            + f", published run {figures['projected_hours_published_run']:.2f} h"
        )
    return "; ".join(lines), data


# ---- step 5 ------------------------------------------------------------------------------------
def _svm_overlay(check: Check, data_root: Path, num_points: int) -> Path:
    """A config overlay whose ``svm_validation`` points at generated ModelNet40 / ScanObjectNN data."""
    modelnet = write_modelnet40(data_root, n_train=40, n_test=20, num_points=num_points)
    scanobjectnn = write_scanobjectnn(data_root, perturbed=False, n_train=30, n_test=15, num_points=num_points)
    overlay = {"model": {"svm_validation": {
        "modelnet40": {"class_path": "pointjepa.datasets.ModelNet40Ply2048DataModule",
                       "init_args": {"data_dir": str(modelnet), "batch_size": 32, "drop_last": False}},
        "scanobjectnn": {"class_path": "pointjepa.datasets.ScanObjectNNDataModule",
                         "init_args": {"data_dir": str(scanobjectnn), "split": "main_split", "perturbed": False,
                                       "batch_size": 32, "drop_last": False}},
    }}}  # fmt: skip
    path = check.work / "svm_validation.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def _checkpoint_steps(path: Path) -> tuple[int, int]:
    """(global_step, teacher EMA step) stored in a pretraining checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    return int(state["global_step"]), int(state["state_dict"]["teacher.step"].reshape(-1)[0])


def step_pretrain_fit(check: Check) -> tuple[str, dict[str, Any]]:
    data_root = check.work / "data"
    if check.quick:
        clouds, train, batch, epochs, svm_points = 256, 8, 4, 1, 256
        extra = [*TINY_PRETRAIN, "--data.init_args.in_memory_device=cpu", "--trainer.check_val_every_n_epoch=1",
                 "--trainer.precision=32"]  # fmt: skip
    else:
        clouds, train, batch, epochs, svm_points = 8192, 512, 128, 4, 2048
        extra = ["--data.init_args.in_memory_device=cuda", "--trainer.precision=bf16-mixed",
                 "--trainer.check_val_every_n_epoch=4"]  # fmt: skip
    shapenet = write_shapenet55(data_root, n_train=train, n_test=batch, num_points=clouds, npz=True)
    config = REPO_ROOT / "configs" / "Point-JEPA" / "pretraining" / "shapenet.yaml"
    args = [check.python, "-m", "pointjepa", "fit", "-c", str(config),
            "-c", str(_svm_overlay(check, data_root, svm_points)), f"--data.init_args.data_dir={shapenet}",
            f"--data.init_args.batch_size={batch}", "--data.init_args.in_memory=true", *extra, *QUIET]  # fmt: skip
    steps_per_run = train // batch * epochs
    figures: dict[str, Any] = {}
    for run, (max_epochs, resume) in enumerate(
        ((epochs, None), (2 * epochs, check.work / "fit0/checkpoints/last.ckpt"))
    ):
        root = check.work / f"fit{run}"
        resume_args = [] if resume is None else [f"--ckpt_path={resume}"]
        start = time.monotonic()
        check.run([*args, f"--trainer.max_epochs={max_epochs}", f"--trainer.default_root_dir={root}", *resume_args],
                  300, "pretraining fit" if resume is None else "pretraining resume")  # fmt: skip
        figures[f"run{run}_s"] = round(time.monotonic() - start, 1)
        last = root / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise StepFailed(f"no checkpoint {last} after run {run}")
        steps = _checkpoint_steps(last)
        if steps != ((run + 1) * steps_per_run,) * 2:
            raise StepFailed(
                f"run {run}: (global_step, teacher.step) = {steps}, expected {(run + 1) * steps_per_run} each"
            )
    check.checkpoint = last
    summary = (
        f"{2 * steps_per_run} steps of batch {batch} ({steps_per_run} + {steps_per_run} after resuming last.ckpt) "
        f"in {figures['run0_s']} + {figures['run1_s']} s, global_step and EMA step as expected"
    )
    return summary, figures


# ---- step 6 ------------------------------------------------------------------------------------
def step_finetune(check: Check) -> tuple[str, dict[str, Any]]:
    if check.quick:
        clouds, train, batch, steps = 128, 16, 4, 4
        extra = [*TINY_FINETUNE, "--data.init_args.batch_size=4", "--trainer.precision=32"]
    else:
        clouds, train, batch, steps, extra = 2048, 640, 32, 20, ["--trainer.precision=bf16-mixed"]
    data_dir = write_modelnet40(check.work / "data", n_train=train, n_test=2 * batch, num_points=clouds)
    root = check.work / "finetune"
    pretrained = [] if check.checkpoint is None else [f"--model.pretrained_ckpt_path={check.checkpoint}"]
    start = time.monotonic()
    check.run([check.python, "-m", "pointjepa.tasks.classification", "fit",
               "-c", str(REPO_ROOT / "configs/Point-JEPA/classification/modelnet40.yaml"),
               f"--data.init_args.data_dir={data_dir}", f"--trainer.max_steps={steps}", "--trainer.max_epochs=1",
               f"--trainer.default_root_dir={root}", *extra, *pretrained, *QUIET], 240, "fine-tune")  # fmt: skip
    seconds = round(time.monotonic() - start, 1)
    last = root / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise StepFailed(f"no checkpoint {last}")
    global_step = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
    if global_step != steps:
        raise StepFailed(f"global_step {global_step}, expected {steps}")
    source = "from the step-5 checkpoint" if pretrained else "from scratch (step 5 left no checkpoint)"
    return f"{steps} steps of batch {batch} {source} in {seconds} s", {
        "seconds": seconds,
        "pretrained": bool(pretrained),
    }


STEPS: list[tuple[str, Callable[[Check], tuple[str, dict[str, Any]]]]] = [
    ("environment", step_environment),
    ("CUDA-only tests", step_cuda_tests),
    ("Triton FPS vs torch path", step_triton_fps),
    ("throughput benchmark", step_benchmark),
    ("pretraining fit + resume", step_pretrain_fit),
    ("classification fine-tune", step_finetune),
]


def run_step(check: Check, number: int, name: str, fn: Callable[[Check], tuple[str, dict[str, Any]]]) -> StepResult:
    """Run one step; any exception becomes a failed (or skipped) result, never stops the check."""
    result = StepResult(number, name, "pass")
    start = time.monotonic()
    try:
        if check.remaining() < 5:
            raise StepSkipped("the time budget (--budget-s) is used up")
        result.summary, result.data = fn(check)
    except StepSkipped as e:
        result.status, result.summary = "skipped", str(e)
    except StepFailed as e:
        result.status, result.summary, result.error = "fail", str(e), e.output
    except Exception as e:  # a bug in the check itself: report it as this step's failure
        result.status, result.summary, result.error = "fail", f"{type(e).__name__}: {e}", _tail(traceback.format_exc())
    result.seconds = round(time.monotonic() - start, 1)
    print(f"[{number}/{len(STEPS)}] {name}: {result.status.upper()} ({result.seconds} s) {result.summary}", flush=True)
    if result.error:
        print(textwrap.indent(result.error, "    "), flush=True)
    return result


def markdown(results: list[StepResult], header: dict[str, Any]) -> str:
    """The summary as a Markdown table, errors below it."""
    lines = [
        "# GPU check",
        "",
        f"Mode: {header['mode']}; {header['when']}; total {header['seconds']} s. Command: `{header['command']}`",
        "",
        "| step | status | seconds | result |",
        "|---|---|---|---|",
        *(f"| {r.step}. {r.name} | {r.status} | {r.seconds} | {r.summary.replace('|', '/')} |" for r in results),
    ]
    for r in results:
        if r.error:
            lines += ["", f"## {r.step}. {r.name}: error", "", "```", r.error, "```"]
    return "\n".join(lines) + "\n"


def output_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO_ROOT / "artifacts" / "gpu_check"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the default without CUDA)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="overall time budget in seconds")
    parser.add_argument("--out", type=Path, help="report directory (default $OUT, else artifacts/gpu_check)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    out = output_dir(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "gpu_check.log"
    log.write_text("")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pointjepa_gpu_check_") as work:
        check = Check(quick=args.quick or not cuda, cuda=cuda, work=Path(work), log=log, deadline=start + args.budget_s)
        print(f"gpu_check: {'quick' if check.quick else 'full'} mode, CUDA {'present' if cuda else 'absent'}, "
              f"budget {args.budget_s:.0f} s, report in {out}", flush=True)  # fmt: skip
        results = [run_step(check, i, name, fn) for i, (name, fn) in enumerate(STEPS, start=1)]
    header = {
        "mode": "quick" if check.quick else "full",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(time.monotonic() - start, 1),
        "command": " ".join(["benchmarks/gpu_check.sh", *(argv if argv is not None else sys.argv[1:])]),
    }
    report = {**header, "passed": all(r.status != "fail" for r in results), "steps": [asdict(r) for r in results]}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(results, header))
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skipped")}
    print(f"gpu_check: {counts['pass']} passed, {counts['fail']} failed, {counts['skipped']} skipped "
          f"in {header['seconds']} s; report: {out / 'gpu_check.md'}", flush=True)  # fmt: skip
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
