"""Emotionally balanced mini-batches (design.md section 7): equal count per class in every batch,
drawn per class without replacement (a class's pool is reshuffled when it runs out; the items
of the batch being filled go last in the new order, so a batch repeats an item only when its
class has fewer items than its share of the batch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import UserError


class BalancedBatchSampler:
    """Yields lists of indices; each batch holds ``batch_size // n_classes`` items of every class.

    An epoch has ``ceil(len(labels) / batch_size)`` batches [choice]. Deterministic for
    ``seed`` and the epoch set with :meth:`set_epoch`.
    """

    def __init__(self, labels: Sequence[int], batch_size: int = 40, *, n_classes: int | None = None,
                 seed: int = 0, batches_per_epoch: int | None = None):
        labels = np.asarray(labels, dtype=np.int64)
        self.n_classes = int(n_classes or labels.max() + 1)
        if batch_size % self.n_classes:
            raise UserError(f"batch_size={batch_size} is not a multiple of the "
                             f"{self.n_classes} classes")
        self.per_class = batch_size // self.n_classes
        self.pools = [np.flatnonzero(labels == c) for c in range(self.n_classes)]
        empty = [c for c, p in enumerate(self.pools) if len(p) == 0]
        if empty:
            raise UserError(f"classes {empty} have no training items; a balanced batch needs "
                             "every class")
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.n_batches = batches_per_epoch or max(1, -(-len(labels) // batch_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        orders = [rng.permutation(p) for p in self.pools]
        cursors = [0] * self.n_classes
        for _ in range(self.n_batches):
            batch = []
            for c in range(self.n_classes):
                take = []
                while len(take) < self.per_class:
                    if cursors[c] == len(orders[c]):
                        new = rng.permutation(self.pools[c])
                        if take:  # (drawn into this batch already: last, not twice in it)
                            again = np.isin(new, take)
                            new = np.concatenate([new[~again], new[again]])
                        orders[c], cursors[c] = new, 0
                    n = min(self.per_class - len(take), len(orders[c]) - cursors[c])
                    take.extend(orders[c][cursors[c]:cursors[c] + n].tolist())
                    cursors[c] += n
                batch.extend(take)
            rng.shuffle(batch)
            yield batch
