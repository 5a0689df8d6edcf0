"""Layer freezing and scheduled unfreezing for fine-tuning, as a pure function of the epoch.

The schedule says, for any epoch, which parts are trainable; applying it every epoch is
idempotent, so a resumed run ends up in the same state as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from pointjepa.modules.transformer import TransformerEncoder


@dataclass(frozen=True)
class Trainable:
    """Which backbone parts take gradient updates in one epoch."""

    tokenizer: bool
    positional_encoding: bool
    encoder_blocks: frozenset[int]
    encoder_norm: bool

    def __str__(self) -> str:
        return (
            f"tokenizer={self.tokenizer}, positional_encoding={self.positional_encoding}, "
            f"encoder blocks {sorted(self.encoder_blocks) or 'none'}, encoder norm={self.encoder_norm}"
        )


def block_indices(layers: Sequence[int], depth: int, option: str, allow_empty: bool = True) -> list[int]:
    """Encoder block indices of option ``option`` (negative ones count from the end) -> the same in [0, depth).

    Raises a ``ValueError`` naming ``option`` when one is out of range, or when there are none and
    ``allow_empty`` is false.
    """
    if any(not -depth <= i < depth for i in layers) or not (layers or allow_empty):
        some = "" if allow_empty else "one or more "
        raise ValueError(f"{option}: expected {some}encoder block indices in [-{depth}, {depth}), got {list(layers)}")
    return [i % depth for i in layers]


@dataclass(frozen=True)
class UnfreezeSchedule:
    """The original's options for freezing and unfreezing the encoder, tokenizer and positional encoding.

    Args:
        depth: number of encoder blocks.
        encoder_unfreeze_epoch: first epoch at which the encoder trains (0: from the start).
        encoder_freeze_layers: freeze only these blocks (instead of the whole encoder) until unfrozen.
        encoder_unfreeze_layers: unfreeze only these blocks (instead of the whole encoder).
        encoder_unfreeze_stepwise: unfreeze ``stepwise_num_layers`` blocks at a time, the last block
            first, every ``int((max_epochs - encoder_unfreeze_epoch) / (blocks / stepwise_num_layers))``
            epochs (at least 1) from ``encoder_unfreeze_epoch`` on; the final norm stays frozen.
        encoder_unfreeze_stepwise_num_layers: blocks per step.
        tokenizer_unfreeze_epoch: first epoch at which the tokenizer trains.
        positional_encoding_unfreeze_epoch: first epoch at which the positional encoding trains.
    """

    depth: int
    encoder_unfreeze_epoch: int = 0
    encoder_freeze_layers: tuple[int, ...] | None = None
    encoder_unfreeze_layers: tuple[int, ...] | None = None
    encoder_unfreeze_stepwise: bool = False
    encoder_unfreeze_stepwise_num_layers: int = 2
    tokenizer_unfreeze_epoch: int = 0
    positional_encoding_unfreeze_epoch: int = 0

    def __post_init__(self) -> None:
        if self.encoder_freeze_layers is not None and self.encoder_unfreeze_stepwise:
            raise ValueError("encoder_freeze_layers cannot be combined with encoder_unfreeze_stepwise: true")
        if self.encoder_unfreeze_stepwise_num_layers < 1:
            raise ValueError(
                f"encoder_unfreeze_stepwise_num_layers: expected >= 1, got {self.encoder_unfreeze_stepwise_num_layers}"
            )
        for option in ("encoder_unfreeze_epoch", "tokenizer_unfreeze_epoch", "positional_encoding_unfreeze_epoch"):
            if getattr(self, option) < 0:
                raise ValueError(f"{option}: expected an epoch >= 0, got {getattr(self, option)}")
        for option in ("encoder_freeze_layers", "encoder_unfreeze_layers"):
            layers = getattr(self, option)
            if layers is not None:
                block_indices(layers, self.depth, option)

    def stepwise_interval(self, num_blocks: int, max_epochs: int) -> int:
        """Epochs between two stepwise steps: the original's ``int(epochs / (blocks / blocks_per_step))``,
        at least 1 (the original stops with an error when it is 0)."""
        steps = num_blocks / self.encoder_unfreeze_stepwise_num_layers
        return max(1, int((max_epochs - self.encoder_unfreeze_epoch) / steps))

    def _unfrozen_blocks(self, epoch: int, max_epochs: int) -> tuple[set[int], bool]:
        """Blocks released by the unfreeze schedule at ``epoch``, and whether the whole encoder is."""
        if epoch < self.encoder_unfreeze_epoch:
            return set(), False
        if self.encoder_unfreeze_layers is not None:
            order = block_indices(self.encoder_unfreeze_layers, self.depth, "encoder_unfreeze_layers")
        else:
            order = list(range(self.depth))
        if not self.encoder_unfreeze_stepwise:
            return set(order), self.encoder_unfreeze_layers is None
        steps_done = (epoch - self.encoder_unfreeze_epoch) // self.stepwise_interval(len(order), max_epochs) + 1
        count = min(len(order), steps_done * self.encoder_unfreeze_stepwise_num_layers)
        return set(order[::-1][:count]), False

    def trainable(self, epoch: int, max_epochs: int) -> Trainable:
        """What trains in ``epoch`` of a run of ``max_epochs``."""
        unfrozen, whole_encoder = self._unfrozen_blocks(epoch, max_epochs)
        if self.encoder_freeze_layers is not None:
            frozen = set(block_indices(self.encoder_freeze_layers, self.depth, "encoder_freeze_layers"))
        else:
            frozen = set(range(self.depth))
        if whole_encoder:
            unfrozen = set(range(self.depth))
        return Trainable(
            tokenizer=epoch >= self.tokenizer_unfreeze_epoch,
            positional_encoding=epoch >= self.positional_encoding_unfreeze_epoch,
            encoder_blocks=frozenset(set(range(self.depth)) - (frozen - unfrozen)),
            encoder_norm=whole_encoder or self.encoder_freeze_layers is not None,
        )


def apply_trainable(trainable: Trainable, backbone: nn.Module) -> None:
    """Set ``requires_grad`` of a module's ``tokenizer``, ``positional_encoding`` and ``encoder`` (its ``blocks``
    and final ``norm``) as ``trainable`` says."""
    encoder = backbone.encoder
    if not isinstance(encoder, TransformerEncoder):
        raise TypeError(f"apply_trainable: expected a TransformerEncoder as encoder, got {type(encoder).__name__}")
    backbone.tokenizer.requires_grad_(trainable.tokenizer)
    backbone.positional_encoding.requires_grad_(trainable.positional_encoding)
    for i, block in enumerate(encoder.blocks):
        block.requires_grad_(i in trainable.encoder_blocks)
    encoder.norm.requires_grad_(trainable.encoder_norm)
