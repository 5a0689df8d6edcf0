"""Transforms and FPS starts against the original Point-JEPA (``pointjepa/utils/transforms.py``,
``pointjepa/modules/tokenizer.py``): the expected numbers are worked out from its code.

With ``torch.manual_seed(0)`` the CPU generator's first draws are ``torch.rand(6)`` =
0.49625659, 0.76822180, 0.08847743, 0.13203049, 0.30742282, 0.63407868 (a fact of torch's generator).
The original draws per batch: ``PointcloudScaling`` one ``torch.rand(3)`` -> ``u * (max - min) + min``,
``PointcloudTranslation`` one ``torch.rand(3) * 2t - t``, ``PointcloudRotation`` one angle per axis of
``dims`` (``2 pi rand(1) - pi``, or ``randint`` over ``range(0, 360, deg)`` shifted by -180 degrees) and
``euler_angles_to_matrix(angles, "XYZ")`` = Rx Ry Rz applied as ``p @ R.T``.
"""

from __future__ import annotations

import pytest
import torch

from pointjepa.models.classification import PointJepaClassification
from pointjepa.models.part_segmentation import PointJepaPartSegmentation
from pointjepa.models.point_jepa import PointJepa
from pointjepa.modules.backbone import build_backbone
from pointjepa.modules.tokenizer import PointcloudTokenizer
from pointjepa.modules.transforms import Subsample, build_transforms, transform_kwargs
from tests.conftest import BACKBONE

SCALE_SEED0 = [0.99850267, 1.10728872, 0.83539099]  # 0.8 + 0.4 * rand(3)


def rows(points: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) -> (B * N, 3)."""
    return points.reshape(-1, 3)


def test_scale_draws_one_factor_per_axis_for_the_whole_batch():
    torch.manual_seed(0)
    out = build_transforms(["scale"], scale_min=0.8, scale_max=1.2)(torch.ones(4, 5, 3))
    assert torch.allclose(rows(out), torch.tensor(SCALE_SEED0).expand(20, 3), atol=1e-6)


def test_scale_symmetries_never_flip_without_the_mirror_option():
    scale = build_transforms(["scale"], scale_min=0.8, scale_max=1.2, scale_symmetries=(1, 0, 1))
    torch.manual_seed(0)
    assert torch.allclose(rows(scale(torch.ones(2, 3, 3))), torch.tensor(SCALE_SEED0).expand(6, 3), atol=1e-6)
    factors = torch.cat([rows(scale(torch.ones(1, 1, 3))) for _ in range(200)])
    assert bool((factors >= 0.8).all()) and bool((factors < 1.2).all())


def test_scale_mirror_option_flips_only_axes_with_symmetry_one():
    # the flips are round(rand(3)) * 2 - 1 = round(0.132, 0.307, 0.634) -> (-1, -1, +1); symmetries (1, 0, 1)
    # keep y unflipped, so only x is negated
    scale = build_transforms(["scale"], scale_min=0.8, scale_max=1.2, scale_symmetries=(1, 0, 1), scale_mirror=True)
    torch.manual_seed(0)
    expected = [-SCALE_SEED0[0], SCALE_SEED0[1], SCALE_SEED0[2]]
    assert torch.allclose(rows(scale(torch.ones(2, 3, 3))), torch.tensor(expected).expand(6, 3), atol=1e-6)


def test_translate_draws_one_shift_for_the_whole_batch():
    torch.manual_seed(0)
    out = build_transforms(["translate"], translate=0.2)(torch.zeros(3, 4, 3))
    expected = torch.tensor([-0.00149736, 0.10728873, -0.16460903])  # 0.4 * rand(3) - 0.2
    assert torch.allclose(rows(out), expected.expand(12, 3), atol=1e-6)


def test_rotate_draws_one_continuous_angle_in_minus_pi_pi_for_the_whole_batch():
    # angle = 2 pi * 0.49625659 - pi = -0.02352047 about y: (1, 0, 0) -> (cos a, 0, -sin a)
    torch.manual_seed(0)
    points = torch.tensor([1.0, 0.0, 0.0]).expand(3, 2, 3)
    out = build_transforms(["rotate"], rotate_dims=[1])(points)
    assert torch.allclose(rows(out), torch.tensor([0.99972341, 0.0, 0.02351830]).expand(6, 3), atol=1e-6)


def test_rotate_in_degree_steps_composes_euler_xyz_as_the_original():
    # seed 1: randint(4) per axis in dims order -> 1, 3, 0 over the angles (-180, -90, 0, 90):
    # x = -90, y = 90, z = -180 degrees; R = Rx(-90) Ry(90) Rz(-180) = [[0,0,1],[1,0,0],[0,1,0]]
    torch.manual_seed(1)
    out = build_transforms(["rotate"], rotate_dims=[0, 1, 2], rotate_degs=90)(torch.tensor([[[1.0, 2.0, 3.0]]] * 2))
    assert torch.allclose(rows(out), torch.tensor([3.0, 1.0, 2.0]).expand(2, 3), atol=1e-5)


def test_per_sample_option_draws_each_cloud_separately():
    torch.manual_seed(0)
    args = dict(scale_min=0.8, scale_max=1.2, translate=0.2, per_sample=True)
    out = build_transforms(["scale", "rotate", "translate"], **args)(torch.ones(4, 5, 3))
    assert all(not torch.allclose(out[0], out[i]) for i in range(1, 4))
    assert torch.allclose(out[:, :1].expand_as(out), out)  # still one draw per cloud


def test_transform_kwargs_default_new_keys_for_older_hyperparameters():
    old = dict(
        transformation_scale_min=0.8,
        transformation_scale_max=1.2,
        transformation_scale_symmetries=(1, 0, 1),
        transformation_rotate_dims=[1],
        transformation_rotate_degs=None,
        transformation_translate=0.2,
        transformation_height_normalize_dim=1,
    )
    kwargs = transform_kwargs(old)
    assert (kwargs["scale_mirror"], kwargs["per_sample"], kwargs["random_start_in_eval"]) == (False, False, False)


# ---- FPS start points -----------------------------------------------------------------------------------
def test_subsample_eval_starts_at_first_point_unless_asked_for_a_random_start():
    points = torch.randn(2, 200, 3)
    assert torch.equal(Subsample(16).eval()(points)[:, 0], points[:, 0])
    random = Subsample(16, random_start_in_eval=True).eval()
    assert any(not torch.equal(random(points)[:, 0], points[:, 0]) for _ in range(5))


def test_subsample_rejects_too_few_points_as_the_original():
    with pytest.raises(ValueError, match="transformation_subsample_points=16.*only 10 points"):
        Subsample(16)(torch.randn(1, 10, 3))


def test_tokenizer_random_start_in_eval_is_a_settable_attribute():
    tokenizer = PointcloudTokenizer(8, 4, None, 16).eval()
    points = torch.randn(2, 64, 3)
    assert torch.equal(tokenizer(points)[1][:, 0], points[:, 0])
    tokenizer.random_start_in_eval = True
    assert tokenizer.grouping.random_start_in_eval
    assert any(not torch.equal(tokenizer(points)[1][:, 0], points[:, 0]) for _ in range(5))
    tokenizer.random_start_in_eval = False
    assert torch.equal(tokenizer(points)[1][:, 0], points[:, 0])


def test_build_backbone_passes_random_start_in_eval():
    assert build_backbone(dim=32, depth=1, heads=4, random_start_in_eval=True).tokenizer.random_start_in_eval
    assert not build_backbone(dim=32, depth=1, heads=4).tokenizer.random_start_in_eval


@pytest.mark.parametrize(
    "model_type, extra",
    [
        (PointJepa, dict(predictor_embed_dim=16, predictor_depth=1, predictor_heads=2, target_layers=[1])),
        (PointJepaClassification, dict(num_classes=3, num_points=64)),
        (PointJepaPartSegmentation, dict(seg_head_fetch_layers=[0, 1])),
    ],
)
def test_models_pass_the_new_keys_to_tokenizer_and_transforms(model_type, extra):
    keys = dict(fps_random_start_in_eval=True, transformation_scale_mirror=True, transformation_per_sample=True)
    names = dict(train_transformations=["subsample", "scale", "rotate"], val_transformations=["subsample"])
    model = model_type(**BACKBONE, **extra, **keys, **names)
    assert model.tokenizer.random_start_in_eval
    subsample, scale, rotate = model.train_transformations
    assert model.val_transformations[0].random_start_in_eval and subsample.random_start_in_eval
    assert scale.mirror and scale.per_sample and rotate.per_sample
    default = model_type(**BACKBONE, **extra, **names)
    assert not default.tokenizer.random_start_in_eval and not default.train_transformations[1].mirror
    assert not default.train_transformations[1].per_sample


def test_classification_eval_subsampling_random_with_the_option():
    model = PointJepaClassification(**BACKBONE, num_classes=3, num_points=64, fps_random_start_in_eval=True)
    points = torch.randn(2, 300, 3)
    draws = [model.prepare(points, train=False) for _ in range(5)]
    assert any(not torch.equal(draws[0], draw) for draw in draws[1:])
