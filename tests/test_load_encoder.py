"""pointjepa.load_encoder: any checkpoint layout -> eval-mode (B, N, 3) -> (B, 2C) feature extractor."""

import subprocess
import sys

import pytest
import torch

import pointjepa
from pointjepa.api import PointEncoder, load_encoder
from pointjepa.modules.backbone import pooled_features
from pointjepa.ops import farthest_point_sample
from pointjepa.utils.checkpoint import CheckpointError
from tests.conftest import save_checkpoint, tiny_classifier, tiny_pretraining
from tests.fakeckpt import BASE_MODEL_LAYOUTS, LAYOUTS, tiny_backbone_state, write_checkpoint


def reference_features(backbone: dict[str, torch.Tensor], points: torch.Tensor, qkv_bias: bool) -> torch.Tensor:
    """The SVM-probe features computed by hand from the backbone tensors."""
    model = PointEncoder(num_groups=8, group_size=4, group_radius=None, dim=32, depth=2, heads=4, qkv_bias=qkv_bias)
    model.load_state_dict(backbone)
    model.eval()
    points = farthest_point_sample(points, 1024)[0]  # no hyper-parameters for it: FPS to 1024 from point 0
    centered = points - points.mean(1, keepdim=True)
    unit = centered / centered.norm(dim=-1).amax(1)[:, None, None]
    tokens, centers = model.tokenizer(unit)
    return pooled_features(model.encoder(tokens, model.positional_encoding(centers)).last_hidden_state)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_the_probe_features(tmp_path, layout):
    qkv_bias = layout not in BASE_MODEL_LAYOUTS
    backbone = tiny_backbone_state(qkv_bias=qkv_bias)
    path = write_checkpoint(tmp_path / f"{layout}.ckpt", layout, backbone)
    # Point-MAE / Point-BERT checkpoints have no hyper-parameters: tell the tokenizer and head counts.
    extra = {} if layout in ("ours", "original", "point2vec") else dict(num_groups=8, group_size=4, heads=4)
    encoder = load_encoder(path, **extra)
    points = torch.randn(3, 1100, 3) * 2 + 1
    with torch.no_grad():
        features = encoder(points)
        expected = reference_features(backbone, points, qkv_bias)
    assert not encoder.training
    assert features.shape == (3, 64)
    torch.testing.assert_close(features, expected)


@pytest.mark.parametrize("layout", ["point_bert", "point_bert_finetuned"])
def test_point_bert_256_dim_tokens_are_projected(tmp_path, layout):
    backbone = tiny_backbone_state(qkv_bias=False, tokenizer_embedding_dim=48)
    path = write_checkpoint(tmp_path / "bert.ckpt", layout, backbone)
    encoder = load_encoder(path, num_groups=8, group_size=4, heads=4)
    assert encoder.tokenizer.projection.weight.shape == (32, 48)
    reference = PointEncoder(8, 4, None, 32, 2, 4, qkv_bias=False, tokenizer_embedding_dim=48)
    reference.load_state_dict(backbone)
    points = torch.randn(2, 1024, 3)
    with torch.no_grad():
        torch.testing.assert_close(encoder(points), reference.eval()(points))


def test_shapes_are_inferred_without_hyper_parameters(tmp_path):
    path = write_checkpoint(tmp_path / "mae.ckpt", "point_mae", tiny_backbone_state(qkv_bias=False))
    encoder = load_encoder(path, heads=4)
    assert encoder.encoder.norm.weight.shape == (32,)
    assert len(encoder.encoder.blocks) == 2
    assert encoder.encoder.blocks[0].attn.qkv.bias is None
    assert encoder.tokenizer.grouping.num_groups == 64 and encoder.tokenizer.grouping.group_size == 32  # Point-MAE's


def test_matches_the_pretraining_model_embedding(tmp_path):
    model = tiny_pretraining().eval()
    path = save_checkpoint(model, tmp_path / "pretraining.ckpt")
    points = torch.randn(2, 64, 3)
    torch.testing.assert_close(load_encoder(path)(points), model.embed(points))


def test_fine_tuned_classification_checkpoint_gives_its_encoder(tmp_path):
    model = tiny_classifier(num_classes=3, cls_head_pooling="cls_token")
    encoder = load_encoder(save_checkpoint(model, tmp_path / "cls.ckpt"))
    assert torch.equal(encoder.encoder.blocks[1].mlp.fc2.weight, model.encoder.blocks[1].mlp.fc2.weight)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    path = write_checkpoint(tmp_path / "ours.ckpt", "ours", tiny_backbone_state())
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["hyper_parameters"]["encoder_depth"] = 3
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"encoder\.blocks\.2\."):
        load_encoder(path)


def test_unreadable_file_is_refused(tmp_path):
    (tmp_path / "x.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="x.ckpt"):
        load_encoder(tmp_path / "x.ckpt")


def test_package_exports_load_encoder_lazily():
    assert pointjepa.load_encoder is load_encoder
    code = "import sys, pointjepa; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
