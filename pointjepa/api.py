"""Public API: ``load_encoder(path)`` -> module mapping clouds (B, N, 3) to features (B, 2C);
``load_classifier(path, ...)`` -> a fine-tuned classifier in eval mode."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pointjepa.modules.backbone import build_backbone, pooled_features
from pointjepa.modules.transforms import Subsample, build_transforms, transform_kwargs
from pointjepa.ops import farthest_point_sample
from pointjepa.utils.checkpoint import CheckpointError, load_checkpoint, reset_nan_batchnorm_stats
from pointjepa.utils.pretrained import EXTRA_KEYS, backbone_state_dict

if TYPE_CHECKING:
    from pointjepa.models.classification import PointJepaClassification, VoteMethod

#: Tokenizer and attention settings of Point-MAE / Point-BERT, used when a checkpoint has no hyper-parameters.
DEFAULT_NUM_GROUPS, DEFAULT_GROUP_SIZE, DEFAULT_HEADS = 64, 32, 6
#: Evaluation transforms used when a checkpoint does not name its own: FPS to 1024 points, center, unit sphere.
DEFAULT_TRANSFORMATIONS, DEFAULT_NUM_POINTS = ("subsample", "center", "unit_sphere"), 1024


class PointEncoder(nn.Module):
    """Pretrained backbone as a feature extractor (the SVM probe's features).

    ``forward(points (B, N, 3)) -> (B, 2C)``: apply ``transforms`` (default: FPS to 1024 points, center,
    unit sphere), tokenize, encode, then concatenate the max and the mean over tokens. Build it with
    ``load_encoder``, which gives it the checkpoint's own evaluation transforms.
    """

    def __init__(
        self,
        num_groups: int,
        group_size: int,
        group_radius: float | None,
        dim: int,
        depth: int,
        heads: int,
        add_pos_at_every_layer: bool = True,
        qkv_bias: bool = True,
        tokenizer_embedding_dim: int | None = None,
        transforms: nn.Sequential | None = None,
    ) -> None:
        super().__init__()
        backbone = build_backbone(
            num_groups=num_groups,
            group_size=group_size,
            group_radius=group_radius,
            dim=dim,
            depth=depth,
            heads=heads,
            add_pos_at_every_layer=add_pos_at_every_layer,
            qkv_bias=qkv_bias,
            tokenizer_embedding_dim=tokenizer_embedding_dim,
        )
        if transforms is None:
            transforms = build_transforms(DEFAULT_TRANSFORMATIONS, DEFAULT_NUM_POINTS)
        self.transforms = transforms
        self.tokenizer = backbone.tokenizer
        self.positional_encoding = backbone.positional_encoding
        self.encoder = backbone.encoder

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points (B, N, 3), N >= num_groups -> features (B, 2C)."""
        tokens, centers = self.tokenizer(self.transforms(points))
        return pooled_features(self.encoder(tokens, self.positional_encoding(centers)).last_hidden_state)

    def seeded(self, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """-> ``embed(points (B, N, 3)) -> (B, 2C)`` that first subsamples clouds larger than ``num_points`` by
        FPS from random starts. The starts come one per cloud, in call order, from a CPU generator seeded with
        ``seed``: clouds fed in the same order get the same starts whatever the batch size or device."""
        generator = torch.Generator().manual_seed(seed)

        def embed(points: torch.Tensor) -> torch.Tensor:
            if self.num_points is not None and points.shape[1] > self.num_points:
                starts = torch.randint(points.shape[1], (points.shape[0],), generator=generator)
                points = farthest_point_sample(points, self.num_points, start_idx=starts.to(points.device))[0]
            return self(points)

        return embed

    @property
    def num_points(self) -> int | None:
        """Points per cloud after the transforms' FPS subsampling (``None``: no subsampling)."""
        return next((t.num_points for t in self.transforms if isinstance(t, Subsample)), None)


def eval_transforms(
    hparams: Mapping[str, Any], num_points: int | None = None, transformations: Sequence[str] | None = None
) -> nn.Sequential:
    """The evaluation transforms of the model that saved ``hparams``: its ``val_transformations`` after an FPS
    subsample to its ``num_points`` (classification), or with ``subsample`` to ``transformation_subsample_points``
    (pretraining); defaults ``DEFAULT_TRANSFORMATIONS`` / ``DEFAULT_NUM_POINTS`` for what it does not say.
    ``num_points`` / ``transformations`` override the checkpoint's (a ``num_points`` adds a subsample step).
    FPS starts at each cloud's first point, so features are deterministic."""
    if num_points is not None and num_points < 1:
        raise ValueError(f"num_points: expected a positive number of points, got {num_points}")
    if transformations is not None:
        names = list(transformations)
    else:
        names = list(hparams.get("val_transformations", DEFAULT_TRANSFORMATIONS))
        if "num_points" in hparams and "subsample" not in names:  # classification subsamples before them
            names.insert(0, "subsample")
    if num_points is not None and "subsample" not in names:
        names.insert(0, "subsample")
    saved = hparams.get("num_points", hparams.get("transformation_subsample_points", DEFAULT_NUM_POINTS))
    size = num_points if num_points is not None else saved
    try:
        options = transform_kwargs(hparams, size) | {"random_start_in_eval": False}  # deterministic features
    except KeyError:  # checkpoints without the transformation_* keys
        options = dict(subsample_points=size)
    return build_transforms(names, **options)


def _architecture(checkpoint: dict, state: dict[str, torch.Tensor], path: str | os.PathLike) -> dict:
    """Backbone sizes from the checkpoint's hyper-parameters, else inferred from the tensor shapes."""
    if "encoder.norm.weight" not in state:
        raise CheckpointError(f"{path}: no encoder.norm weights, cannot tell the encoder width")
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))}
    projection = state.get("tokenizer.projection.weight")
    inferred = dict(
        dim=state["encoder.norm.weight"].shape[0],
        depth=max(blocks) + 1 if blocks else 0,
        qkv_bias="encoder.blocks.0.attn.qkv.bias" in state,
        tokenizer_embedding_dim=None if projection is None else projection.shape[1],
        num_groups=DEFAULT_NUM_GROUPS,
        group_size=DEFAULT_GROUP_SIZE,
        group_radius=None,
        heads=DEFAULT_HEADS,
        add_pos_at_every_layer=True,
    )
    hparams = checkpoint.get("hyper_parameters") or {}
    names = dict(
        num_groups="tokenizer_num_groups",
        group_size="tokenizer_group_size",
        group_radius="tokenizer_group_radius",
        dim="encoder_dim",
        depth="encoder_depth",
        heads="encoder_heads",
        add_pos_at_every_layer="encoder_add_pos_at_every_layer",
    )
    shapes_only = {k: inferred[k] for k in ("qkv_bias", "tokenizer_embedding_dim")}
    return {arg: hparams.get(key, inferred[arg]) for arg, key in names.items()} | shapes_only


def load_encoder(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    num_groups: int | None = None,
    group_size: int | None = None,
    heads: int | None = None,
    num_points: int | None = None,
    transformations: Sequence[str] | None = None,
    trusted: bool = False,
) -> PointEncoder:
    """Load a pretrained or fine-tuned backbone as an eval-mode ``PointEncoder`` on ``device``.

    Accepts our pretraining and classification checkpoints, the original Point-JEPA and Point2Vec
    Lightning checkpoints, and Point-MAE / Point-BERT ``base_model`` checkpoints. Sizes come from the
    checkpoint's hyper-parameters; without them, the width, depth, qkv bias and Point-BERT's 256-d
    tokens (with their projection) are read off the tensor
    shapes and the tokenizer and heads default to Point-MAE's 64 groups of 32 points and 6 heads
    (override with ``num_groups``, ``group_size``, ``heads``).

    Clouds go through the checkpoint's own evaluation transforms (``eval_transforms``): e.g. FPS to its
    ``transformation_subsample_points`` or ``num_points``, center, unit sphere; without hyper-parameters
    FPS to 1024 points, center, unit sphere (clouds with fewer points are refused, as by the model).
    ``num_points`` (FPS size) and ``transformations`` (transform names) override them.

    The file is read weights-only (``load_checkpoint``): one that needs pickle code is refused with an
    ``UnsafeCheckpointError``; ``trusted=True`` loads it with full pickle, which runs any code it carries (only for
    a file whose source you trust). Raises ``CheckpointError`` for unreadable files, unknown layouts, and weights
    that are missing or do not fit (naming the parameter).
    """
    checkpoint = load_checkpoint(path, trusted=trusted)
    state = backbone_state_dict(checkpoint)
    arch = _architecture(checkpoint, state, path)
    overrides = dict(num_groups=num_groups, group_size=group_size, heads=heads)
    arch.update({k: v for k, v in overrides.items() if v is not None})
    hparams = checkpoint.get("hyper_parameters") or {}
    encoder = PointEncoder(**arch, transforms=eval_transforms(hparams, num_points, transformations))
    weights = {k: v for k, v in state.items() if k not in EXTRA_KEYS}
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the backbone weights do not fit a {arch} encoder: {err}") from err
    reset_nan_batchnorm_stats(encoder)
    return encoder.to(device).eval()


def load_classifier(
    path: str | os.PathLike,
    num_classes: int,
    vote_num: int,
    device: torch.device,
    vote_method: VoteMethod = "random_start",
    trusted: bool = False,
) -> PointJepaClassification:
    """A fine-tuned classification checkpoint (ours or the original layout) as an eval-mode model; read
    weights-only unless ``trusted`` (as ``load_encoder``)."""
    from pointjepa.models.classification import PointJepaClassification  # Lightning: only when asked for

    checkpoint = load_checkpoint(path, trusted=trusted)
    if "state_dict" not in checkpoint or not any(k.startswith("cls_head.") for k in checkpoint["state_dict"]):
        raise CheckpointError(f"{path}: not a classification checkpoint (no cls_head.* weights)")
    hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    hparams.update(num_classes=num_classes, vote_num=vote_num, vote_method=vote_method)
    hparams.update(pretrained_ckpt_path=None, pretrained_ckpt_trusted=False)  # a file cannot vouch for another
    model = PointJepaClassification(**hparams)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model (wrong data set / num_classes?): {err}") from err
    return model.to(device).eval()
