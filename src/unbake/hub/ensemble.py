"""The one runner protocol: a single model is an ensemble of one.

An ensemble is several models whose stems are combined per stem with weights (weighted mean or
median). Each member runs through the engine at its own sample rate and segment, and the facade
combines the results. Front ends and the facade only ever see an :class:`Ensemble`
(:func:`as_runner` wraps a lone model), so nothing outside the hub asks which kind it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from ..errors import ModelError, ModelOptionError

COMBINE_METHODS = ("average", "median")


@dataclass(frozen=True)
class Member:
    """One model of a runner: ``weights[k]`` is its weight for the runner's stem ``k`` (0 when
    it does not produce that stem); ``segment_s`` overrides the model's own chunk length."""

    model: Any
    weights: tuple[float, ...]
    segment_s: float | None = None


class Runner(Protocol):
    """What the facade needs from whatever separates: named stems made by weighted members."""

    name: str
    sources: tuple[str, ...]
    method: str

    @property
    def parts(self) -> list[Member]: ...


@dataclass
class Ensemble:
    """Members and, per member, one weight per output stem.

    ``weights[i][k]`` is the weight of member ``i`` for stem ``sources[k]``; a member that does
    not produce a stem contributes nothing to it. ``segment_s[i]`` optionally overrides the
    member's own segment (the official Demucs bags carry such overrides).
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
            raise ModelOptionError("weights", f"{len(mw)} weights given for {len(members)} models")
        weights = [[w if s in m.sources else 0.0 for s in sources] for m, w in zip(members, mw)]
        return cls(list(members), tuple(sources), weights, method=method, name=name)

    @classmethod
    def of(cls, model) -> "Ensemble":
        """A single model as an ensemble of one (same stems, weight 1, its own segment)."""
        return cls([model], tuple(model.sources), [[1.0] * len(model.sources)], name=model_label(model))

    @property
    def parts(self) -> list[Member]:
        return [Member(m, tuple(w), s) for m, w, s in zip(self.members, self.weights, self.segment_s)]

    @property
    def samplerate(self) -> int:
        return self.members[0].samplerate


def model_label(model) -> str:
    """The name a model was loaded under (catalogue name or file stem), else its class name."""
    info = getattr(model, "info", None)
    return getattr(info, "name", None) or getattr(model, "name", None) or model.__class__.__name__


def as_runner(model) -> Ensemble:
    """Whatever :func:`~unbake.hub.loading.load_model` returned, as the one runner type."""
    return model if isinstance(model, Ensemble) else Ensemble.of(model)


def combine(models: Sequence, *, weights: Sequence[float] | None = None, method: str = "average",
            name: str = "ensemble") -> Ensemble:
    """Several loaded models (or runners of one) as one uniform ensemble; nesting is refused."""
    if any(isinstance(m, Ensemble) for m in models):
        raise ModelError("an ensemble cannot contain another ensemble; list its models instead")
    return Ensemble.uniform(list(models), method=method, member_weights=weights, name=name)
