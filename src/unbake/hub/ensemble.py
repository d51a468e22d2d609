"""Ensembles as data: several models whose stems are combined per stem with weights.

An ensemble is not a model: each member runs through the engine at its own sample rate and
segment, and the facade combines the results (weighted mean or median per stem).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..errors import ModelError

COMBINE_METHODS = ("average", "median")


@dataclass
class Ensemble:
    """Members and, per member, one weight per output stem.

    ``weights[i][k]`` is the weight of member ``i`` for stem ``sources[k]``; a member that does
    not produce a stem contributes nothing to it. ``segment_samples[i]`` optionally overrides
    the member's own segment (the official Demucs bags carry such overrides).
    """

    members: list
    sources: tuple[str, ...]
    weights: list[list[float]]
    method: str = "average"
    segment_s: list[float | None] = field(default_factory=list)
    name: str = "ensemble"

    def __post_init__(self) -> None:
        if not self.members:
            raise ModelError("an ensemble needs at least one model")
        if self.method not in COMBINE_METHODS:
            raise ModelError(f"unknown ensemble method {self.method!r}; use one of {COMBINE_METHODS}")
        if len(self.weights) != len(self.members) or any(len(w) != len(self.sources) for w in self.weights):
            raise ModelError(
                f"ensemble weights must be {len(self.members)} rows of {len(self.sources)} values"
            )
        if not self.segment_s:
            self.segment_s = [None] * len(self.members)
        for k, source in enumerate(self.sources):
            if not any(w[k] > 0 and source in m.sources for w, m in zip(self.weights, self.members)):
                raise ModelError(f"no ensemble member produces stem {source!r} with a positive weight")

    @classmethod
    def uniform(cls, members: Sequence, method: str = "average", name: str = "ensemble",
                member_weights: Sequence[float] | None = None) -> "Ensemble":
        """Ensemble over the stems that the members produce, in first-seen order."""
        sources: list[str] = []
        for m in members:
            for s in m.sources:
                if s not in sources:
                    sources.append(s)
        mw = list(member_weights) if member_weights is not None else [1.0] * len(members)
        if len(mw) != len(members):
            raise ModelError(f"{len(mw)} weights given for {len(members)} models")
        weights = [[w if s in m.sources else 0.0 for s in sources] for m, w in zip(members, mw)]
        return cls(list(members), tuple(sources), weights, method=method, name=name)

    @property
    def samplerate(self) -> int:
        return self.members[0].samplerate
