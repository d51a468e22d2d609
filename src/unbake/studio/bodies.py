"""The studio's JSON request bodies. ``settings`` holds the ``tracks:`` and ``master:`` sections
of an ``unbake remix`` project; the remix project schema validates them (key paths and ranges in
its messages), exactly as for a project file."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class MixRequest(BaseModel):
    """Mixer settings: ``{"settings": {"tracks": {stem: {...}}, "master": {...}}}``."""

    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] = Field(default_factory=dict)


class RenderRequest(MixRequest):
    """Mixer settings and the export format."""

    format: Literal["wav", "flac", "mp3"] = "wav"
