"""Validation helpers for YAML project files: every failure is a :class:`ConfigError` whose
message starts with the key path (``tracks.vocals.eq[1].freq_hz: must be between ...``)."""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from ..errors import ConfigError

_MISSING = object()
T = TypeVar("T")
_TIME_RE = re.compile(r"^(?:(\d+):)?(\d+):(\d{1,2}(?:\.\d*)?)$")


def join(path: str, key: str | int) -> str:
    """The path of ``key`` inside ``path``: ``a.b``, or ``a[3]`` for list indices."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _where(path: str) -> str:
    return path or "project"


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{value!r}"


def fail(path: str, message: str) -> ConfigError:
    """A :class:`ConfigError` reading ``path: message`` (returned so callers ``raise`` it)."""
    return ConfigError(f"{_where(path)}: {message}")


def check_mapping(value: Any, path: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise fail(path, f"must be a mapping of keys to values, got {_type_name(value)}")
    return value


def check_keys(mapping: Any, allowed: Iterable[str], path: str, *, required: Iterable[str] = ()) -> Mapping:
    """``mapping`` must be a mapping using only ``allowed`` keys (and holding ``required``)."""
    mapping = check_mapping(mapping, path)
    allowed = list(allowed)
    for key in mapping:
        if not isinstance(key, str):
            raise fail(join(path, str(key)), "keys must be text")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise fail(join(path, key), f"unknown key{hint} (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in mapping:
            raise fail(join(path, key), "is required")
    return mapping


def get_number(mapping: Mapping, key: str, path: str, default: Any = None, lo: float | None = None,
               hi: float | None = None, *, required: bool = False, integer: bool = False) -> Any:
    """``mapping[key]`` as a float (int with ``integer``), checked against ``lo``..``hi``
    (inclusive); ``default`` when the key is absent. An explicit ``null`` also gives ``default``."""
    where = join(path, key)
    value = mapping.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise fail(where, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value.strip().lstrip("+"))
            except ValueError:
                raise fail(where, f"must be a number, got {_type_name(value)}") from None
        else:
            raise fail(where, f"must be a number, got {_type_name(value)}")
    if not math.isfinite(value):
        raise fail(where, f"must be a finite number, got {value}")
    if integer:
        if float(value) != int(value):
            raise fail(where, f"must be a whole number, got {value}")
        value = int(value)
    else:
        value = float(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            raise fail(where, f"must be between {_num(lo)} and {_num(hi)}, got {_num(value)}")
        if lo is not None:
            raise fail(where, f"must be at least {_num(lo)}, got {_num(value)}")
        raise fail(where, f"must be at most {_num(hi)}, got {_num(value)}")
    return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def get_bool(mapping: Mapping, key: str, path: str, default: bool | None = False) -> bool | None:
    value = mapping.get(key, _MISSING)
    if value is _MISSING or value is None:
        return default
    if not isinstance(value, bool):
        raise fail(join(path, key), f"must be true or false, got {_type_name(value)}")
    return value


def get_str(mapping: Mapping, key: str, path: str, default: str | None = None, *,
            required: bool = False, choices: Sequence[str] | None = None) -> str | None:
    where = join(path, key)
    value = mapping.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise fail(where, "is required" + (f" (one of: {', '.join(choices)})" if choices else ""))
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise fail(where, f"must be text, got {_type_name(value)}")
    if choices is not None and value not in choices:
        raise fail(where, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def get_list(mapping: Mapping, key: str, path: str) -> list:
    """``mapping[key]`` as a list; absent or ``null`` gives ``[]``."""
    value = mapping.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(join(path, key), f"must be a list, got {_type_name(value)}")
    return value


def get_path(mapping: Mapping, key: str, path: str, base: Path | None, *, required: bool = False,
             must_exist: bool = False, kind: str = "file") -> Path | None:
    """A filesystem path; relative paths resolve against ``base`` (the project file's folder)."""
    text = get_str(mapping, key, path, required=required)
    if text is None:
        return None
    p = Path(os.path.expanduser(text))
    if not p.is_absolute() and base is not None:
        p = base / p
    if must_exist:
        if not p.exists():
            raise fail(join(path, key), f"no such {kind}: {p}")
        if kind == "folder" and not p.is_dir():
            raise fail(join(path, key), f"{p} is not a folder")
        if kind == "file" and p.is_dir():
            raise fail(join(path, key), f"{p} is a folder, not a file")
    return p


def parse_time(value: Any, path: str) -> float:
    """Seconds from a number (``12.5``) or text: ``"12.5"``, ``"m:ss(.fff)"``, ``"h:mm:ss(.fff)"``.

    Seconds and minutes after the first field must be below 60 (``"1:75"`` is refused).
    """
    if isinstance(value, bool) or value is None:
        raise fail(path, f"must be a time in seconds or \"m:ss\", got {_type_name(value)}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        m = _TIME_RE.match(text)
        if m:
            hours = int(m.group(1)) if m.group(1) else 0
            minutes = int(m.group(2))
            secs = float(m.group(3))
            if secs >= 60 or (m.group(1) and minutes >= 60):
                raise fail(path, f"{value!r} is not a valid time (fields after the first must be below 60)")
            seconds = hours * 3600 + minutes * 60 + secs
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise fail(path, f"must be a time in seconds or \"m:ss(.fff)\" / \"h:mm:ss\", got {value!r}") from None
    else:
        raise fail(path, f"must be a time in seconds or \"m:ss\", got {_type_name(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise fail(path, f"must be a time of 0 or more, got {value!r}")
    return seconds


def format_time(seconds: float) -> str:
    """``m:ss.fff`` for messages."""
    m, s = divmod(seconds, 60.0)
    return f"{int(m)}:{s:06.3f}"


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with ``yaml.safe_load``; missing files, syntax errors and
    non-mapping documents are :class:`ConfigError` naming the file (and line)."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such project file")
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a project file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: invalid YAML{where}: {problem}") from exc
    if data is None:
        raise ConfigError(f"{p}: the project file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: must hold a mapping of keys (stems:, tracks:, ...), got {_type_name(data)}")
    return data


def load_file(path: str | os.PathLike, parse: Callable[..., T]) -> T:
    """:func:`load_yaml` then ``parse(data, folder_of_the_file, path=path)``; a
    :class:`ConfigError` from ``parse`` gets the file name in front of the key path."""
    path = Path(path)
    data = load_yaml(path)
    try:
        return parse(data, path.resolve().parent, path=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
