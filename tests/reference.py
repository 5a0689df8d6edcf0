"""References the fast paths are tested against: per-sample oracles and the original's pretraining step.

The per-sample functions (`reference_fps`, `reference_knn`, `reference_sequence_order`) are the most
direct greedy definitions, one cloud at a time: the known answers of the equivalence tests.
`standin_fps` and `standin_knn` are the plain batched definitions (one pick per iteration over
(B, N, 3), distances summed over the size-3 axis), the known answers of the batched fast paths.

The reference step (`plain_train_step`, `plain_loss`) has the original's structure, eager fp32.
Same parameters as a `PointJepa` (its modules are called), computed as the original code does: the
batched iterative-nearest sequencer, the mini-PointNet as `Conv1d`s over the concatenated
[global; local] features, and one predictor call per target block in a Python loop;
`original_attention` switches a model's attention to the explicit softmax(QK^T)V with dropout on
the weights. FPS and kNN are pytorch3d's in the original: compiled kernels that process all clouds
(`sample_farthest_points`, `knn_points`). The reference calls `farthest_point_sample` and `knn`
with ``backend="auto"``: pytorch3d's kernels where pytorch3d imports, otherwise the package's
batched paths, which cost what a compiled per-cloud loop costs (calibrated in
`benchmarks/README.md`, "How the reference was calibrated"). The EMA update is the model's own.
`tests/test_fast_paths.py` and `tests/test_perf_paths.py` check that it computes the same loss as the
optimised step; `benchmarks/pretrain_throughput.py --compare` times the two against each other and
`benchmarks/original_step.py` times both against the original code.

Random draws follow the model's order (FPS starts from the global generator of the points' device,
mask positions from the generator passed in), so a seeded run gives the same groups, sequence and
loss as the optimised path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pointjepa.models.point_jepa import PointJepa
from pointjepa.modules.ema import COPY_UPDATES, EMA
from pointjepa.modules.samplers import gather_tokens, sample_context, sample_targets
from pointjepa.modules.sequencer import SequenceMethod
from pointjepa.modules.transforms import Subsample
from pointjepa.ops.fps import _fps_loop_few_kernels, farthest_point_sample
from pointjepa.ops.knn import knn

Mark = Callable[[str], None]


def _no_mark(stage: str) -> None:
    """Default stage mark of the reference step: nothing."""


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
def reference_sequence_order(centers: Tensor, method: SequenceMethod, bits: int = 16) -> Tensor:
    """Token order of each cloud, one cloud at a time: centers (B, T, 3) -> order (B, T) int64.

    ``iterative_nearest[_min_start]``: start at token 0 (or the smallest x+y+z), then repeatedly
    the nearest unvisited center; ``morton``: sort by z-order code (low ``bits`` of each axis). Runs on
    the host (one copy of the centers) and returns the order on the centers' device.
    """
    orders = []
    for c in centers.detach().float().cpu():
        num_tokens = c.shape[0]
        if method == "morton":  # PointGPT's grid: 1/256 steps from |min - 0.5|, reversed as 2**21 - x
            grid = (2**21 - 256 * (c + (c.min() - 0.5).abs())).round().long()
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


def standin_fps(points: Tensor, num_samples: int, start_idx: Tensor | None = None) -> Tensor:
    """Batched greedy FPS, the plain definition: (B, N, 3) -> idx (B, K) int64. Each pick gathers
    the last center, takes ``(points - center).square().sum(-1)`` over all clouds at once and updates
    the running minimum (`_fps_loop_few_kernels`, the torch path off the CPU).
    """
    pts = points.float() if points.dtype != torch.float64 else points
    start = torch.zeros(pts.shape[0], dtype=torch.int64, device=pts.device) if start_idx is None else start_idx
    with torch.no_grad():
        return _fps_loop_few_kernels(pts, num_samples, start)


@torch.no_grad()
def standin_knn(query: Tensor, points: Tensor, k: int) -> Tensor:
    """All (query, point) squared distances, then the k smallest, the plain definition:
    (B, M, 3), (B, N, 3) -> idx (B, M, k), nearest first."""
    dist = (query.float()[:, :, None, :] - points.float()[:, None, :, :]).square().sum(-1)  # (B, M, N)
    return dist.topk(k, dim=-1, largest=False, sorted=True).indices


@torch.no_grad()
def original_sequence_order(centers: Tensor, method: SequenceMethod) -> Tensor:
    """The original's batched iterative-nearest ordering: centers (B, T, 3) -> order (B, T).

    Pairwise `cdist`, the diagonal at infinity, one argmin per step; a visited point's column is set
    to infinity as the original does it, on a transposed contiguous copy that is transposed back
    (two (B, T, T) copies per step). ``morton`` goes per cloud.
    """
    if method not in ("iterative_nearest", "iterative_nearest_min_start"):
        return reference_sequence_order(centers, method)
    c = centers.float()
    batch, num_tokens, _ = c.shape
    dist = torch.cdist(c, c)  # (B, T, T)
    dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    rows = torch.arange(batch, device=c.device)
    current = c.sum(-1).argmin(1) if method == "iterative_nearest_min_start" else rows.new_zeros(batch)
    order = [current]
    for step in range(num_tokens):
        columns_as_rows = dist.transpose(1, 2).contiguous()
        columns_as_rows[rows, current] = float("inf")
        dist = columns_as_rows.transpose(1, 2).contiguous()
        if step == num_tokens - 1:
            break
        current = dist[rows, current].argmin(-1)
        order.append(current)
    return torch.stack(order, 1)


def original_pointnet(model: PointJepa, groups: Tensor) -> Tensor:
    """The mini-PointNet as the original runs it: ``Conv1d`` layers over (G, C, K) and the
    concatenated [global; local] features. groups (G, K, 3) -> (G, C)."""
    encoder = model.tokenizer.embedding.encoder
    feature = encoder.first_conv(groups.transpose(2, 1))  # (G, C1, K)
    feature_global = feature.max(dim=2, keepdim=True).values
    feature = torch.cat([feature_global.expand(-1, -1, feature.shape[2]), feature], dim=1)
    return encoder.second_conv(feature).max(dim=2).values


def original_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Switch every timm attention of ``model`` to the explicit softmax(QK^T)V path (the original's
    `Attention`: dropout on the attention weights) instead of fused SDPA; returns ``model``."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    return model


def _fps_start(module: torch.nn.Module, points: Tensor) -> Tensor | None:
    """The start draw `farthest_point_sample` makes for ``module`` (random in training), in the same order."""
    if not (module.training or getattr(module, "random_start_in_eval", False)):
        return None
    return torch.randint(points.shape[1], (points.shape[0],), device=points.device)


def plain_transforms(model: PointJepa, points: Tensor) -> Tensor:
    """The model's train or val transforms (by its mode), FPS subsampling as pytorch3d's kernel costs."""
    transforms = model.train_transformations if model.training else model.val_transformations
    for transform in transforms:
        if isinstance(transform, Subsample):
            if points.shape[1] > transform.num_points:
                idx = farthest_point_sample(points, transform.num_points, start_idx=_fps_start(transform, points))[1]
                points = points[torch.arange(points.shape[0], device=points.device)[:, None], idx]
        else:
            points = transform(points)
    return points


def plain_tokenize(model: PointJepa, points: Tensor) -> tuple[Tensor, Tensor]:
    """points (B, N, 3) -> tokens (B, T, C), centers (B, T, 3): FPS centers, kNN groups, `original_pointnet`."""
    grouping = model.tokenizer.grouping
    if grouping.group_radius is not None or model.tokenizer.projection is not None:
        raise ValueError("plain step: only kNN groups and no token projection (tokenizer_group_radius, "
                         "tokenizer_embedding_dim must be null)")  # fmt: skip
    rows = torch.arange(points.shape[0], device=points.device)[:, None]
    centers = farthest_point_sample(points, grouping.num_groups, start_idx=_fps_start(grouping, points))[0]
    neighbours = knn(centers, points, grouping.group_size)[1]  # (B, T, K)
    groups = points[rows[:, :, None], neighbours] - centers.unsqueeze(2)  # (B, T, K, 3)
    B, T, K, _ = groups.shape
    return original_pointnet(model, groups.reshape(B * T, K, 3)).reshape(B, T, -1), centers


def plain_jepa_step(
    model: PointJepa, points: Tensor, generator: torch.Generator, mark: Mark = _no_mark
) -> tuple[Tensor, Tensor]:
    """Transformed points (B, N, 3) -> predictions and targets (B, M, k, C), block by block.

    ``mark(stage)`` is called as each stage ends (the stage names of `benchmarks/pretrain_throughput.py`).
    """
    hp = model.hparams
    tokens, centers = plain_tokenize(model, points)
    mark("tokenizer")
    order = original_sequence_order(centers, model.sequencer.method)
    rows = torch.arange(points.shape[0], device=points.device)[:, None]
    tokens, centers = tokens[rows, order], centers[rows, order]
    mark("sequencer")
    pos = model.positional_encoding(centers)
    targets = model.targets(tokens, pos)
    mark("teacher/targets")

    num_tokens = tokens.shape[1]
    target_positions = sample_targets(
        num_tokens, hp.num_targets_per_sample, model.target_ratio, hp.target_sample_method, generator
    )
    context_positions = sample_context(
        num_tokens, target_positions, model.context_ratio, hp.context_sample_method, generator
    )
    context_tokens, context_pos = gather_tokens(tokens, context_positions), gather_tokens(pos, context_positions)
    mark("sampling")
    context = model.student(context_tokens, context_pos)
    mark("student")
    context_centers = gather_tokens(centers, context_positions)
    predictions = [
        model.predictor(context.last_hidden_state, context_centers, gather_tokens(centers, block[None]))
        for block in target_positions  # one predictor call per target block, as the original
    ]
    predictions = torch.cat(predictions, dim=1)
    mark("predictor")
    return predictions, gather_tokens(targets, target_positions)


def plain_loss(model: PointJepa, batch_points: Tensor, generator: torch.Generator, mark: Mark = _no_mark) -> Tensor:
    """Raw clouds (B, N, 3) -> the training (or, in eval mode, validation) loss of one plain step."""
    points = plain_transforms(model, batch_points)
    mark("transforms")
    predictions, targets = plain_jepa_step(model, points, generator, mark)
    return model.loss_func(predictions.float(), targets.float())


@torch.no_grad()
def plain_ema_update(teacher: EMA, online: torch.nn.Module) -> None:
    """The original's EMA update: per tensor, ``difference = ema - online``, scaled by ``1 - tau`` and
    subtracted (the same blend as `EMA.update`'s fused lerp, to float rounding, one tensor at a time)."""
    step = int(teacher.step)
    if step < COPY_UPDATES:  # the copies, as `EMA.update` (and the original) make them
        teacher.update(online)
        return
    keep = 1.0 - teacher.current_decay()
    pairs = zip(
        [*teacher.ema_model.parameters(), *teacher.ema_model.buffers()], [*online.parameters(), *online.buffers()]
    )
    for ema, current in pairs:
        if ema.is_floating_point():
            difference = ema - current
            difference.mul_(keep)
            ema.sub_(difference)
    teacher.step += 1
    teacher._step_host = step + 1  # the host mirror `EMA.update` keeps


def plain_train_step(
    model: PointJepa,
    optimizer: torch.optim.Optimizer,
    batch_points: Tensor,
    generator: torch.Generator,
    mark: Mark = _no_mark,
) -> Tensor:
    """One full plain training step: transforms, forward, backward, optimizer, EMA -> detached loss.

    ``mark(stage)`` is called as each stage ends. AdamW is whatever ``optimizer`` is (the original's
    is the non-fused one); the EMA update is the original's per-tensor loop (`plain_ema_update`).
    """
    loss = plain_loss(model, batch_points, generator, mark)
    loss.backward()
    mark("loss+backward")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    plain_ema_update(model.teacher, model.student)
    mark("optimizer+EMA")
    return loss.detach()
