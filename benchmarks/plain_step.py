"""A plain reference pretraining step: eager fp32, the original's structure, per-sample loops.

Same parameters as a `PointJepa` (its modules are called), but FPS, kNN grouping and the
sequencer are written per sample in the most direct way, and the predictor is called once per
target block in a Python loop, as in the original `models/point_jepa.py`. It is the reference the
equivalence tests (`tests/test_fast_paths.py`) and `pretrain_throughput.py --compare` share.
Random draws follow the model's order (FPS starts from the global generator of the points'
device, mask positions from the generator passed in), so a seeded run gives the same groups,
sequence and loss as the optimised path.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pointjepa.models.point_jepa import PointJepa
from pointjepa.modules.samplers import gather_tokens, sample_context, sample_targets
from pointjepa.modules.sequencer import SequenceMethod
from pointjepa.modules.transforms import Subsample


@torch.no_grad()
def reference_fps(points: Tensor, num_samples: int, start_idx: Tensor | None = None) -> Tensor:
    """Greedy farthest point sampling, one cloud at a time: (B, N, 3) -> idx (B, K) int64.

    Each pick takes the point farthest from the chosen set (ties -> lowest index); computed in
    float32 (float64 for float64 input).
    """
    pts = points.float() if points.dtype != torch.float64 else points
    batch, num_points, _ = pts.shape
    starts = torch.zeros(batch, dtype=torch.int64) if start_idx is None else start_idx
    rows = []
    for b in range(batch):
        cloud = pts[b]  # (N, 3)
        min_dist = torch.full((num_points,), float("inf"), dtype=cloud.dtype, device=cloud.device)
        last = starts[b].to(cloud.device)
        chosen = [last]
        for _ in range(num_samples - 1):
            center = cloud.index_select(0, last.view(1))  # (1, 3), no host sync
            min_dist = torch.minimum(min_dist, (cloud - center).square().sum(-1))
            last = min_dist.argmax()
            chosen.append(last)
        rows.append(torch.stack(chosen))
    return torch.stack(rows)


@torch.no_grad()
def reference_knn(query: Tensor, points: Tensor, k: int) -> Tensor:
    """The k nearest points of each query, one cloud at a time: (B, M, 3), (B, N, 3) -> idx (B, M, k).

    Nearest first, equal distances in index order.
    """
    rows = []
    for q, p in zip(query.float(), points.float()):
        dist = (q[:, None, :] - p[None, :, :]).square().sum(-1)  # (M, N)
        rows.append(dist.argsort(dim=-1, stable=True)[:, :k])
    return torch.stack(rows)


def _morton_code(grid: Tensor, bits: int) -> Tensor:
    """(T, 3) int64 grid coordinates -> (T,) codes, bit i of axis a at position 3i + a."""
    code = torch.zeros(grid.shape[0], dtype=torch.int64)
    for i in range(bits):
        for axis in range(3):
            code |= ((grid[:, axis] >> i) & 1) << (3 * i + axis)
    return code


@torch.no_grad()
def reference_sequence_order(centers: Tensor, method: SequenceMethod, bits: int = 21) -> Tensor:
    """Token order of each cloud, one cloud at a time: centers (B, T, 3) -> order (B, T) int64.

    ``iterative_nearest[_min_start]``: start at token 0 (or the smallest x+y+z), then repeatedly
    the nearest unvisited center; ``morton``: sort by z-order code on a per-cloud grid. Runs on
    the host (one copy of the centers) and returns the order on the centers' device.
    """
    orders = []
    for c in centers.detach().float().cpu():
        num_tokens = c.shape[0]
        if method == "morton":
            lo = c.amin(dim=0)
            extent = (c.amax(dim=0) - lo).amax().clamp_min(1e-12)
            grid = ((c - lo) / extent * (2**bits - 1)).round().long()
            orders.append(_morton_code(grid, bits).argsort(stable=True))
            continue
        if method not in ("iterative_nearest", "iterative_nearest_min_start"):
            raise ValueError(f"token_seq_method: unknown method {method!r}")
        dist = (c[:, None, :] - c[None, :, :]).square().sum(-1)  # (T, T)
        current = int(c.sum(-1).argmin()) if method == "iterative_nearest_min_start" else 0
        visited = [False] * num_tokens
        order = [current]
        for _ in range(num_tokens - 1):
            visited[current] = True
            candidates = [j for j in range(num_tokens) if not visited[j]]
            current = candidates[int(dist[current, candidates].argmin())]
            order.append(current)
        orders.append(torch.tensor(order))
    return torch.stack(orders).to(centers.device)


def _fps_start(module: torch.nn.Module, points: Tensor) -> Tensor | None:
    """The start draw `farthest_point_sample(random_start=module.training)` makes, in the same order."""
    if not module.training:
        return None
    return torch.randint(points.shape[1], (points.shape[0],), device=points.device)


def plain_transforms(model: PointJepa, points: Tensor) -> Tensor:
    """The model's train or val transforms (by its mode), with `reference_fps` subsampling."""
    transforms = model.train_transformations if model.training else model.val_transformations
    for transform in transforms:
        if isinstance(transform, Subsample):
            if points.shape[1] > transform.num_points:
                idx = reference_fps(points, transform.num_points, _fps_start(transform, points))
                points = points[torch.arange(points.shape[0], device=points.device)[:, None], idx]
        else:
            points = transform(points)
    return points


def plain_tokenize(model: PointJepa, points: Tensor) -> tuple[Tensor, Tensor]:
    """points (B, N, 3) -> tokens (B, T, C), centers (B, T, 3) with reference FPS and kNN groups."""
    grouping = model.tokenizer.grouping
    if grouping.group_radius is not None:
        raise ValueError("plain step: only kNN grouping is implemented (tokenizer_group_radius must be null)")
    rows = torch.arange(points.shape[0], device=points.device)[:, None]
    centers = points[rows, reference_fps(points, grouping.num_groups, _fps_start(grouping, points))]
    neighbours = reference_knn(centers, points, grouping.group_size)  # (B, T, K)
    groups = points[rows[:, :, None], neighbours] - centers.unsqueeze(2)  # (B, T, K, 3)
    B, T, K, _ = groups.shape
    tokens = model.tokenizer.embedding(groups.reshape(B * T, K, 3)).reshape(B, T, -1)
    return tokens, centers


def plain_jepa_step(model: PointJepa, points: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Transformed points (B, N, 3) -> predictions and targets (B, M, k, C), block by block."""
    hp = model.hparams
    tokens, centers = plain_tokenize(model, points)
    order = reference_sequence_order(centers, model.sequencer.method)
    rows = torch.arange(points.shape[0], device=points.device)[:, None]
    tokens, centers = tokens[rows, order], centers[rows, order]
    pos = model.positional_encoding(centers)
    targets = model.targets(tokens, pos)

    num_tokens = tokens.shape[1]
    target_positions = sample_targets(
        num_tokens, hp.num_targets_per_sample, model.target_ratio, hp.target_sample_method, generator
    )
    context_positions = sample_context(num_tokens, target_positions, model.context_ratio, hp.context_sample_method, generator)
    context = model.student(gather_tokens(tokens, context_positions), gather_tokens(pos, context_positions))
    context_centers = gather_tokens(centers, context_positions)
    predictions = [
        model.predictor(context.last_hidden_state, context_centers, gather_tokens(centers, block[None]))
        for block in target_positions  # one predictor call per target block, as the original
    ]
    return torch.cat(predictions, dim=1), gather_tokens(targets, target_positions)


def plain_loss(model: PointJepa, batch_points: Tensor, generator: torch.Generator) -> Tensor:
    """Raw clouds (B, N, 3) -> the training (or, in eval mode, validation) loss of one plain step."""
    predictions, targets = plain_jepa_step(model, plain_transforms(model, batch_points), generator)
    return model.loss_func(predictions.float(), targets.float())


def plain_train_step(
    model: PointJepa, optimizer: torch.optim.Optimizer, batch_points: Tensor, generator: torch.Generator
) -> Tensor:
    """One full plain training step: transforms, forward, backward, optimizer, EMA -> detached loss."""
    loss = plain_loss(model, batch_points, generator)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.teacher.update(model.student)
    return loss.detach()
