"""Data loading that resumes exactly: epoch-seeded shuffling and a loader that remembers its position."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class EpochShuffleSampler(Sampler[int]):
    """Random permutation of ``range(length)`` drawn from ``(seed, epoch)`` alone, so any epoch can be
    replayed; Lightning calls ``set_epoch`` before each epoch.

    Args:
        length: data set size.
        seed: base seed (default: the global seed at construction, i.e. ``seed_everything``'s).
    """

    def __init__(self, length: int, seed: int | None = None) -> None:
        self.length = length
        self.seed = torch.initial_seed() % 2**62 if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


class LoaderPosition:
    """The ``{"epoch", "batches"}`` position a resumable loader saves and restores (Lightning stores
    ``state_dict()`` in checkpoints). Subclasses define ``_epoch()``, count ``_batches`` handed out,
    and call ``_resume_skip()`` when an iteration starts."""

    _batches: int = 0
    _resume: dict[str, int] | None = None

    def _epoch(self) -> int:
        raise NotImplementedError

    def _resume_skip(self) -> int:
        """Batches of this epoch already trained on before a restore (0 without one); consumes the restore."""
        skip = self._resume["batches"] if self._resume is not None and self._resume["epoch"] == self._epoch() else 0
        self._resume = None
        return skip

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch(), "batches": self._batches}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}


class ResumableDataLoader(LoaderPosition, DataLoader):
    """``DataLoader`` with ``state_dict``/``load_state_dict``, which Lightning stores in checkpoints.

    The state is the epoch and the number of batches handed out; after ``load_state_dict`` the next
    iteration of that same epoch skips the batches already trained on. Worker seeds come from the
    loader's own generator, so iterating a loader never draws from the global random state.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator().manual_seed(torch.initial_seed() % 2**62))
        super().__init__(*args, **kwargs)

    def _epoch(self) -> int:
        sampler = getattr(self.batch_sampler, "sampler", self.sampler)  # a batch sampler's own, else the loader's
        return int(getattr(sampler, "epoch", 0))

    # A generator rather than torch's private _BaseDataLoaderIter: the loader's users only call next() on it.
    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        skip = self._resume_skip()
        self._batches = 0
        for batch in super().__iter__():
            self._batches += 1
            if self._batches > skip:
                yield batch
