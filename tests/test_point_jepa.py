"""The PointJepa LightningModule: parameter names, options, a training step, checkpoint layouts."""

import pytest
import torch

from pointjepa.models.point_jepa import PointJepa
from tests.conftest import tiny_pretraining


def test_published_state_dict_names_and_shapes():
    keys = PointJepa().state_dict()
    expected = {
        "positional_encoding.0.weight": (128, 3),
        "positional_encoding.2.weight": (384, 128),
        "tokenizer.embedding.encoder.first_conv.0.weight": (128, 3, 1),
        "tokenizer.embedding.encoder.first_conv.1.running_mean": (128,),
        "tokenizer.embedding.encoder.first_conv.3.weight": (256, 128, 1),
        "tokenizer.embedding.encoder.second_conv.0.weight": (512, 512, 1),
        "tokenizer.embedding.encoder.second_conv.3.weight": (384, 512, 1),
        "student.blocks.11.attn.qkv.weight": (1152, 384),
        "student.blocks.11.attn.qkv.bias": (1152,),
        "student.blocks.0.mlp.fc1.weight": (1536, 384),
        "student.norm.weight": (384,),
        "teacher.ema_model.blocks.11.mlp.fc2.weight": (384, 1536),
        "teacher.step": (1,),
        "predictor.predictor_embed.weight": (192, 384),
        "predictor.mask_token": (1, 1, 192),
        "predictor.positional_encoding.2.weight": (192, 128),
        "predictor.predictor_norm.weight": (192,),
        "predictor.predictor_proj.weight": (384, 192),
        "predictor.predictor.blocks.5.attn.proj.weight": (192, 192),
        "predictor.predictor.norm.weight": (192,),
    }
    for name, shape in expected.items():
        assert tuple(keys[name].shape) == shape, name
    assert "student.blocks.12.norm1.weight" not in keys
    assert not any(k.startswith(("teacher.online_model", "mask_token")) for k in keys)
    assert not any("transformations" in k or "sequencer" in k for k in keys)


def test_original_checkpoint_extras_are_accepted_and_dropped():
    model = tiny_pretraining()
    state = model.state_dict()
    original = dict(state)
    original.update(
        {f"teacher.online_model.{k[len('student.') :]}": v for k, v in state.items() if k.startswith("student.")}
    )
    original["teacher.initted"] = torch.tensor(True)
    original["mask_token"] = torch.zeros(32)
    checkpoint = {"state_dict": original}
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])  # strict: nothing left over


def test_training_step_gives_finite_loss_and_grads():
    model = tiny_pretraining()
    loss = model.training_step((torch.randn(4, 128, 3), torch.zeros(4, dtype=torch.long)), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.student.blocks[0].attn.qkv.weight.grad is not None
    assert model.predictor.mask_token.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_targets_average_the_chosen_layers():
    model = tiny_pretraining(target_layers=[0, 1], target_layer_norm="layer", target_norm=None).eval()
    tokens, pos = torch.randn(2, 8, 32), torch.randn(2, 8, 32)
    out = model.teacher(tokens, pos, return_hidden_states=True)
    expected = torch.stack([torch.nn.functional.layer_norm(h, (32,)) for h in out.hidden_states]).mean(0)
    assert torch.allclose(model.targets(tokens, pos), expected, atol=1e-6)


def test_ffn_targets_use_mlp_outputs():
    model = tiny_pretraining(target_layer_part="ffn", target_layer_norm=None).eval()
    tokens, pos = torch.randn(2, 8, 32), torch.randn(2, 8, 32)
    ffn = model.teacher(tokens, pos, return_ffns=True).ffns[1]
    assert torch.allclose(model.targets(tokens, pos), ffn, atol=1e-6)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_targets_per_sample=8, target_sample_ratio=(0.15, 0.2)), "leave no context"),
        (dict(target_layers=[5]), "target_layers"),
        (dict(loss="l2"), "loss"),
        (dict(token_seq_method="hilbert"), "token_seq_method"),
        (dict(context_sample_method="nearest"), "context_sample_method"),
        (dict(train_transformations=["jitter"]), "unknown transformation"),
        (dict(target_sample_ratio=(0.3, 0.2)), "target_sample_ratio"),
        (dict(ema_tau_min=1.5), "ema_tau_min"),
    ],
)
def test_bad_options_raise_one_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_pretraining(**overrides)


def test_embed_gives_pooled_student_features():
    model = tiny_pretraining().eval()
    assert model.embed(torch.randn(3, 128, 3)).shape == (3, 64)
