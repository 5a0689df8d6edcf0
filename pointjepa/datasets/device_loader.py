"""A loader that serves an in-memory split held on the training device, for data sets that fit in GPU memory.

Each batch is one ``index_select`` of the device tensors: no workers, no collate, no host-device copy
and no host-device synchronisation per step. The order is ``EpochShuffleSampler``'s, so the batches
are those of the host ``ResumableDataLoader`` for the same seed and epoch, and the position is saved
and restored the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from pointjepa.datasets.loader import EpochShuffleSampler, LoaderPosition


def shard_size(n: int, world_size: int) -> int:
    """Samples per rank when ``shard`` splits ``n`` among ``world_size`` ranks."""
    return -(-n // world_size)


def shard(index: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """``rank``'s share of ``index`` as ``DistributedSampler(shuffle=False)`` takes it from a data set
    in that order: padded by repeating its start to a multiple of ``world_size``, then every
    ``world_size``-th entry from ``rank``. index (n,) -> (ceil(n / world_size),)."""
    total = shard_size(len(index), world_size) * world_size
    padded = index.repeat(-(-total // len(index)))[:total]
    return padded[rank:total:world_size]


class DeviceBatchLoader(LoaderPosition):
    """Batches ``(points (B, N, 3), labels (B,))`` indexed out of a whole split held on ``device``.

    With a ``sampler``, each epoch's order is the sampler's permutation (drawn on the host, moved to
    the device once per epoch); without one, the split in order. Under DDP each rank takes its
    ``shard`` of that order, so every rank has the same number of batches. ``state_dict`` /
    ``load_state_dict`` hold ``{"epoch", "batches"}`` like ``ResumableDataLoader``'s: after a load,
    the next iteration of that epoch starts after the batches already handed out.

    Lightning calls ``sampler.set_epoch`` before each epoch and stores ``state_dict()`` in checkpoints.

    Args:
        points: ``(n, N, 3)`` float32 clouds (moved to ``device`` unless already there).
        labels: ``(n,)`` int64 labels (likewise).
        device: where the split is held and the batches come out.
        batch_size: samples per batch.
        sampler: epoch-seeded shuffling; ``None`` serves the split in order.
        drop_last: drop the last incomplete batch of the rank's share.
        rank: this process's rank among ``world_size``.
        world_size: number of processes sharing each epoch.
    """

    batch_sampler = None  # Lightning looks for ``set_epoch`` on ``sampler`` and ``batch_sampler``

    def __init__(
        self,
        points: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        device: torch.device,
        batch_size: int,
        sampler: EpochShuffleSampler | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.points = torch.as_tensor(points, device=device)
        self.labels = torch.as_tensor(labels, device=device)
        if self.points.ndim != 3 or len(self.points) == 0 or self.labels.shape != self.points.shape[:1]:
            raise ValueError(
                f"points, labels: expected (n, N, 3) points and (n,) labels with n > 0, "
                f"got {tuple(self.points.shape)} and {tuple(self.labels.shape)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
        if sampler is not None and len(sampler) != len(self.points):
            raise ValueError(f"sampler: covers {len(sampler)} samples, the split holds {len(self.points)}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.sampler = sampler
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.shard_size = shard_size(len(self.points), world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.shard_size // self.batch_size
        return -(-self.shard_size // self.batch_size)

    def _epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def _order(self) -> torch.Tensor:
        """This rank's sample order for the current epoch, on the device: (shard_size,) int64."""
        if self.sampler is None:
            order = torch.arange(len(self.points))
        else:
            order = torch.tensor(list(self.sampler), dtype=torch.int64)
        return shard(order, self.rank, self.world_size).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._iterate()  # a generator: the epoch is read at the first batch, after set_epoch

    def _iterate(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        skip = self._resume_skip()
        order = self._order()
        self._batches = skip
        for start in range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            self._batches += 1
            yield self.points.index_select(0, index), self.labels.index_select(0, index)
