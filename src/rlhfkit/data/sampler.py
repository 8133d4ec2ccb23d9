"""An endless, resumable stream of example indices, epoch after epoch, sharded over processes.

Its whole state is (epoch, offset) in the *global* order: the order of an epoch is a pure function of
(seed, epoch, step size), so a resumed run replays exactly the batches an uninterrupted run would
have seen, and it does so on any number of processes as long as the step's global size is the same.

One optimizer step takes `step_size` indices (the global batch: examples per micro-batch x
micro-batches x processes). Process `rank` takes the `rank`-th contiguous slice of them and cuts it
into its `micro_batches` micro-batches, so a 2-process run with one micro-batch each sees the very
micro-batches a 1-process run with two sees (length grouping keeps a step's rows sorted together,
so every slice is one of similar lengths).
"""

from __future__ import annotations

from collections.abc import Sequence

from rlhfkit.config import ConfigError
from rlhfkit.data.collate import epoch_order


class BatchStream:
    def __init__(
        self,
        lengths: Sequence[int],
        step_size: int,
        seed: int,
        group_by_length: bool = False,
        *,
        micro_batches: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not lengths:
            raise ValueError("no training examples")
        if step_size % (micro_batches * world_size):
            raise ValueError(
                f"a step of {step_size} examples cannot be split into {micro_batches} micro-batches "
                f"on each of {world_size} processes"
            )
        self.lengths = list(lengths)
        self.step_size = step_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.micro_batches = micro_batches
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.offset = 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        return epoch_order(self.lengths, self.step_size, self.seed, self.epoch, self.group_by_length)

    def next_global(self) -> list[int]:
        """The next step's global batch: `step_size` indices (wrapping into the next epoch)."""
        out: list[int] = []
        while len(out) < self.step_size:
            if self.offset >= len(self._order):
                self.epoch += 1
                self.offset = 0
                self._order = self._make_order()
            take = self._order[self.offset : self.offset + self.step_size - len(out)]
            out.extend(take)
            self.offset += len(take)
        return out

    def next_step(self) -> list[list[int]]:
        """This process's micro-batches of the next step (its contiguous share of the global batch)."""
        share = self.step_size // self.world_size
        mine = self.next_global()[self.rank * share : (self.rank + 1) * share]
        size = share // self.micro_batches
        return [mine[i : i + size] for i in range(0, share, size)]

    def next_batch(self) -> list[int]:
        """This process's share of the next step, as one list."""
        return [i for micro in self.next_step() for i in micro]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset, "step_size": self.step_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        saved = int(state.get("step_size", self.step_size))
        if saved != self.step_size:
            raise ConfigError(
                f"the checkpoint's steps took {saved} examples, this run's take {self.step_size} "
                "(batch_size x grad_accum x processes); resume with the same global batch"
            )
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._order = self._make_order()
