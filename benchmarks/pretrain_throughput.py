"""Pretraining throughput of Point-JEPA: full training steps on a synthetic in-memory batch.

A step is what `PointJepa.training_step` plus Lightning's optimisation do: train transforms (FPS
subsampling included), tokenizer, sequencer, teacher targets, mask sampling, student, predictor,
loss, backward, AdamW step and EMA update. Reports ms/step, samples/s, peak memory and the share
of each stage; `--compare` then alternates our step with `tests/reference.py`'s `plain_train_step` (the original's
step, eager fp32, calibrated against the original code: `benchmarks/README.md`) on the same weights in
the same process, so both see the same machine load.

    python benchmarks/pretrain_throughput.py                 # CUDA: published size, bf16 autocast
    python benchmarks/pretrain_throughput.py --device cpu --steps 3 --warmup 1 --compare --json /tmp/b.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402
from jsonargparse import ArgumentError  # noqa: E402
from jsonargparse import ArgumentParser as ConfigParser  # noqa: E402

from pointjepa.models.point_jepa import PointJepa  # noqa: E402
from pointjepa.modules.compile import compile_step_modules  # noqa: E402
from tests.reference import original_attention, plain_train_step  # noqa: E402

PUBLISHED_CONFIG = REPO_ROOT / "configs" / "Point-JEPA" / "pretraining" / "shapenet.yaml"
STAGES = ("transforms", "tokenizer", "sequencer", "teacher/targets", "sampling", "student", "predictor",
          "loss+backward", "optimizer+EMA")  # fmt: skip
SHAPENET55_TRAIN_CLOUDS = 41952
PUBLISHED_EPOCHS = 500
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Published size on the GPU (issue 7); a small one that runs in about a minute on a laptop CPU.
DEFAULTS: dict[str, dict[str, Any]] = {
    "cuda": dict(
        batch_size=512, num_points=8192, subsample_points=1024, num_groups=64, steps=20, warmup=5, precision="bf16"
    ),
    "cpu": dict(
        batch_size=16, num_points=2048, subsample_points=256, num_groups=32, steps=5, warmup=2, precision="fp32"
    ),
}


class StageTimer:
    """Stage boundaries of each step: CUDA events on the GPU (read after one synchronise once the
    timed steps are done, never inside a step), `time.perf_counter` on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.steps: list[list[tuple[str, Any]]] = []

    def _stamp(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _ms(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3

    def begin_step(self) -> None:
        self.steps.append([("start", self._stamp())])

    def mark(self, stage: str) -> None:
        """Close ``stage`` of the current step (no-op outside a step)."""
        if self.steps:
            self.steps[-1].append((stage, self._stamp()))

    def finish(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def ms_per_step(self) -> float:
        """Mean wall time per step, first start to last end (gaps between steps included)."""
        return self._ms(self.steps[0][0][1], self.steps[-1][-1][1]) / len(self.steps)

    def stage_ms(self) -> dict[str, float]:
        """Mean time of each stage per step."""
        totals: dict[str, float] = {}
        for stamps in self.steps:
            for (_, start), (stage, end) in zip(stamps, stamps[1:]):
                totals[stage] = totals.get(stage, 0.0) + self._ms(start, end)
        return {stage: total / len(self.steps) for stage, total in totals.items()}


def attach_stage_marks(model: PointJepa, timer: StageTimer) -> None:
    """Forward hooks that close each stage when the module that ends it returns."""
    ends = {
        model.train_transformations: "transforms",
        model.tokenizer: "tokenizer",
        model.sequencer: "sequencer",
        model.teacher: "teacher/targets",  # positional encoding + EMA encoder on all tokens
        model.student: "student",
        model.predictor: "predictor",
    }
    for module, stage in ends.items():
        module.register_forward_hook(lambda *_, stage=stage: timer.mark(stage))
    # target normalisation, host-side block sampling and gathers run between teacher and student
    model.student.register_forward_pre_hook(lambda *_: timer.mark("sampling"))


def build_model(config: Path, num_groups: int, subsample_points: int) -> PointJepa:
    """The `model:` section of a pretraining config (types as the CLI reads them), at the given size."""
    section = dict((yaml.safe_load(config.read_text()) or {}).get("model") or {})
    section.pop("svm_validation", None)  # needs data sets; not part of a training step
    section.update(tokenizer_num_groups=num_groups, transformation_subsample_points=subsample_points)
    parser = ConfigParser(exit_on_error=False)
    parser.add_class_arguments(PointJepa, "model", skip={"svm_validation"})
    try:
        model_args = parser.parse_object({"model": section}).model.as_dict()
    except ArgumentError as e:
        raise ValueError(f"{config}: the model: section does not fit PointJepa: {e}") from e
    return PointJepa(**model_args)


def make_optimizer(model: PointJepa, fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW as `PointJepa.configure_optimizers` builds it (fused on CUDA and CPU), or with ``fused`` as given."""
    params = [p for p in model.parameters() if p.requires_grad]
    if fused is None:
        fused = params[0].device.type in ("cuda", "cpu")
    hp = model.hparams
    return torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.optimizer_adamw_weight_decay, fused=fused)


def compile_model(model: PointJepa) -> None:
    """`torch.compile` the student, teacher, predictor and mini-PointNet as ``torch_compile: true`` does.

    Whole encoders, not blocks: each block has its own drop-path rate, a constant per graph. Only the
    ``forward``s are replaced, so parameter names and the stage hooks stay as they are.
    """
    compile_step_modules(model.student, model.teacher.ema_model, model.predictor, model.tokenizer.embedding)


def optimised_step(
    model: PointJepa, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, points: torch.Tensor,
    generator: torch.Generator, precision: str, timer: StageTimer,
) -> None:  # fmt: skip
    """One training step as Lightning runs it (autocast forward, scaled backward, step, EMA)."""
    timer.begin_step()
    with torch.autocast(points.device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32"):
        predictions, targets = model.jepa_step(model.train_transformations(points), generator)
        loss = model.loss_func(predictions.float(), targets.float())
    scaler.scale(loss).backward()
    timer.mark("loss+backward")
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    model.teacher.update(model.student)
    timer.mark("optimizer+EMA")


def run(step: Callable[[], None], timer: StageTimer, steps: int, warmup: int) -> None:
    """``warmup`` untimed steps, then ``steps`` timed ones; one synchronise at the end."""
    for _ in range(warmup):
        step()
    timer.finish()
    timer.steps.clear()
    if timer.cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        step()
    timer.finish()


def count_host_syncs(step: Callable[[], None]) -> int:
    """Synchronising CUDA calls made by one step (`torch.cuda.set_sync_debug_mode('warn')`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = names[0] if names else platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text}")
        return int(text)

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int_at_least(1), help="clouds per step (cuda 512, cpu 16)")
    parser.add_argument("--num-points", type=int_at_least(1), help="points per raw cloud (cuda 8192, cpu 2048)")
    parser.add_argument("--subsample-points", type=int_at_least(1), help="FPS subsample size (cuda 1024, cpu 256)")
    parser.add_argument("--num-groups", type=int_at_least(1), help="tokens per cloud (cuda 64, cpu 32)")
    parser.add_argument("--steps", type=int_at_least(1), help="timed steps (cuda 20, cpu 5)")
    parser.add_argument("--warmup", type=int_at_least(0), help="untimed steps first (cuda 5, cpu 2)")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), help="autocast dtype (cuda bf16, cpu fp32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile encoders, predictor, mini-PointNet")
    parser.add_argument("--compare", action="store_true", help="also time the original's step, alternately")
    parser.add_argument("--compare-steps", type=int_at_least(1), default=3, help="alternating rounds (after 1 warm-up)")
    parser.add_argument("--config", type=Path, default=PUBLISHED_CONFIG, help="pretraining config (model: section)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here (torch.cuda.is_available() is False); use --device cpu")
    if not args.config.is_file():
        parser.error(f"--config: {args.config} is not a file (expected a pretraining YAML with a model: section)")
    if not args.num_groups <= min(args.subsample_points, args.num_points):
        parser.error(f"--num-groups {args.num_groups}: expected at most the points per cloud after subsampling")
    return args


def timed_ms(step: Callable[[], None], device: torch.device) -> float:
    """Wall time of one call of ``step`` in ms, the device drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def compare_alternately(
    args: argparse.Namespace,
    state: dict[str, torch.Tensor],
    points: torch.Tensor,
    our_step: Callable[[], None],
    our_generator: torch.Generator,
    plain_timer: StageTimer,
) -> list[tuple[float, float]]:
    """``--compare-steps`` rounds of (our step, plain reference step), each timed, after one warm-up of each.

    The reference (`tests.reference.plain_train_step`: eager fp32, the original's attention, the non-fused
    AdamW of the original's Lightning default) runs on a second model loaded with ``state``. Round r
    seeds both mask generators with ``seed + r``, so both steps draw the same target and context
    sizes, and the one that runs first alternates: both see the same machine load. The reference's
    stages of the timed rounds go to ``plain_timer``.
    """
    model = original_attention(build_model(args.config, args.num_groups, args.subsample_points))
    model = model.to(points.device).train()
    model.load_state_dict(state)
    optimizer, generator = make_optimizer(model, fused=False), torch.Generator()

    def plain() -> None:
        plain_timer.begin_step()
        plain_train_step(model, optimizer, points, generator, plain_timer.mark)

    plain()
    our_step()
    plain_timer.steps.clear()
    rounds = []
    for r in range(args.compare_steps):
        our_generator.manual_seed(args.seed + r)
        generator.manual_seed(args.seed + r)
        if r % 2:  # the reference first
            plain_ms = timed_ms(plain, points.device)
            ours_ms = timed_ms(our_step, points.device)
        else:
            ours_ms = timed_ms(our_step, points.device)
            plain_ms = timed_ms(plain, points.device)
        rounds.append((ours_ms, plain_ms))
    return rounds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    try:
        model = build_model(args.config, args.num_groups, args.subsample_points).to(device).train()
    except ValueError as e:  # a config that does not fit the model: one line, no traceback
        raise SystemExit(f"pretrain_throughput.py: error: {e}") from None
    points = (torch.rand(args.batch_size, args.num_points, 3, device=device) * 2 - 1).contiguous()
    initial_state = {k: v.cpu().clone() for k, v in model.state_dict().items()}  # off the GPU: peak memory
    if args.compile:
        compile_model(model)

    timer = StageTimer(device)
    attach_stage_marks(model, timer)
    optimizer, generator = make_optimizer(model), torch.Generator().manual_seed(args.seed)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
    step = lambda: optimised_step(model, optimizer, scaler, points, generator, args.precision, timer)  # noqa: E731
    run(step, timer, args.steps, args.warmup)
    ms, stages = timer.ms_per_step(), timer.stage_ms()
    stage_total = sum(stages.values())
    result: dict[str, Any] = {
        "machine": machine_name(device),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"},
        "ms_per_step": ms,
        "samples_per_s": args.batch_size * 1e3 / ms,
        "peak_mem_mb": (  # GPU: allocated in the timed steps; CPU: peak resident set of the process (KiB on Linux)
            torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
        "stages": {s: {"ms": stages[s], "share": stages[s] / stage_total} for s in STAGES},
        "projected_hours_published_run": PUBLISHED_EPOCHS * SHAPENET55_TRAIN_CLOUDS * ms / args.batch_size / 3.6e6,
        "host_syncs_per_step": count_host_syncs(step) if device.type == "cuda" else None,
    }

    if args.compare:
        plain_timer = StageTimer(device)
        rounds = compare_alternately(args, initial_state, points, step, generator, plain_timer)
        plain_timer.finish()
        plain_stages = plain_timer.stage_ms()
        plain_total = sum(plain_stages.values())
        result["plain_stages"] = {s: {"ms": plain_stages[s], "share": plain_stages[s] / plain_total} for s in STAGES}
        ours, plain = (sum(times) / len(times) for times in zip(*rounds))
        result["compare_rounds_ms"] = [list(r) for r in rounds]
        result["paired_ms_per_step"] = ours
        result["plain_ms_per_step"] = plain
        result["plain_samples_per_s"] = args.batch_size * 1e3 / plain
        result["speedup_vs_plain"] = plain / ours
        result["speedup_vs_plain_median"] = statistics.median(b / a for a, b in rounds)  # robust to load spikes

    report(result, args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    memory = "peak GPU memory allocated" if args.device == "cuda" else "peak host RSS (whole process)"
    lines = [
        f"machine: {result['machine']}",
        f"step: batch {args.batch_size}, {args.num_points} -> {args.subsample_points} points, "
        f"{args.num_groups} groups, precision {args.precision}, compile {args.compile}, "
        f"{args.steps} timed after {args.warmup} warm-up",
        f"optimised: {result['ms_per_step']:.1f} ms/step, {result['samples_per_s']:,.1f} samples/s, "
        f"{memory} {result['peak_mem_mb']:,.0f} MB",
        f"  at this speed {PUBLISHED_EPOCHS} ShapeNet55 epochs take {result['projected_hours_published_run']:.2f} h",
        f"  {'stage':<16}{'ms/step':>10}{'share':>8}",
        *(f"  {stage:<16}{f['ms']:>10.2f}{f['share']:>8.1%}" for stage, f in result["stages"].items()),
    ]
    if result["host_syncs_per_step"] is not None:
        lines.append(f"  host-device synchronisations in one step: {result['host_syncs_per_step']}")
    if "speedup_vs_plain" in result:
        lines += [
            f"alternating with the original's step (plain eager fp32 reference), {args.compare_steps} rounds "
            "after 1 warm-up of each:",
            f"  optimised {result['paired_ms_per_step']:.1f} ms/step, reference {result['plain_ms_per_step']:.1f} "
            f"ms/step ({result['plain_samples_per_s']:,.1f} samples/s)",
            "  reference stages: "
            + ", ".join(f"{s} {f['ms']:.1f} ({f['share']:.1%})" for s, f in result["plain_stages"].items()),
            "  rounds (optimised, reference) ms: "
            + ", ".join(f"({a:.0f}, {b:.0f})" for a, b in result["compare_rounds_ms"]),
            f"speed-up vs plain: {result['speedup_vs_plain']:.2f}x (median of the rounds "
            f"{result['speedup_vs_plain_median']:.2f}x)",
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
