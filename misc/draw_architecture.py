r"""Draw the README figures from the real modules: the pretraining pipeline and one cloud's blocks.

    python misc/draw_architecture.py [--config configs/Point-JEPA/pretraining/shapenet.yaml] [--out_dir misc]

``architecture.png``: tokenizer -> sequencer -> context / target blocks -> student / teacher ->
predictor, labelled with the tensor shapes of one forward pass and the parameter counts of a
``PointJepa`` built from the config's ``model:`` section. ``target_context.png``: a synthetic shape
with the context and target blocks that model's sequencer and samplers choose.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from pointjepa.datasets import SyntheticShapesDataModule
from pointjepa.eval.target_context_vis import point_jepa_from_hparams
from pointjepa.models.point_jepa import PointJepa
from pointjepa.modules.samplers import gather_tokens, sample_context, sample_targets
from pointjepa.viz import choose_blocks, save_png, target_context_figure

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"data": "#e8e8e8", "module": "#cfe2f3", "teacher": "#fce5cd", "block": "#d9ead3", "loss": "#f4cccc"}


def model_from_config(path: Path) -> PointJepa:
    """``PointJepa`` of a pretraining config's ``model:`` section, in eval mode."""
    return point_jepa_from_hparams((yaml.safe_load(path.read_text()) or {}).get("model") or {}, str(path)).eval()


def millions(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M params"


@torch.no_grad()
def shapes(model: PointJepa, num_points: int) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of one pretraining forward pass on a batch of 2 random clouds."""
    hp = model.hparams
    points = model.val_transformations(torch.rand(2, num_points, 3))
    tokens, centers = model.sequencer(*model.tokenizer(points))
    generator = torch.Generator().manual_seed(0)
    targets = sample_targets(
        tokens.shape[1], hp.num_targets_per_sample, model.target_ratio, hp.target_sample_method, generator
    )
    context = sample_context(tokens.shape[1], targets, model.context_ratio, hp.context_sample_method, generator)
    encoded = model.student(gather_tokens(tokens, context), gather_tokens(model.positional_encoding(centers), context))
    predictions = model.predictor(
        encoded.last_hidden_state, gather_tokens(centers, context), gather_tokens(centers, targets)
    )
    return {
        "points": tuple(points.shape),
        "tokens": tuple(tokens.shape),
        "context": tuple(encoded.last_hidden_state.shape),
        "targets": tuple(gather_tokens(tokens, targets).shape),
        "predictions": tuple(predictions.shape),
    }


def box(ax, x: float, y: float, text: str, colour: str, width: float = 1.9, height: float = 0.95) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.04",
            facecolor=colour,
            edgecolor="0.35",
            linewidth=0.8,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=6.8, linespacing=1.3)


def arrow(
    ax, start: tuple[float, float], end: tuple[float, float], text: str = "", at: float = 0.5, dashed: bool = False
) -> None:
    """Arrow from ``start`` to ``end``, with ``text`` at fraction ``at`` of the way."""
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        arrowprops=dict(arrowstyle="-|>", color="0.3", lw=0.9, linestyle="--" if dashed else "-"),
    )
    if text:
        x, y = start[0] + at * (end[0] - start[0]), start[1] + at * (end[1] - start[1])
        ax.text(
            x + 0.08,
            y,
            text,
            ha="left",
            va="center",
            fontsize=5.8,
            color="0.25",
            bbox=dict(facecolor="white", edgecolor="none", pad=0.5),
        )


def architecture_figure(model: PointJepa, num_points: int) -> Figure:
    """Pipeline diagram labelled with ``model``'s shapes and parameter counts."""
    hp, s = model.hparams, shapes(model, num_points)
    fmt = lambda shape: "(" + ", ".join(["B", *map(str, shape[1:])]) + ")"  # noqa: E731
    figure = Figure(figsize=(11, 3.4))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 15.6)
    ax.set_ylim(0.2, 5.0)
    ax.set_axis_off()
    box(ax, 0.95, 2.6, f"point cloud\n{fmt(s['points'])}", COLOURS["data"], width=1.5)
    box(
        ax,
        3.05,
        2.6,
        f"tokenizer\nFPS {hp.tokenizer_num_groups} centers, kNN {hp.tokenizer_group_size}\n"
        f"mini-PointNet\n{millions(model.tokenizer)}",
        COLOURS["module"],
        width=2.0,
    )
    box(
        ax,
        5.45,
        2.6,
        f"sequencer\n{hp.token_seq_method}\ntokens {fmt(s['tokens'])}\n+ positional MLP",
        COLOURS["module"],
        width=2.1,
        height=1.1,
    )
    box(
        ax,
        8.1,
        4.3,
        f"context block\n{hp.context_sample_method}, ratio {list(hp.context_sample_ratio)}\n{fmt(s['context'])}",
        COLOURS["block"],
        height=0.8,
    )
    box(
        ax,
        8.1,
        2.6,
        f"{hp.num_targets_per_sample} target blocks\n"
        f"{hp.target_sample_method}, ratio {list(hp.target_sample_ratio)}\n{fmt(s['targets'])}",
        COLOURS["block"],
        height=0.8,
    )
    box(
        ax,
        10.5,
        4.3,
        f"student encoder\n{hp.encoder_depth} blocks, {hp.encoder_dim} wide, {hp.encoder_heads} heads\n"
        f"{millions(model.student)}",
        COLOURS["module"],
        width=2.1,
        height=0.8,
    )
    box(
        ax,
        12.9,
        4.3,
        f"predictor\n{hp.predictor_depth} blocks, {hp.predictor_embed_dim} wide\n{millions(model.predictor)}",
        COLOURS["module"],
        height=0.8,
    )
    box(
        ax,
        10.5,
        0.9,
        f"teacher encoder (EMA of student)\nall {s['tokens'][1]} tokens, layers {list(hp.target_layers)}\n"
        f"{hp.target_layer_norm}-normed outputs",
        COLOURS["teacher"],
        width=2.3,
    )
    box(ax, 14.65, 2.6, f"{hp.loss} loss\npredictions vs targets\n{fmt(s['predictions'])}", COLOURS["loss"], width=1.75)
    arrow(ax, (1.7, 2.6), (2.05, 2.6))
    arrow(ax, (4.05, 2.6), (4.4, 2.6))
    arrow(ax, (6.5, 2.9), (7.15, 4.2))
    arrow(ax, (6.5, 2.6), (7.15, 2.6))
    arrow(ax, (6.3, 2.05), (9.35, 1.0), "all tokens", at=0.45)
    arrow(ax, (9.05, 4.3), (9.45, 4.3))
    arrow(ax, (11.55, 4.3), (11.95, 4.3))
    arrow(ax, (9.05, 2.75), (12.4, 3.9), "target centers", at=0.72)
    arrow(ax, (13.85, 4.1), (14.4, 3.0))
    arrow(ax, (11.65, 1.05), (14.2, 2.15), "features of the target blocks", at=0.3)
    arrow(ax, (10.5, 3.9), (10.5, 1.35), f"EMA, tau {hp.ema_tau_min} -> {hp.ema_tau_max}", at=0.25, dashed=True)
    ax.text(
        0.2,
        0.35,
        "Point-JEPA pretraining, drawn from pointjepa.models.PointJepa with the published config; B = batch",
        fontsize=6.2,
        color="0.4",
    )
    return figure


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs/Point-JEPA/pretraining/shapenet.yaml")
    parser.add_argument("--out_dir", type=Path, default=ROOT / "misc")
    parser.add_argument("--shape", default="dumbbell", help="synthetic shape drawn in target_context.png")
    parser.add_argument("--seed", type=int, default=3, help="seed of the shape and of the samplers")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"--config {args.config}: file not found")
    torch.manual_seed(args.seed)
    model = model_from_config(args.config)
    num_points = int(model.hparams.transformation_subsample_points)
    save_png(architecture_figure(model, 2 * num_points), args.out_dir / "architecture.png", dpi=110)

    data = SyntheticShapesDataModule(
        num_points=2 * num_points,
        samples_per_class=1,
        val_samples_per_class=1,
        shapes=[args.shape, "sphere"],
        seed=args.seed,
    )
    data.setup("fit")
    points, label = next(p for p in data.val_dataset if int(p[1]) == 0)
    blocks = choose_blocks(model, points, torch.Generator().manual_seed(args.seed))
    title = f"synthetic {args.shape}: {len(blocks.centers)} tokens in {model.hparams.token_seq_method} order"
    save_png(target_context_figure(blocks, title), args.out_dir / "target_context.png", dpi=100)


if __name__ == "__main__":
    main()
