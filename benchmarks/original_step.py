"""Time the original Point-JEPA code's training step next to ours and the reference step, stage by stage.

The original code is not part of this repository: pass a checkout of it with ``--original``
(for example ``git -C <mirror> archive HEAD | tar -x -C /tmp/original``). It is imported from
there as it is, under its own package name, in this process, beside ours. What it needs and this
machine may lack is supplied for the run only:

- pytorch3d: `sample_farthest_points`, `knn_points`, `knn_gather`, `masked_gather` and
  `euler_angles_to_matrix`, as pure-torch batched functions of this package (`farthest_point_sample`,
  `knn` with the torch backend; see "How the reference was calibrated" in `benchmarks/README.md`
  for what they cost against a compiled per-cloud loop, the structure of pytorch3d's CPU kernels).
- pl_bolts: the LR scheduler class (built once, never stepped inside a timed step).

The original's step is run as Lightning 1.9's automatic optimisation runs it: ``training_step``
(transforms, tokenizer, sequencer, teacher, samplers, student, four predictor calls, loss, the
logged statistics; ``self.log`` is a no-op without a trainer), ``zero_grad``, ``backward``, then
its ``optimizer_step`` (AdamW from its ``configure_optimizers``, then its EMA update). Its model is
built from the ``model:`` section of its own published config, at the sizes given here.

Each round times one step of every entrant, in an order that rotates from round to round, so all see
the same machine load. Besides wall time it records the process CPU time of each step: with
``OMP_NUM_THREADS=1`` that leaves out the time spent waiting for a core on a shared machine. Mask
sizes are drawn by each code as it draws them; the mean context size of each entrant is reported
next to its times.

    python benchmarks/original_step.py --original /tmp/original --rounds 10
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pretrain_throughput, and through it the repository

import torch  # noqa: E402
import yaml  # noqa: E402
from pretrain_throughput import (  # noqa: E402
    PUBLISHED_CONFIG,
    STAGES,
    StageTimer,
    attach_stage_marks,
    build_model,
    compile_model,
    machine_name,
    make_optimizer,
    optimised_step,
)

from pointjepa.ops.fps import farthest_point_sample  # noqa: E402
from pointjepa.ops.gather import gather_points  # noqa: E402
from pointjepa.ops.knn import knn  # noqa: E402
from tests.reference import original_attention, plain_train_step  # noqa: E402

ORIGINAL_CONFIG = Path("configs/Point-JEPA/pretraining/shapenet.yaml")
STEPS_PER_EPOCH = 82  # ShapeNet55's 41,952 training clouds in batches of 512: the EMA ramp's length only


class _KnnResult(NamedTuple):
    dists: torch.Tensor
    idx: torch.Tensor
    knn: torch.Tensor | None


def _sample_farthest_points(
    points: torch.Tensor, lengths: Any = None, K: int = 50, random_start_point: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """pytorch3d's signature: (B, N, 3) -> sampled points (B, K, 3), indices (B, K)."""
    if lengths is not None:
        raise NotImplementedError("original_step.py: the pytorch3d stand-in takes no lengths")
    return farthest_point_sample(points, K, random_start=random_start_point, backend="torch")


def _knn_points(p1: torch.Tensor, p2: torch.Tensor, K: int = 1, return_nn: bool = False, **_: Any) -> _KnnResult:
    """pytorch3d's signature: (B, M, 3), (B, N, 3) -> dists, idx (B, M, K) and, with return_nn, the points."""
    dists, idx = knn(p1, p2, K, backend="torch")
    return _KnnResult(dists, idx, _knn_gather(p2, idx) if return_nn else None)


def _knn_gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, N, C), (B, M, K) -> (B, M, K, C)."""
    return gather_points(x, idx)


def _euler_angles_to_matrix(angles: torch.Tensor, convention: str) -> torch.Tensor:
    """(3,) angles -> (3, 3): the product of one axis rotation per letter of ``convention``, in order."""
    matrix = torch.eye(3, dtype=angles.dtype)
    for axis, angle in zip(convention, angles):
        c, s = torch.cos(angle), torch.sin(angle)
        one, zero = torch.ones_like(c), torch.zeros_like(c)
        rows = {
            "X": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            "Y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            "Z": [[c, -s, zero], [s, c, zero], [zero, zero, one]],
        }[axis]
        matrix = matrix @ torch.stack([torch.stack(row) for row in rows])
    return matrix


def _unsupported(name: str) -> Callable[..., Any]:
    def call(*_: Any, **__: Any) -> Any:
        raise NotImplementedError(f"original_step.py: the pytorch3d stand-ins have no {name}")

    return call


def _stand_in_modules() -> dict[str, types.ModuleType]:
    """Modules for the imports of the original's pretraining code that this machine may lack."""
    modules = {name: types.ModuleType(name) for name in (
        "pytorch3d", "pytorch3d.ops", "pytorch3d.ops.utils", "pytorch3d.transforms",
        "pl_bolts", "pl_bolts.optimizers", "pl_bolts.optimizers.lr_scheduler",
    )}  # fmt: skip
    ops = modules["pytorch3d.ops"]
    ops.sample_farthest_points, ops.knn_points, ops.knn_gather = _sample_farthest_points, _knn_points, _knn_gather
    ops.ball_query = _unsupported("ball_query")
    modules["pytorch3d.ops.utils"].masked_gather = gather_points
    modules["pytorch3d.transforms"].euler_angles_to_matrix = _euler_angles_to_matrix

    class LinearWarmupCosineAnnealingLR(torch.optim.lr_scheduler.LambdaLR):
        """Constant LR; never stepped inside a timed step."""

        def __init__(self, optimizer: torch.optim.Optimizer, *_: Any, **__: Any) -> None:
            super().__init__(optimizer, lambda _: 1.0)

    modules["pl_bolts.optimizers.lr_scheduler"].LinearWarmupCosineAnnealingLR = LinearWarmupCosineAnnealingLR
    return modules


def import_original(checkout: Path) -> types.ModuleType:
    """The original's ``pointjepa.models.point_jepa`` module, imported from ``checkout`` beside ours.

    Our ``pointjepa`` modules step aside while it imports (both packages have that name), then come
    back; the original's stay loaded under ``original_pointjepa.*``.
    """
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "pointjepa" or k.startswith("pointjepa.")}
    stand_ins = {k: m for k, m in _stand_in_modules().items() if k not in sys.modules}
    sys.modules.update(stand_ins)
    sys.path.insert(0, str(checkout))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # timm's deprecated import paths
            return importlib.import_module("pointjepa.models.point_jepa")
    finally:
        sys.path.remove(str(checkout))
        for name in [k for k in sys.modules if k == "pointjepa" or k.startswith("pointjepa.")]:
            sys.modules["original_" + name] = sys.modules.pop(name)
        for name in stand_ins:
            sys.modules.pop(name, None)
        sys.modules.update(ours)


def _number_or_text(value: Any) -> Any:
    """YAML reads ``1e-3`` as text; the original's CLI reads it as the float its signature asks for."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def build_original(module: types.ModuleType, checkout: Path, args: argparse.Namespace) -> tuple[Any, Any]:
    """The original's model from its published config at this size, set up as `fit` sets it up -> (model, AdamW)."""
    section = dict(yaml.safe_load((checkout / ORIGINAL_CONFIG).read_text())["model"])
    section.pop("svm_validation", None)
    section = {key: _number_or_text(value) for key, value in section.items()}
    section.update(tokenizer_num_groups=args.num_groups, transformation_subsample_points=args.subsample_points)
    model = module.PointJepa(**section)
    stub_trainer = types.SimpleNamespace(
        estimated_stepping_batches=STEPS_PER_EPOCH * 500, max_epochs=500, loggers=[], fit_loop=None
    )
    model._trainer = stub_trainer  # its setup and configure_optimizers read these
    model.setup("fit")  # builds the EMA teacher
    model.on_fit_start()
    (optimizer,), _ = model.configure_optimizers()
    model._trainer = None  # self.log becomes a no-op
    return model.train(), optimizer


def original_step(model: Any, optimizer: torch.optim.Optimizer, points: torch.Tensor, timer: StageTimer) -> None:
    """One step as Lightning's automatic optimisation runs the original's hooks."""
    timer.begin_step()

    def closure() -> torch.Tensor:
        loss = model.training_step((points, None), 0)
        optimizer.zero_grad()
        loss.backward()
        timer.mark("loss+backward")
        return loss

    model.optimizer_step(0, 0, optimizer, closure)
    timer.mark("optimizer+EMA")


def attach_original_marks(model: Any, timer: StageTimer) -> None:
    """Stage boundaries in the original's step, named as `pretrain_throughput.py` names ours."""
    transforms = model.train_transformations

    def transformed(points: torch.Tensor) -> torch.Tensor:
        points = transforms(points)
        timer.mark("transforms")
        return points

    model.train_transformations = transformed
    model.tokenizer.register_forward_hook(lambda *_: timer.mark("tokenizer"))
    # sequencer: between the tokenizer and the first positional encoding (of the targets' centers)
    seen = {"pos": False}

    def before_pos(*_: Any) -> None:
        if not seen["pos"]:
            timer.mark("sequencer")
        seen["pos"] = not seen["pos"]  # the second call (context positions) belongs to sampling

    model.positional_encoding.register_forward_pre_hook(before_pos)
    model.teacher.ema_model.register_forward_hook(lambda *_: timer.mark("teacher/targets"))
    model.student.register_forward_pre_hook(lambda *_: timer.mark("sampling"))
    model.student.register_forward_hook(lambda *_: timer.mark("student"))
    model.predictor.register_forward_hook(lambda *_: timer.mark("predictor"))


def context_size_recorder(module: torch.nn.Module, sizes: list[int]) -> None:
    """Record the number of context tokens ``module`` (a student encoder) sees per call."""
    module.register_forward_pre_hook(lambda _, inputs: sizes.append(int(inputs[0].shape[1])))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, required=True, help="checkout of the original Point-JEPA code")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-points", type=int, default=8192)
    parser.add_argument("--subsample-points", type=int, default=1024)
    parser.add_argument("--num-groups", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (after one warm-up of each)")
    parser.add_argument("--compile", action="store_true", help="also time ours with the model's torch.compile")
    parser.add_argument("--bf16", action="store_true", help="also time ours with bf16 autocast (CPU: bf16-mixed)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    if not (args.original / ORIGINAL_CONFIG).is_file():
        parser.error(f"--original: {args.original} has no {ORIGINAL_CONFIG} (expected a checkout of the original)")
    return args


class Entrant(NamedTuple):
    """One timed step: the call, its stage timer, its mask generator (None: the global one) and its context sizes."""

    step: Callable[[], None]
    timer: StageTimer
    generator: torch.Generator | None
    context_sizes: list[int]


def summary(times: list[float]) -> dict[str, float]:
    """Median, min, max and mean of a list of times."""
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "mean": statistics.fmean(times)}


def stage_times(timer: StageTimer, statistic: Callable[[list[float]], float]) -> dict[str, float]:
    """``statistic`` (median, min) over the timed steps of each stage's ms (a stage seen twice in a step: summed)."""
    per_step: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for stamps in timer.steps:
        totals: dict[str, float] = {}
        for (_, start), (stage, end) in zip(stamps, stamps[1:]):
            totals[stage] = totals.get(stage, 0.0) + (end - start) * 1e3
        for stage in STAGES:
            per_step[stage].append(totals.get(stage, 0.0))
    return {stage: statistic(times) for stage, times in per_step.items()}


def build_entrants(args: argparse.Namespace, points: torch.Tensor) -> dict[str, Entrant]:
    """The original, the reference and ours (and ours compiled), all starting from the same weights where
    they share a layout (ours and the reference; the original draws its own)."""
    original, original_opt = build_original(import_original(args.original.resolve()), args.original, args)
    timer = StageTimer(points.device)
    attach_original_marks(original, timer)
    entrants = {"original": Entrant(lambda: original_step(original, original_opt, points, timer), timer, None, [])}

    ours = build_model(PUBLISHED_CONFIG, args.num_groups, args.subsample_points).train()
    state = ours.state_dict()
    reference = original_attention(build_model(PUBLISHED_CONFIG, args.num_groups, args.subsample_points)).train()
    reference.load_state_dict(state)
    ref_timer, ref_opt, ref_gen = StageTimer(points.device), make_optimizer(reference, fused=False), torch.Generator()

    def reference_step() -> None:
        ref_timer.begin_step()
        plain_train_step(reference, ref_opt, points, ref_gen, ref_timer.mark)

    entrants["reference"] = Entrant(reference_step, ref_timer, ref_gen, [])
    models = {"original": original.student, "reference": reference.student}

    variants = ["ours"] + (["ours+compile"] if args.compile else []) + (["ours+bf16"] if args.bf16 else [])
    for name in variants:
        model = build_model(PUBLISHED_CONFIG, args.num_groups, args.subsample_points).train()
        model.load_state_dict(state)
        if name == "ours+compile":
            compile_model(model)
        precision = "bf16" if name == "ours+bf16" else "fp32"
        our_timer, opt, gen = StageTimer(points.device), make_optimizer(model), torch.Generator()
        attach_stage_marks(model, our_timer)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        step = functools.partial(optimised_step, model, opt, scaler, points, gen, precision, our_timer)
        entrants[name] = Entrant(step, our_timer, gen, [])
        models[name] = model.student
    for name, student in models.items():
        context_size_recorder(student, entrants[name].context_sizes)
    return entrants


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    points = (torch.rand(args.batch_size, args.num_points, 3) * 2 - 1).contiguous()
    entrants = build_entrants(args, points)

    first_step_s, first_step_cpu_s = {}, {}
    for name, entrant in entrants.items():  # warm-up (and, compiled, the compilation)
        start, cpu_start = time.perf_counter(), time.process_time()
        entrant.step()
        first_step_s[name] = time.perf_counter() - start
        first_step_cpu_s[name] = time.process_time() - cpu_start
        entrant.timer.steps.clear()
        entrant.context_sizes.clear()
    names = list(entrants)
    step_ms: dict[str, list[float]] = {name: [] for name in names}
    cpu_ms: dict[str, list[float]] = {name: [] for name in names}
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # the order rotates
            entrant = entrants[name]
            if entrant.generator is None:
                torch.manual_seed(args.seed + r)  # the original draws its masks from the global generator
            else:
                entrant.generator.manual_seed(args.seed + r)
            start, cpu_start = time.perf_counter(), time.process_time()
            entrant.step()
            step_ms[name].append((time.perf_counter() - start) * 1e3)
            cpu_ms[name].append((time.process_time() - cpu_start) * 1e3)
        loads.append(os.getloadavg()[0])

    result: dict[str, Any] = {
        "machine": machine_name(points.device),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"},
        "load_average_1min": {"start": loads[0], "end": loads[-1], "max": max(loads), "min": min(loads)},
        "first_step_s": first_step_s,
        "first_step_cpu_s": first_step_cpu_s,
        "step_ms": {name: summary(times) for name, times in step_ms.items()},
        "rounds_ms": step_ms,
        "cpu_ms": {name: summary(times) for name, times in cpu_ms.items()},
        "rounds_cpu_ms": cpu_ms,
        "ratio_to_original_cpu_median": {
            name: statistics.median(o / t for o, t in zip(cpu_ms["original"], times)) for name, times in cpu_ms.items()
        },
        "stages_median_ms": {name: stage_times(e.timer, statistics.median) for name, e in entrants.items()},
        "stages_min_ms": {name: stage_times(e.timer, min) for name, e in entrants.items()},
        "mean_context_tokens": {name: statistics.fmean(e.context_sizes) for name, e in entrants.items()},
        "ratio_to_original_median": {
            name: statistics.median(o / t for o, t in zip(step_ms["original"], times))
            for name, times in step_ms.items()
        },
    }
    report(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(result: dict[str, Any]) -> None:
    names = list(result["step_ms"])
    load = result["load_average_1min"]
    lines = [
        f"machine: {result['machine']}",
        f"settings: {result['settings']}",
        f"1-min load average over the rounds: {load['min']:.2f}-{load['max']:.2f}",
        "first step, wall (cpu) s: "
        + ", ".join(f"{n} {s:.1f} ({result['first_step_cpu_s'][n]:.1f})" for n, s in result["first_step_s"].items()),
        f"{'':<16}" + "".join(f"{n:>16}" for n in names),
    ]
    for stage in STAGES:
        lines.append(
            f"{stage:<16}"
            + "".join(
                f"{result['stages_median_ms'][n][stage]:>8.1f} ({result['stages_min_ms'][n][stage]:>5.0f})"
                for n in names
            )
        )
    for key in ("median", "min", "max"):
        lines.append(f"{'step ' + key:<16}" + "".join(f"{result['step_ms'][n][key]:>14.1f}" for n in names))
    lines.append(f"{'context tokens':<16}" + "".join(f"{result['mean_context_tokens'][n]:>14.1f}" for n in names))
    lines.append(f"{'original/this':<16}" + "".join(f"{result['ratio_to_original_median'][n]:>15.2f}x" for n in names))
    for key in ("median", "min", "max"):
        lines.append(f"{'cpu ' + key:<16}" + "".join(f"{result['cpu_ms'][n][key]:>16.1f}" for n in names))
    ratios = result["ratio_to_original_cpu_median"]
    lines.append(f"{'original/this':<16}" + "".join(f"{ratios[n]:>15.2f}x" for n in names) + "  (cpu)")
    lines.append(
        "(stage rows: median (min) wall ms over the rounds; cpu: process CPU time per step, which with one thread "
        "leaves out the time spent waiting for a core; ratios: median over the rounds of original / this)"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
