"""pointjepa.ops against brute-force references written here, plus known answers."""

from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

from pointjepa.ops import (
    HAS_PYTORCH3D,
    _backend,
    ball_query,
    farthest_point_sample,
    gather_points,
    knn,
)

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]


def cloud(batch: int, num_points: int, device: str = "cpu", seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, num_points, 3, generator=gen).to(device)


def line(num_points: int) -> Tensor:
    """(1, N, 3) points at x = 0, 1, ..., N - 1."""
    points = torch.zeros(1, num_points, 3)
    points[0, :, 0] = torch.arange(num_points, dtype=torch.float32)
    return points


# --- brute-force references: one cloud at a time, plain Python ---


def sq_dist(a: list[float], b: list[float]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b))


def naive_fps(points: Tensor, num_samples: int, start: int) -> list[int]:
    """Greedy FPS on one (N, 3) cloud; ties go to the lowest index."""
    pts = points.double().tolist()
    chosen = [start]
    min_dist = [sq_dist(p, pts[start]) for p in pts]
    while len(chosen) < num_samples:
        best = max(range(len(pts)), key=lambda j: (min_dist[j], -j))
        chosen.append(best)
        min_dist = [min(d, sq_dist(p, pts[best])) for d, p in zip(min_dist, pts)]
    return chosen


def naive_knn(query: Tensor, points: Tensor, k: int) -> tuple[list, list]:
    """Sorted (distance, index) of the k nearest points of each query, for one cloud."""
    pts = points.double().tolist()
    dists, idx = [], []
    for q in query.double().tolist():
        ranked = sorted((sq_dist(q, p), j) for j, p in enumerate(pts))[:k]
        dists.append([d for d, _ in ranked])
        idx.append([j for _, j in ranked])
    return dists, idx


def naive_ball_query(query: Tensor, points: Tensor, k: int, radius: float, pad: int | None = None) -> list[list[int]]:
    """First k in-radius points per query; padded with `pad`, else by the fill rule."""
    pts = points.double().tolist()
    out = []
    for q in query.double().tolist():
        dists = [sq_dist(q, p) for p in pts]
        found = [j for j, d in enumerate(dists) if d < radius * radius][:k]
        if pad is not None:
            fill = pad
        else:
            fill = found[0] if found else min(range(len(pts)), key=lambda j: (dists[j], j))
        out.append(found + [fill] * (k - len(found)))
    return out


def naive_ball_tensor(query: Tensor, points: Tensor, k: int, radius: float) -> Tensor:
    found = [naive_ball_query(q, p, k, radius) for q, p in zip(query.cpu(), points.cpu())]
    return torch.tensor(found, device=query.device)


def fake_pytorch3d() -> SimpleNamespace:
    """The pytorch3d.ops calls the ops make, mimicked with the references (FPS from point 0,
    float32 results, ball query padded with -1)."""

    def sample_farthest_points(points: Tensor, K: int) -> tuple[Tensor, Tensor]:
        idx = torch.tensor([naive_fps(p, K, 0) for p in points], device=points.device)
        return points[torch.arange(len(points))[:, None], idx], idx

    def knn_points(p1: Tensor, p2: Tensor, K: int, return_sorted: bool) -> tuple:
        found = [naive_knn(q, p, K) for q, p in zip(p1, p2)]
        dists = torch.tensor([d for d, _ in found], dtype=torch.float32, device=p1.device)
        idx = torch.tensor([i for _, i in found], device=p1.device)
        return dists, idx, None

    def ball_query(p1: Tensor, p2: Tensor, K: int, radius: float, return_nn: bool) -> tuple:
        idx = [naive_ball_query(q, p, K, radius, pad=-1) for q, p in zip(p1, p2)]
        return None, torch.tensor(idx, device=p1.device), None

    return SimpleNamespace(sample_farthest_points=sample_farthest_points, knn_points=knn_points, ball_query=ball_query)


# --- farthest point sampling ---


@pytest.mark.parametrize("device", DEVICES)
def test_fps_matches_naive_greedy_from_point_zero(device: str) -> None:
    points = cloud(3, 80, device)
    centers, idx = farthest_point_sample(points, 16, backend="torch")
    assert idx.dtype == torch.int64 and idx.shape == (3, 16)
    assert idx.tolist() == [naive_fps(p, 16, 0) for p in points.cpu()]
    assert torch.equal(centers, points[torch.arange(3)[:, None], idx])


@pytest.mark.parametrize("device", DEVICES)
def test_fps_matches_naive_greedy_from_start_idx(device: str) -> None:
    points = cloud(3, 80, device)
    start = torch.tensor([5, 0, 79], device=device)
    _, idx = farthest_point_sample(points, 16, start_idx=start, backend="torch")
    assert idx.tolist() == [naive_fps(p, 16, s) for p, s in zip(points.cpu(), [5, 0, 79])]


def test_fps_known_answer_on_a_line() -> None:
    centers, idx = farthest_point_sample(line(10), 6, backend="torch")
    # 0, then the far end, then midpoints; equal distances go to the lowest index.
    assert idx.tolist() == [[0, 9, 4, 2, 6, 1]]
    assert centers[0, :, 0].tolist() == [0.0, 9.0, 4.0, 2.0, 6.0, 1.0]
    uneven = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [10, 0, 0], [4, 0, 0]]])  # x = 0, 1, 10, 4: no ties
    assert farthest_point_sample(uneven, 4, backend="torch")[1].tolist() == [[0, 2, 3, 1]]


@pytest.mark.parametrize("device", DEVICES)
def test_fps_random_start_reproducible_with_seeded_generator(device: str) -> None:
    points = cloud(16, 50, device)
    runs = [
        farthest_point_sample(points, 8, random_start=True, generator=torch.Generator(device).manual_seed(3))[1]
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    assert runs[0][:, 0].unique().numel() > 1  # each sample draws its own start
    starts = runs[0][:, 0].tolist()
    assert runs[0].tolist() == [naive_fps(p, 8, s) for p, s in zip(points.cpu(), starts)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_fps_accepts_any_float_dtype(dtype: torch.dtype) -> None:
    points = cloud(2, 60).to(dtype)
    centers, idx = farthest_point_sample(points, 10, backend="torch")
    assert centers.dtype == dtype
    assert idx.tolist() == [naive_fps(p, 10, 0) for p in points]


# --- kNN ---


@pytest.mark.parametrize("device", DEVICES)
def test_knn_matches_brute_force(device: str) -> None:
    query, points = cloud(2, 12, device, seed=1), cloud(2, 70, device)
    dists, idx = knn(query, points, 5, backend="torch")
    assert dists.shape == idx.shape == (2, 12, 5) and idx.dtype == torch.int64
    for b in range(2):
        ref_dists, ref_idx = naive_knn(query[b].cpu(), points[b].cpu(), 5)
        assert idx[b].tolist() == ref_idx
        ref = torch.tensor(ref_dists, dtype=torch.float64)
        torch.testing.assert_close(dists[b].cpu().double(), ref)


def test_knn_known_answer_on_a_line() -> None:
    query = torch.tensor([[[2.2, 0.0, 0.0], [9.0, 0.0, 0.0]]])
    dists, idx = knn(query, line(10), 3, backend="torch")
    assert idx.tolist() == [[[2, 3, 1], [9, 8, 7]]]
    torch.testing.assert_close(dists, torch.tensor([[[0.04, 0.64, 1.44], [0.0, 1.0, 4.0]]]))


def test_knn_chunked_over_queries_matches_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    query, points = cloud(2, 25, seed=1), cloud(2, 40)
    whole = knn(query, points, 4, backend="torch")
    whole_ball = ball_query(query, points, 4, 0.3, backend="torch")
    monkeypatch.setattr(_backend, "MAX_PAIRS_PER_CHUNK", 2 * 40 * 3)  # chunks of 3 queries
    chunked = knn(query, points, 4, backend="torch")
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])
    assert torch.equal(whole_ball, ball_query(query, points, 4, 0.3, backend="torch"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_knn_and_ball_query_accept_half_precision(dtype: torch.dtype) -> None:
    query, points = cloud(2, 8, seed=1).to(dtype), cloud(2, 50).to(dtype)
    dists, idx = knn(query, points, 4, backend="torch")
    assert dists.dtype == dtype
    assert idx.tolist() == [naive_knn(q, p, 4)[1] for q, p in zip(query, points)]
    idx = ball_query(query, points, 4, 0.3, backend="torch")
    assert torch.equal(idx, naive_ball_tensor(query, points, 4, 0.3))


# --- ball query ---


@pytest.mark.parametrize("device", DEVICES)
def test_ball_query_matches_brute_force(device: str) -> None:
    query, points = cloud(2, 16, device, seed=1), cloud(2, 90, device)
    idx = ball_query(query, points, 6, 0.25, backend="torch")
    assert idx.shape == (2, 16, 6) and idx.dtype == torch.int64
    assert torch.equal(idx, naive_ball_tensor(query, points, 6, 0.25))
    within = (gather_points(points, idx) - query[:, :, None]).norm(dim=-1) < 0.25
    has_neighbour = (torch.cdist(query, points) < 0.25).any(-1)
    assert torch.equal(within.all(-1), has_neighbour)


def test_ball_query_takes_first_points_in_order_and_fills_with_first() -> None:
    query = torch.tensor([[[4.0, 0.0, 0.0]]])
    idx = ball_query(query, line(10), 4, 1.5, backend="torch")
    assert idx.tolist() == [[[3, 4, 5, 3]]]  # 3, 4, 5 in radius; the empty slot repeats 3
    idx = ball_query(query, line(10), 2, 1.5, backend="torch")
    assert idx.tolist() == [[[3, 4]]]  # first found, not nearest


def test_ball_query_without_neighbours_returns_nearest_point() -> None:
    query = torch.tensor([[[6.7, 5.0, 0.0]]])
    idx = ball_query(query, line(10), 3, 1.0, backend="torch")
    assert idx.tolist() == [[[7, 7, 7]]]


# --- gather ---


def test_gather_points_shapes_and_values() -> None:
    points = torch.arange(2 * 5 * 4, dtype=torch.float32).view(2, 5, 4)
    idx = torch.tensor([[[0, 4, 4], [1, 1, 2]], [[3, 0, 2], [4, 4, 4]]])
    out = gather_points(points, idx)
    assert out.shape == (2, 2, 3, 4)
    assert torch.equal(out[1, 0, 0], points[1, 3])
    assert gather_points(points, idx[:, 0]).shape == (2, 3, 4)


# --- errors and backends ---


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: farthest_point_sample(torch.rand(2, 40), 4), r"points: expected \(B, N, 3\), got \(2, 40\)"),
        (lambda: farthest_point_sample(torch.rand(2, 40, 3), 64), "num_samples=64 exceeds the 40 points per cloud"),
        (lambda: farthest_point_sample(torch.ones(2, 40, 3).long(), 4), "points: expected a floating dtype"),
        (lambda: farthest_point_sample(torch.rand(2, 40, 3), 4, start_idx=torch.zeros(3).long()),
         r"start_idx: expected \(B,\) int64"),
        (lambda: farthest_point_sample(torch.rand(2, 40, 3), 4, True, torch.zeros(2, dtype=torch.int64)), "not both"),
        (lambda: knn(torch.rand(2, 5, 2), torch.rand(2, 40, 3), 4), r"query: expected \(B, M, 3\), got \(2, 5, 2\)"),
        (lambda: knn(torch.rand(3, 5, 3), torch.rand(2, 40, 3), 4), r"batch sizes differ \(3 vs 2\)"),
        (lambda: knn(torch.rand(2, 5, 3), torch.rand(2, 40, 3), 41), "knn: k=41 exceeds the 40 points"),
        (lambda: ball_query(torch.rand(2, 5, 3), torch.rand(2, 40, 3), 50, 0.1), "ball_query: k=50 exceeds"),
        (lambda: ball_query(torch.rand(2, 5, 3), torch.rand(2, 40, 3), 4, 0.0), "radius must be > 0"),
        (lambda: gather_points(torch.rand(2, 40, 3), torch.zeros(3, 4).long()), r"idx: expected \(B, ...\) with B=2"),
        (lambda: knn(torch.rand(2, 5, 3), torch.rand(2, 40, 3), 4, backend="cuda"), "backend: expected one of"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_value_error_naming_them(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.skipif(HAS_PYTORCH3D, reason="pytorch3d is installed")
def test_pytorch3d_backend_without_pytorch3d_raises_install_hint() -> None:
    with pytest.raises(RuntimeError, match="needs pytorch3d.*Install it"):
        farthest_point_sample(cloud(1, 10), 2, backend="pytorch3d")


# Each op as `call(backend, device)`, on clouds that exercise the fast path's own logic:
# FPS from point 0 and from other starts (rolled clouds), a ball query with no neighbour.
def clouds_with_lonely_query(device: str) -> tuple[Tensor, Tensor]:
    query, points = cloud(2, 6, device, seed=1), cloud(2, 40, device)
    query[0, 0] = 5.0
    return query, points


BACKEND_CALLS = {
    "fps_from_zero": lambda backend, device: farthest_point_sample(cloud(2, 40, device), 8, backend=backend),
    "fps_from_start_idx": lambda backend, device: farthest_point_sample(
        cloud(2, 40, device), 8, start_idx=torch.tensor([0, 17], device=device), backend=backend
    ),
    "knn": lambda backend, device: knn(*clouds_with_lonely_query(device), 5, backend=backend),
    "ball_query_small_radius": lambda backend, device: ball_query(
        *clouds_with_lonely_query(device), 5, 0.05, backend=backend
    ),
    "ball_query": lambda backend, device: ball_query(*clouds_with_lonely_query(device), 5, 0.3, backend=backend),
}


def assert_same_results(fast: Tensor | tuple, plain: Tensor | tuple) -> None:
    for a, b in zip(*(x if isinstance(x, tuple) else (x,) for x in (fast, plain))):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", BACKEND_CALLS)
def test_pytorch3d_wrappers_give_the_torch_results(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Fast-path wrappers (rolled start, -1 fill) on a stand-in for pytorch3d.ops."""
    monkeypatch.setattr(_backend, "_pytorch3d_ops", fake_pytorch3d())
    call = BACKEND_CALLS[name]
    assert_same_results(call("pytorch3d", "cpu"), call("torch", "cpu"))


@pytest.mark.skipif(not HAS_PYTORCH3D, reason="pytorch3d is not installed")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", BACKEND_CALLS)
def test_real_pytorch3d_gives_the_torch_results(name: str, device: str) -> None:
    call = BACKEND_CALLS[name]
    assert_same_results(call("pytorch3d", device), call("torch", device))
