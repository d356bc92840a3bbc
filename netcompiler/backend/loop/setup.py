"""The settings of one run of a rec unit: searching or teacher forcing, the plan, the required
and fetched layers, the batch and beam sizes and the loop length."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from netcompiler.backend.loop.max_len import max_seq_len
from netcompiler.backend.loop.plan import UnitPlan, plan_unit
from netcompiler.backend.loop.tensors import tile_beam
from netcompiler.backend.loop.unit_traits import choice_targets, has_search_choice
from netcompiler.core.dims import Shape


@dataclass
class LoopSetup:
    """How the unit runs. `plan` ... `search_opts` are known before any tensor exists; `B`, `K`,
    `T`, `max_len` and `lengths` are set by `measure` when the run starts."""

    plan: UnitPlan
    searching: bool  # a choice is searched (forced, or its target not given)
    known_length: bool  # the loop length is known before the loop (else `end` / max_seq_len)
    required: set[str]  # local names: `output`, the fetched layers, `end` when end-driven
    fetch_locals: set[str]
    #: None, or {"beam_size": K or None, "n_best": N, "results": {}} (forced search)
    search_opts: dict | None
    B: Any = None  # batch size (int32 scalar)
    K: int = 1  # beam size
    T: Any = None  # loop length when known (int32 scalar)
    max_len: Any = None  # most steps (int32 scalar)
    lengths: Any = None  # loop lengths [B] when known

    @classmethod
    def create(cls, inputs, fetch_locals, search: dict | None) -> LoopSetup:
        """The setup of running the unit of `inputs.rec` (a `RecInputs`): search iff a
        choice's target is not given or `search` forces it."""
        rec, values, loop_dim = inputs.rec, inputs.values, inputs.loop_dim
        targets = choice_targets(rec)
        searching = has_search_choice(rec) and (
            search is not None or any(f"data:{k}" not in values for k in targets)
        )
        known_length = loop_dim in inputs.dim_lengths and not (
            searching and loop_dim not in inputs.own_time_dims()
        )
        required = {"output"} | set(fetch_locals)
        if not known_length and "end" in rec.unit.layers:
            required.add("end")
        plan = plan_unit(inputs.net, rec, required, searching, known_length)
        return cls(plan, searching, known_length, required, set(fetch_locals), search)

    def measure(self, inputs) -> None:
        """Set the run-time sizes: batch, beam, loop length and the most steps."""
        self.B = inputs.batch_size()
        self.K = 1
        if self.searching and self.plan.search_choice is not None:
            k = (self.search_opts or {}).get("beam_size")
            self.K = int(k if k is not None else self.plan.search_choice.opts.get("beam_size", 1))
        if self.known_length:
            self.lengths = inputs.dim_lengths[inputs.loop_dim]
            self.T = inputs.dim_size(inputs.loop_dim)
            self.max_len = self.T
        else:
            self.max_len = max_seq_len(inputs)
            self.T = None

    @property
    def beam_search(self) -> bool:
        """A search choice prunes a beam inside the loop."""
        return self.searching and self.plan.search_choice is not None

    def tile(self, v, shape: Shape | None):
        """Repeat the batch entries K times (beam search)."""
        return tile_beam(v, shape, self.K)

    def loop_size(self, dim_lengths: dict, loop_dim):
        """The number of loop steps: T, else the longest loop length."""
        return self.T if self.T is not None else tf.reduce_max(dim_lengths[loop_dim])
