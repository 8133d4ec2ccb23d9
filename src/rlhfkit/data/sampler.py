"""An endless, resumable stream of example indices, epoch after epoch.

Its whole state is (epoch, offset): the order of an epoch is a pure function of (seed, epoch), so a
resumed run replays exactly the batches an uninterrupted run would have seen. In a multi-process
run each process takes its own slice of every batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlhfkit.data.collate import epoch_order


class BatchStream:
    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int,
        group_by_length: bool = False,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not lengths:
            raise ValueError("no training examples")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.offset = 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        return epoch_order(self.lengths, self.batch_size * self.world_size, self.seed, self.epoch, self.group_by_length)

    def next_batch(self) -> list[int]:
        """The next global batch's indices for this process (wrapping into the next epoch)."""
        size = self.batch_size * self.world_size
        out: list[int] = []
        while len(out) < size:
            if self.offset >= len(self._order):
                self.epoch += 1
                self.offset = 0
                self._order = self._make_order()
            take = self._order[self.offset : self.offset + size - len(out)]
            out.extend(take)
            self.offset += len(take)
        return out[self.rank :: self.world_size]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._order = self._make_order()
