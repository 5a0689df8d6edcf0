"""Shapes, dtypes and invariants of the pretraining building blocks."""

import math

import pytest
import torch

from pointjepa.modules.backbone import build_backbone, pooled_features
from pointjepa.modules.ema import EMA, ema_decay
from pointjepa.modules.normalize import normalize
from pointjepa.modules.pointnet import PointNetEncoder
from pointjepa.modules.predictor import TransformerPredictor
from pointjepa.modules.samplers import gather_tokens, sample_context, sample_targets
from pointjepa.modules.sequencer import PointSequencer, morton_codes, sequence_order
from pointjepa.modules.tokenizer import PointcloudTokenizer
from pointjepa.modules.transformer import TransformerEncoder
from pointjepa.modules.transforms import build_transforms
from pointjepa.utils.optim import warmup_cosine_schedule


@pytest.mark.parametrize("radius", [None, 0.3])
def test_tokenizer_shapes(radius):
    tokenizer = PointcloudTokenizer(num_groups=8, group_size=4, group_radius=radius, token_dim=16)
    tokens, centers = tokenizer(torch.randn(2, 64, 3))
    assert tokens.shape == (2, 8, 16) and centers.shape == (2, 8, 3)
    assert tokens.dtype == torch.float32


def test_tokenizer_eval_mode_is_deterministic():
    tokenizer = PointcloudTokenizer(8, 4, None, 16).eval()
    points = torch.randn(2, 64, 3)
    assert torch.equal(tokenizer(points)[1], tokenizer(points)[1])
    assert torch.equal(tokenizer(points)[1][:, 0], points[:, 0])  # FPS starts at the first point


def test_tokenizer_rejects_too_few_points():
    with pytest.raises(ValueError, match="fewer than tokenizer_num_groups=8"):
        PointcloudTokenizer(8, 4, None, 16)(torch.randn(1, 6, 3))


def test_pointnet_large_shape():
    assert PointNetEncoder(3, 32, "large")(torch.randn(5, 4, 3)).shape == (5, 32)
    with pytest.raises(ValueError, match="small"):
        PointNetEncoder(3, 32, "huge")  # type: ignore[arg-type]


def test_encoder_returns_hidden_states_and_ffns():
    encoder = TransformerEncoder(embed_dim=32, depth=3, num_heads=4).eval()
    x, pos = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    out = encoder(x, pos, return_hidden_states=True, return_ffns=True)
    assert out.last_hidden_state.shape == (2, 5, 32)
    assert len(out.hidden_states) == 3 and len(out.ffns) == 3
    assert torch.allclose(encoder.norm(out.hidden_states[-1]), out.last_hidden_state)
    plain = encoder(x, pos).last_hidden_state
    assert torch.allclose(plain, out.last_hidden_state, atol=1e-6)


def test_encoder_drop_path_rises_linearly():
    backbone = build_backbone(dim=32, depth=5, heads=4, drop_path_rate=0.2)
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in backbone.encoder.blocks]
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])


def test_encoder_state_dict_names():
    keys = set(TransformerEncoder(embed_dim=32, depth=1, num_heads=4).state_dict())
    for name in ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]:
        assert f"blocks.0.{name}.weight" in keys
    assert "blocks.0.attn.qkv.bias" in keys and "norm.weight" in keys


def test_predictor_predicts_every_block_in_one_call():
    predictor = TransformerPredictor(embed_dim=32, predictor_embed_dim=16, depth=2, num_heads=4).eval()
    context, ctx_centers = torch.randn(2, 6, 32), torch.randn(2, 6, 3)
    target_centers = torch.randn(2, 3, 4, 3)
    out = predictor(context, ctx_centers, target_centers)
    assert out.shape == (2, 3, 4, 32)
    single = predictor(context, ctx_centers, target_centers[:, 1:2])
    assert torch.allclose(out[:, 1:2], single, atol=1e-5)


def test_sequencer_output_is_a_permutation():
    centers = torch.randn(3, 20, 3)
    for method in ["iterative_nearest", "iterative_nearest_min_start", "morton"]:
        order = sequence_order(centers, method)
        assert torch.equal(order.sort(dim=1).values, torch.arange(20).expand(3, 20))


def test_iterative_nearest_is_a_greedy_chain():
    centers = torch.randn(2, 16, 3)
    for min_start in [False, True]:
        order = sequence_order(centers, "iterative_nearest_min_start" if min_start else "iterative_nearest")
        for b in range(2):
            start = int(centers[b].sum(-1).argmin()) if min_start else 0
            assert int(order[b, 0]) == start
            for i in range(15):
                rest = order[b, i + 1 :]
                dist = (centers[b, rest] - centers[b, order[b, i]]).norm(dim=-1)
                assert int(rest[dist.argmin()]) == int(order[b, i + 1])


def test_morton_orders_a_grid_in_reversed_z_order():
    grid = torch.tensor([[x, y, 0.0] for y in range(2) for x in range(2)])[None]  # (1, 4, 3)
    codes = morton_codes(grid)
    assert codes[0].tolist() == sorted(codes[0].tolist(), reverse=True)  # coordinates reversed: 2**21 - x


def test_sequencer_reorders_tokens_with_centers():
    tokens = torch.arange(10.0).view(1, 10, 1).expand(1, 10, 4)
    centers = torch.randn(1, 10, 3)
    new_tokens, new_centers = PointSequencer("iterative_nearest")(tokens, centers)
    assert torch.equal(centers[0, new_tokens[0, :, 0].long()], new_centers[0])


def test_target_blocks_are_contiguous_with_ratio():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        targets = sample_targets(64, 4, (0.15, 0.2), "contiguous", g)
        assert targets.shape[0] == 4 and 9 <= targets.shape[1] <= 12  # int(0.15*64) .. int(0.2*64)
        assert (targets.diff(dim=1) == 1).all() and targets.min() >= 0 and targets.max() < 64


def test_random_targets_are_distinct_positions():
    targets = sample_targets(64, 4, (0.15, 0.2), "random", torch.Generator().manual_seed(1))
    assert all(len(set(row.tolist())) == targets.shape[1] for row in targets)


@pytest.mark.parametrize("method", ["contiguous", "random", "rest"])
def test_context_never_overlaps_targets(method):
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        targets = sample_targets(64, 4, (0.15, 0.2), "random", g)
        context = sample_context(64, targets, (0.4, 0.75), method, g)
        free = sorted(set(range(64)) - set(targets.reshape(-1).tolist()))
        assert not set(context.tolist()) & set(targets.reshape(-1).tolist())
        if method == "rest":
            assert context.tolist() == free
        else:
            assert math.floor(0.4 * len(free)) <= len(context) <= max(1, int(0.75 * len(free)))
        if method == "contiguous":
            start = free.index(int(context[0]))
            assert context.tolist() == free[start : start + len(context)]


def test_context_error_when_targets_cover_everything():
    with pytest.raises(ValueError, match="no context"):
        sample_context(4, torch.arange(4).view(2, 2), (0.4, 0.75), "contiguous")


def test_gather_tokens_shapes():
    x = torch.randn(2, 10, 5)
    assert gather_tokens(x, torch.tensor([[1, 2], [3, 4], [5, 6]])).shape == (2, 3, 2, 5)


def test_ema_decay_schedule_values():
    assert ema_decay(0, 0.9, 0.99, 100) == 0.0  # the first update copies the student
    assert ema_decay(1, 0.9, 0.99, 100) == pytest.approx(0.9009)
    assert ema_decay(50, 0.9, 0.99, 100) == pytest.approx(0.945)
    assert ema_decay(100, 0.9, 0.99, 100) == pytest.approx(0.99)
    assert ema_decay(500, 0.9, 0.99, 100) == pytest.approx(0.99)


def test_ema_update_blends_parameters_and_float_buffers():
    online = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(online, tau_min=0.5, tau_max=0.5, tau_steps=10)
    ema.update(online)
    ema.update(online)  # updates 0 and 1 copy the student
    before = ema.ema_model[0].weight.clone()
    with torch.no_grad():
        online[0].weight.add_(1.0)
        online[1].running_mean.fill_(3.0)
        online[1].num_batches_tracked.fill_(5)
    assert ema.update(online) == pytest.approx(0.5)
    assert torch.allclose(ema.ema_model[0].weight, 0.5 * before + 0.5 * online[0].weight)
    assert torch.allclose(ema.ema_model[1].running_mean, torch.full((2,), 1.5))
    assert int(ema.ema_model[1].num_batches_tracked) == 0  # integer buffers are left alone
    assert int(ema.step) == 3 and not ema.ema_model.training
    ema.train()
    assert not ema.ema_model.training


def test_ema_step_survives_state_dict_round_trip():
    online = torch.nn.Linear(2, 2)
    ema = EMA(online, 0.0, 1.0, tau_steps=10)
    for _ in range(4):
        ema.update(online)
    clone = EMA(online, 0.0, 1.0, tau_steps=10)
    clone.load_state_dict(ema.state_dict())
    assert int(clone.step) == 4 and clone.current_decay() == pytest.approx(0.4)


@pytest.mark.parametrize("kind", ["layer", "instance", "group", "batch"])
def test_normalize_kinds_give_zero_mean(kind):
    x = torch.randn(4, 6, 8) * 3 + 2
    y = normalize(x, kind)
    dims = {"layer": -1, "instance": 1, "group": (1, 2), "batch": (0, 1)}[kind]
    assert torch.allclose(y.mean(dim=dims), torch.zeros(1), atol=1e-5)
    assert normalize(x, None) is x
    with pytest.raises(ValueError, match="layer"):
        normalize(x, "weird")  # type: ignore[arg-type]


def test_lr_schedule_values_at_warmup_end_and_final_epoch():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    scheduler = warmup_cosine_schedule(optimizer, warmup_epochs=10, max_epochs=100, warmup_start_lr=1e-5, eta_min=1e-6)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[9] == pytest.approx(1e-3)  # end of warm-up
    assert lrs[10] == pytest.approx(1e-3)  # cosine starts at the base lr
    expected_last = 1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi * 89 / 90))
    assert lrs[99] == pytest.approx(expected_last, rel=1e-4)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))


def test_transforms_keep_shape_and_subsample():
    names = ["subsample", "scale", "center", "unit_sphere", "rotate", "translate", "height_norm"]
    transforms = build_transforms(names, subsample_points=32)
    out = transforms(torch.randn(3, 100, 3))
    assert out.shape == (3, 32, 3)
    centered = build_transforms(["center", "unit_sphere"])(torch.randn(2, 50, 3) + 5)
    assert torch.allclose(centered.mean(1), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(centered.norm(dim=-1).amax(1), torch.ones(2))


def test_rotation_preserves_norms_and_height_norm_zeroes_minimum():
    points = torch.randn(2, 40, 3)
    rotated = build_transforms(["rotate"], rotate_dims=[0, 1, 2])(points)
    assert torch.allclose(rotated.norm(dim=-1), points.norm(dim=-1), atol=1e-5)
    assert torch.allclose(rotated[..., 1], points[..., 1]) is False
    lifted = build_transforms(["height_norm"], height_normalize_dim=2)(points)
    assert torch.allclose(lifted[..., 2].amin(1), torch.zeros(2))


def test_unknown_transform_name_lists_allowed_ones():
    with pytest.raises(ValueError, match="unit_sphere"):
        build_transforms(["flip"])


def test_pooled_features_concatenates_max_and_mean():
    tokens = torch.randn(2, 5, 4)
    features = pooled_features(tokens)
    assert features.shape == (2, 8) and torch.equal(features[:, :4], tokens.max(1).values)
