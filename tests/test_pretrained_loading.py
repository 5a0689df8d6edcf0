"""pretrained_ckpt_path: every checkpoint layout loads into PointJepaClassification, misfits are refused."""

import logging

import pytest
import torch

from pointjepa.models.part_segmentation import PointJepaPartSegmentation
from pointjepa.modules.pointnet import PointNetSmall
from pointjepa.utils.checkpoint import CheckpointError
from pointjepa.utils.pretrained import load_backbone
from tests.conftest import BACKBONE, save_checkpoint, tiny_classifier, tiny_pretraining
from tests.fakeckpt import BASE_MODEL_LAYOUTS, LAYOUTS, layout_checkpoint, tiny_backbone_state, write_checkpoint


def assert_backbone_equal(
    model: torch.nn.Module, backbone: dict[str, torch.Tensor], skip: tuple[str, ...] = ()
) -> None:
    own = model.state_dict()
    for key, value in backbone.items():
        if not key.startswith(skip):
            if key.endswith("conv.1.running_mean"):  # Point-MAE / BERT conv biases folded in: rounding
                torch.testing.assert_close(own[key], value, msg=key)
            else:
                assert torch.equal(own[key], value), key


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_the_backbone_and_keeps_the_head(tmp_path, layout, caplog):
    qkv_bias = layout not in BASE_MODEL_LAYOUTS  # Point-MAE / Point-BERT attention has no qkv bias
    backbone = tiny_backbone_state(qkv_bias=qkv_bias)
    path = write_checkpoint(tmp_path / f"{layout}.ckpt", layout, backbone)
    model = tiny_classifier(encoder_qkv_bias=qkv_bias, cls_head_pooling="mean+max+cls_token")
    head_before = {k: v.clone() for k, v in model.cls_head.state_dict().items()}

    with caplog.at_level(logging.INFO):
        model.load_pretrained(str(path))

    assert_backbone_equal(model, backbone)
    assert all(torch.equal(model.cls_head.state_dict()[k], v) for k, v in head_before.items())
    summaries = [r.getMessage() for r in caplog.records if "Pretrained weights from" in r.getMessage()]
    assert len(summaries) == 1 and "missing backbone keys: none" in summaries[0]
    if layout.startswith("point_bert"):  # its class token and position are loaded (squeezed to (C,))
        source = torch.load(path, weights_only=False)["base_model"]
        prefix = "module.transformer_q." if layout == "point_bert" else "module."
        assert torch.equal(model.cls_token, source[prefix + "cls_token"].reshape(-1))
        assert torch.equal(model.cls_pos, source[prefix + "cls_pos"].reshape(-1))


def test_our_real_pretraining_checkpoint_loads_the_student(tmp_path):
    pretrained = tiny_pretraining()
    path = save_checkpoint(pretrained, tmp_path / "pretraining.ckpt")
    model = tiny_classifier()
    model.load_pretrained(str(path))
    for name, param in pretrained.student.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], param), name
    assert torch.equal(
        model.tokenizer.embedding.encoder.second_conv[3].weight,
        pretrained.tokenizer.embedding.encoder.second_conv[3].weight,
    )


def test_missing_qkv_bias_is_reported_as_missing(tmp_path, caplog):
    path = write_checkpoint(tmp_path / "mae.ckpt", "point_mae", tiny_backbone_state(qkv_bias=False))
    with caplog.at_level(logging.INFO):
        tiny_classifier(encoder_qkv_bias=True).load_pretrained(str(path))
    assert "encoder.blocks.0.attn.qkv.bias" in caplog.text


def test_shape_misfit_is_refused_naming_the_parameter(tmp_path):
    path = write_checkpoint(tmp_path / "ours.ckpt", "ours", tiny_backbone_state())
    model = tiny_classifier(encoder_dim=64)
    with pytest.raises(CheckpointError, match=r"tokenizer\.embedding\.encoder\.second_conv\.3\.weight.*\(32, 512, 1\)"):
        model.load_pretrained(str(path))


@pytest.mark.parametrize("layout", ["point_bert", "point_bert_finetuned"])
def test_point_bert_256_dim_tokens_load_into_the_projection(tmp_path, layout):
    """Published Point-BERT tokens are 256-d, then ``reduce_dim`` projects them to the encoder width."""
    backbone = tiny_backbone_state(qkv_bias=False, tokenizer_embedding_dim=48)
    assert backbone["tokenizer.projection.weight"].shape == (32, 48)
    path = write_checkpoint(tmp_path / "bert.ckpt", layout, backbone)
    model = tiny_classifier(encoder_qkv_bias=False, tokenizer_embedding_dim=48)
    model.load_pretrained(str(path))
    assert_backbone_equal(model, backbone)
    tokens, _ = model.tokenizer(torch.randn(2, 64, 3))
    assert tokens.shape == (2, 8, 32)


@pytest.mark.parametrize("train", [False, True])
def test_point_mae_conv_biases_fold_into_the_batch_norms(tmp_path, train):
    """Point-MAE's mini-PointNet has biased convolutions before its batch norms; ours gives the same tokens."""
    torch.manual_seed(0)
    theirs = PointNetSmall(3, 32)
    for seq in (theirs.first_conv, theirs.second_conv):
        conv = seq[0]
        seq[0] = torch.nn.Conv1d(conv.in_channels, conv.out_channels, 1)  # with a bias, as in Point-MAE
        seq[1].running_mean.normal_()
        seq[1].running_var.uniform_(0.5, 2.0)
    checkpoint = layout_checkpoint("point_mae", tiny_backbone_state(qkv_bias=False))
    checkpoint["base_model"] |= {f"module.MAE_encoder.encoder.{k}": v for k, v in theirs.state_dict().items()}
    torch.save(checkpoint, tmp_path / "mae.pth")
    model = tiny_classifier(encoder_qkv_bias=False)
    model.load_pretrained(str(tmp_path / "mae.pth"))
    ours = model.tokenizer.embedding.encoder
    groups = torch.randn(10, 4, 3)
    theirs.train(train), ours.train(train)
    torch.testing.assert_close(ours(groups), theirs(groups))


def test_point_bert_projection_without_tokenizer_embedding_dim_is_refused(tmp_path):
    backbone = tiny_backbone_state(qkv_bias=False, tokenizer_embedding_dim=48)
    path = write_checkpoint(tmp_path / "bert.ckpt", "point_bert", backbone)
    with pytest.raises(CheckpointError, match="set tokenizer_embedding_dim: 48"):
        tiny_classifier(encoder_qkv_bias=False).load_pretrained(str(path))


def test_point_bert_tokens_of_another_width_are_refused_naming_the_parameter(tmp_path):
    backbone = tiny_backbone_state(qkv_bias=False, tokenizer_embedding_dim=48)
    path = write_checkpoint(tmp_path / "bert.ckpt", "point_bert", backbone)
    with pytest.raises(CheckpointError, match=r"second_conv\.3\.weight.*\(48, 512, 1\).*\(40, 512, 1\)"):
        tiny_classifier(encoder_qkv_bias=False, tokenizer_embedding_dim=40).load_pretrained(str(path))


def test_part_segmentation_loads_point_bert_weights(tmp_path):
    backbone = tiny_backbone_state(qkv_bias=False, tokenizer_embedding_dim=48)
    path = write_checkpoint(tmp_path / "bert.ckpt", "point_bert", backbone)
    model = PointJepaPartSegmentation(
        **BACKBONE,
        seg_head_fetch_layers=[0, 1],
        encoder_qkv_bias=False,
        tokenizer_embedding_dim=48,
    )
    load_backbone(model, path)
    assert_backbone_equal(model, backbone)


def test_ignored_encoder_layers_keep_their_initialisation(tmp_path):
    backbone = tiny_backbone_state()
    path = write_checkpoint(tmp_path / "ours.ckpt", "ours", backbone)
    model = tiny_classifier(pretrained_ckpt_ignore_encoder_layers=[1])
    block1_before = {k: v.clone() for k, v in model.encoder.blocks[1].state_dict().items()}
    model.load_pretrained(str(path))
    assert_backbone_equal(model, backbone, skip=("encoder.blocks.1.",))
    assert all(torch.equal(model.encoder.blocks[1].state_dict()[k], v) for k, v in block1_before.items())


def test_pretrained_weights_are_loaded_at_fit_setup_only(tmp_path):
    backbone = tiny_backbone_state()
    path = write_checkpoint(tmp_path / "ours.ckpt", "ours", backbone)
    model = tiny_classifier(pretrained_ckpt_path=str(path))
    assert not torch.equal(
        model.encoder.blocks[0].attn.qkv.weight, backbone["encoder.blocks.0.attn.qkv.weight"]
    )  # not in __init__
    model.setup("validate")
    assert not torch.equal(model.encoder.blocks[0].attn.qkv.weight, backbone["encoder.blocks.0.attn.qkv.weight"])
    model.setup("fit")
    assert_backbone_equal(model, backbone)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "empty"),
        (b"garbage", "not a readable"),
        ({"weights": {}}, "unknown checkpoint layout"),
    ],
)
def test_bad_checkpoint_files_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        tiny_classifier().load_pretrained(str(path))
