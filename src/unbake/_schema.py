"""The schema library behind every file format users write (remix and mash-up projects, the
training config, the model catalogue): a pydantic base model, value types that carry their
ranges, one formatter that turns a pydantic ``ValidationError`` into a :class:`ConfigError`
reading ``key.path[0].sub: message``, and a YAML reader that refuses hostile files.

A format is declared once, as :class:`ConfigModel` subclasses whose fields say type, range
(``Annotated[float, Number(-1, 1)]``), default and documentation (``Field(description=...)``);
templates and defaults served to front ends are derived from the same declaration.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError, core_schema

from .errors import ConfigError

M = TypeVar("M", bound=BaseModel)

# Bounds on what a YAML file may hold: far beyond any real project, far below what exhausts
# the parser's recursion or the memory of a process.
MAX_YAML_BYTES = 8 << 20
MAX_YAML_DEPTH = 64
MAX_INT_DIGITS = 30
_TIME_RE = re.compile(r"^(?:(\d+):)?(\d+):(\d{1,2}(?:\.\d*)?)$")


# ------------------------------------------------------------------------------ messages


def join(path: str, key: str | int) -> str:
    """The path of ``key`` inside ``path``: ``a.b``, or ``a[3]`` for list indices."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def fail(path: str, message: str) -> ConfigError:
    """A :class:`ConfigError` reading ``path: message`` (returned so callers ``raise`` it)."""
    return ConfigError(f"{path or 'project'}: {message}")


def describe(value: Any) -> str:
    """A value as a message names it: ``the text 'left'``, ``a list``, ``nothing (null)``."""
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
    if isinstance(value, int) and abs(value) >= 10 ** MAX_INT_DIGITS:
        return f"a {len(str(abs(value)))}-digit number"
    return f"{value!r}"


def invalid(message: str, key: str | int | Sequence[str | int] | None = None) -> PydanticCustomError:
    """The error a validator raises; ``key`` (or a list of keys and indices) extends the
    location, for a key inside the mapping being checked."""
    return PydanticCustomError("config", "{message}", {"message": message, "key": key})


_PYDANTIC_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
}


def config_error(exc: ValidationError, path: str = "", root: str = "project") -> ConfigError:
    """The first error of ``exc`` as ``path.loc: message`` (one line, as a user reads it);
    an error of the whole document is named ``root``."""
    err = exc.errors(include_url=False)[0]
    where = path
    for part in err["loc"]:
        where = join(where, part)
    ctx = err.get("ctx") or {}
    if err["type"] == "config":
        key = ctx.get("key")
        for part in (key if isinstance(key, (list, tuple)) else () if key is None else (key,)):
            where = join(where, part)
        message = ctx["message"]
    else:
        message = _PYDANTIC_MESSAGES.get(err["type"]) or err["msg"][:1].lower() + err["msg"][1:]
    return ConfigError(f"{where or root}: {message}")


# ------------------------------------------------------------------------------ value types


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class ValueType:
    """A value type for ``Annotated[...]``: ``check`` replaces pydantic's own validation, so
    the messages are ours; ``json`` is its JSON schema (for front ends and OpenAPI)."""

    json: ClassVar[dict] = {}

    def check(self, value: Any, info: ValidationInfo) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def json_schema(self) -> dict:
        return dict(self.json)

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.with_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(self, schema, handler):
        return self.json_schema()


@dataclass(frozen=True)
class Number(ValueType):
    """A finite number in ``lo``..``hi`` (inclusive; None: unbounded); ``integer``: a whole
    number, returned as ``int``. Numeric text (``"3"``, ``"+3"``) is read as a number."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    positive: bool = False  # above 0 (``lo`` is then the least allowed value, if any)

    def check(self, value: Any, info: ValidationInfo | None = None) -> float | int:
        if isinstance(value, str):
            try:
                number = float(value.strip().lstrip("+"))
            except ValueError:
                raise invalid(f"must be a number, got {describe(value)}") from None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # a many-digit integer
                raise invalid(f"must be a finite number, got {describe(value)}") from None
        else:
            raise invalid(f"must be a number, got {describe(value)}")
        if not math.isfinite(number):
            raise invalid(f"must be a finite number, got {number}")
        if self.integer and not number.is_integer():
            raise invalid(f"must be a whole number, got {number:g}")
        if self.positive and number <= 0:
            raise invalid(f"must be positive, got {_num(number)}")
        lo, hi = self.lo, self.hi
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            if lo is not None and hi is not None:
                raise invalid(f"must be between {_num(lo)} and {_num(hi)}, got {_num(number)}")
            if lo is not None:
                raise invalid(f"must be at least {_num(lo)}, got {_num(number)}")
            raise invalid(f"must be at most {_num(hi)}, got {_num(number)}")
        return int(number) if self.integer else number

    def json_schema(self) -> dict:
        d: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.positive:
            d["exclusiveMinimum"] = 0
        if self.lo is not None:
            d["minimum"] = self.lo
        if self.hi is not None:
            d["maximum"] = self.hi
        return d

    def range_text(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"{_num(self.lo)}..{_num(self.hi)}"
        if self.positive and self.hi is None:
            return "> 0"
        if self.lo is not None:
            return f">= {_num(self.lo)}"
        return f"<= {_num(self.hi)}" if self.hi is not None else ""


@dataclass(frozen=True)
class Flag(ValueType):
    """``true`` or ``false`` (YAML booleans only: ``"yes"`` in quotes is text, not a flag)."""

    json: ClassVar[dict] = {"type": "boolean"}

    def check(self, value: Any, info: ValidationInfo | None = None) -> bool:
        if not isinstance(value, bool):
            raise invalid(f"must be true or false, got {describe(value)}")
        return value


@dataclass(frozen=True)
class Text(ValueType):
    """Text, optionally one of ``choices``; numbers are taken as their text (``bit_depth: 24``)."""

    choices: tuple[str, ...] | None = None

    def check(self, value: Any, info: ValidationInfo | None = None) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise invalid(f"must be text, got {describe(value)}")
        if self.choices is not None and value not in self.choices:
            raise invalid(f"must be one of {', '.join(self.choices)}, got {value!r}")
        return value

    def json_schema(self) -> dict:
        return {"type": "string", **({"enum": list(self.choices)} if self.choices else {})}


def time_seconds(value: Any) -> float:
    """Seconds from a number (``12.5``) or text: ``"12.5"``, ``"m:ss(.fff)"``, ``"h:mm:ss(.fff)"``.
    Fields after the first must be below 60 (``"1:75"`` is refused). Raises :func:`invalid`."""
    if isinstance(value, bool) or value is None:
        raise invalid(f"must be a time in seconds or \"m:ss\", got {describe(value)}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise invalid(f"must be a time of 0 or more, got {describe(value)}") from None
    elif isinstance(value, str):
        text = value.strip()
        m = _TIME_RE.match(text)
        if m and max(len(g or "") for g in m.groups()) <= MAX_INT_DIGITS:
            hours = int(m.group(1)) if m.group(1) else 0
            minutes = int(m.group(2))
            secs = float(m.group(3))
            if secs >= 60 or (m.group(1) and minutes >= 60):
                raise invalid(f"{value!r} is not a valid time (fields after the first must be below 60)")
            seconds = hours * 3600 + minutes * 60 + secs
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise invalid(f"must be a time in seconds or \"m:ss(.fff)\" / \"h:mm:ss\", got {value!r}") from None
    else:
        raise invalid(f"must be a time in seconds or \"m:ss\", got {describe(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise invalid(f"must be a time of 0 or more, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Time(ValueType):
    """A time in seconds (see :func:`time_seconds`), at most ``max_s``; ``signed`` also takes
    ``-1.5`` / ``"-0:02"``; ``positive`` refuses 0."""

    max_s: float | None = None
    signed: bool = False
    positive: bool = False
    json: ClassVar[dict] = {"anyOf": [{"type": "number"}, {"type": "string"}]}

    def check(self, value: Any, info: ValidationInfo | None = None) -> float:
        sign = 1.0
        if self.signed:
            if isinstance(value, str) and value.strip().startswith("-"):
                value, sign = value.strip()[1:], -1.0
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                value, sign = -value, -1.0
        seconds = time_seconds(value)
        if self.positive and seconds <= 0:
            raise invalid("must be longer than 0 s")
        if self.max_s is not None and seconds > self.max_s:
            raise invalid(f"must be at most {format_time(self.max_s)} ({_num(self.max_s)} s), got {value!r}")
        return sign * seconds


@dataclass(frozen=True)
class Items(ValueType):
    """A list (``null`` is the empty list) whose items pydantic validates with the annotated
    type; ``message`` says what the list should hold when it is something else."""

    message: str = "must be a list"
    non_empty: bool = False

    def __get_pydantic_core_schema__(self, source, handler):
        def check(value: Any) -> Any:
            if value is None and not self.non_empty:
                return []
            if not isinstance(value, list) or (self.non_empty and not value):
                raise invalid(self.message)
            return value

        return core_schema.no_info_before_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema, handler):
        return handler(schema)


@dataclass(frozen=True)
class FilePath(ValueType):
    """A filesystem path; relative paths resolve against the file's folder (the validation
    context's ``base``). ``kind``: ``"file"``, ``"folder"`` or ``"any"`` must exist; None: any path."""

    kind: str | None = None
    json: ClassVar[dict] = {"type": "string"}

    def check(self, value: Any, info: ValidationInfo | None = None) -> Path:
        text = os.fspath(value) if isinstance(value, os.PathLike) else Text().check(value)
        p = Path(os.path.expanduser(text))
        base = (info.context or {}).get("base") if info is not None else None
        if not p.is_absolute() and base is not None:
            p = Path(base) / p
        if self.kind is not None:
            if not p.exists():
                noun = {"any": "file or folder"}.get(self.kind, self.kind)
                raise invalid(f"no such {noun}: {p}")
            if self.kind == "folder" and not p.is_dir():
                raise invalid(f"{p} is not a folder")
            if self.kind == "file" and p.is_dir():
                raise invalid(f"{p} is a folder, not a file")
        return p


def internal(default: Any) -> Any:
    """A model field that is an attribute of the object, not a key of the file."""
    from pydantic import Field

    return Field(default, json_schema_extra={"internal": True})


def is_internal(field) -> bool:
    return isinstance(field.json_schema_extra, dict) and bool(field.json_schema_extra.get("internal"))


def value_type(field) -> ValueType | None:
    """The :class:`ValueType` annotation of a pydantic field (also inside ``X | None``), if any."""
    found = list(field.metadata)
    for arg in getattr(field.annotation, "__args__", ()):
        found += getattr(arg, "__metadata__", ())
    return next((m for m in found if isinstance(m, ValueType)), None)


# ------------------------------------------------------------------------------ models


class ConfigModel(BaseModel):
    """Base of every file-format model.

    Validating user data (:func:`validate`, which always passes a context) refuses unknown keys
    with a suggestion and the list of allowed ones, treats an explicit ``null`` as "not given"
    (except for the fields in ``keep_null``) and checks that keys excluding each other
    (``exclusive``) are not both given. Fields declared with :func:`internal` are attributes of
    the object, not keys of the file.
    """

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True,
                              arbitrary_types_allowed=True)

    keep_null: ClassVar[tuple[str, ...]] = ()
    # (key reported, the other key, message)
    exclusive: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    @classmethod
    def file_keys(cls) -> list[str]:
        """The keys a file may use here, in declaration order."""
        return [f.alias or name for name, f in cls.model_fields.items() if not is_internal(f)]

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, Mapping):
            raise invalid(f"must be a mapping of keys to values, got {describe(data)}")
        if info.context is not None:  # a user's file or request: the keys are the file's keys
            allowed = cls.file_keys()
            for key in data:
                if not isinstance(key, str):
                    raise invalid("keys must be text", str(key))
            unknown = [k for k in data if k not in allowed]
            if unknown:
                raise cls.unknown_keys(unknown, allowed)
            for key, other, message in cls.exclusive:
                if key in data and other in data:
                    raise invalid(message, key)
            for name, field in cls.model_fields.items():
                key = field.alias or name
                if field.is_required() and data.get(key) is None:
                    vt = value_type(field)
                    choices = getattr(vt, "choices", None)
                    raise invalid("is required" + (f" (one of: {', '.join(choices)})" if choices else ""), key)
        data = {k: v for k, v in data.items() if v is not None or k in cls.keep_null}
        return cls.before(data)

    @classmethod
    def unknown_keys(cls, unknown: list[str], allowed: list[str]) -> PydanticCustomError:
        """The error for keys the format does not have: the first, with a suggestion."""
        key = unknown[0]
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return invalid(f"unknown key{hint} (allowed: {', '.join(allowed)})", key)

    @classmethod
    def before(cls, data: dict) -> dict:
        """Checks across keys of the raw mapping, after the key checks (for subclasses)."""
        return data


def validate(model: type[M] | Any, data: Any, path: str = "", *, base: Path | None = None,
             root: str = "project", **context: Any) -> Any:
    """``data`` validated as ``model`` (a model class, or any type pydantic takes); errors are a
    :class:`ConfigError` whose key path starts with ``path`` (``root`` names the whole
    document). Relative paths resolve against ``base``; ``context`` reaches the validators."""
    try:
        return _adapter(model).validate_python(data, context={"base": base, **context})
    except ValidationError as exc:
        raise config_error(exc, path, root) from None


@lru_cache(maxsize=None)
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp)


@lru_cache(maxsize=None)
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter:
    from typing import Annotated

    field = model.model_fields[name]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)


def field_value(model: type[BaseModel], name: str, value: Any, path: str = "") -> Any:
    """``value`` checked as field ``name`` of ``model`` (errors name ``path.<its key>``)."""
    field = model.model_fields[name]
    try:
        return _field_adapter(model, name).validate_python(value, context={})
    except ValidationError as exc:
        raise config_error(exc, join(path, field.alias or name)) from None


def neutral(model: type[BaseModel]) -> dict[str, Any]:
    """The model's defaults as plain JSON-able data, under the file's key names."""
    return model().model_dump(mode="json", by_alias=True,
                              exclude={n for n, f in model.model_fields.items() if is_internal(f)})


# ------------------------------------------------------------------------------ times


def parse_time(value: Any, path: str) -> float:
    """Seconds from a time value (see :func:`time_seconds`); errors name ``path``."""
    try:
        return time_seconds(value)
    except PydanticCustomError as exc:
        raise fail(path, exc.context["message"]) from None


def format_time(seconds: float) -> str:
    """``m:ss.fff`` for messages."""
    m, s = divmod(seconds, 60.0)
    return f"{int(m)}:{s:06.3f}"


# ------------------------------------------------------------------------------ YAML


def parse_yaml(text: str, where: str, *, syntax: str = "invalid YAML", loader: type | None = None) -> Any:
    """``yaml.safe_load`` of ``text``, refusing files that are too large, too deeply nested or
    hold integers too long to be settings, as a :class:`ConfigError` naming ``where`` (a syntax
    error reads ``where: <syntax> at line L, column C: problem``). ``loader``: a subclass of
    ``yaml.SafeLoader`` (for a format with extra tags)."""
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{where}: too large for a settings file ({len(text)} characters; "
                          f"at most {MAX_YAML_BYTES})")
    try:
        # the composer and constructor recurse once per level: measure the depth first, from
        # the flat event stream
        if _depth(text) > MAX_YAML_DEPTH:
            raise ConfigError(f"{where}: nested more than {MAX_YAML_DEPTH} levels deep")
        loader = (loader or yaml.SafeLoader)(text)
        try:
            node = loader.get_single_node()
            _check_ints(node, where)
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: {syntax}{at}: {problem}") from None
    except RecursionError:  # aliases of aliases beyond the scan's view
        raise ConfigError(f"{where}: nested too deeply") from None


def _depth(text: str) -> int:
    """The deepest collection nesting of the document (stops counting past the limit)."""
    import yaml

    probe = yaml.SafeLoader(text)
    depth = deepest = 0
    try:
        while probe.check_event():
            event = probe.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                deepest = max(deepest, depth)
                if deepest > MAX_YAML_DEPTH:
                    break
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    finally:
        probe.dispose()
    return deepest


def _check_ints(node, where: str) -> None:
    """Integers longer than :data:`MAX_INT_DIGITS` are refused before Python builds them."""
    if node is None:
        return
    stack = [node]
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.tag == "tag:yaml.org,2002:int":
            digits = sum(ch.isdigit() for ch in n.value)
            if digits > MAX_INT_DIGITS:
                line = n.start_mark.line + 1
                raise ConfigError(f"{where}: a {digits}-digit number at line {line} "
                                  f"(at most {MAX_INT_DIGITS} digits)")
        elif isinstance(n.value, list):
            for item in n.value:
                stack.extend(item if isinstance(item, tuple) else (item,))


def load_yaml(path: str | os.PathLike, what: str = "project file", *,
              shape: str = "(stems:, tracks:, ...)", syntax: str = "invalid YAML") -> Any:
    """Read a YAML mapping file; missing files, syntax errors, hostile content and documents
    that are not a mapping are :class:`ConfigError` naming the file (and line)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such {what}")
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a {what}")
    try:
        if p.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{p}: too large for a {what} ({p.stat().st_size} bytes)")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from exc
    data = parse_yaml(text, str(p), syntax=syntax)
    if data is None:
        raise ConfigError(f"{p}: the {what} is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: must hold a mapping of keys {shape}, got {describe(data)}")
    return data


def load_settings_file(path: str | os.PathLike, parse, what: str = "project file"):
    """:func:`load_yaml` then ``parse(data, folder_of_the_file, path=path)``; a
    :class:`ConfigError` from ``parse`` gets the file name in front of the key path."""
    path = Path(path)
    data = load_yaml(path, what)
    try:
        return parse(data, path.resolve().parent, path=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


__all__ = ["ConfigModel", "FilePath", "ValueType", "Flag", "Items", "Number", "Text", "Time", "config_error", "describe",
           "fail", "field_value", "format_time", "internal", "invalid", "is_internal", "join", "load_settings_file", "load_yaml", "neutral",
           "parse_time", "parse_yaml", "time_seconds", "validate", "value_type"]
