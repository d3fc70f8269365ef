"""Dataclasses from parsed JSON, with every field's type checked: the model config and the bundle
manifest are read through here, so a missing, unknown or mistyped field is one clear error naming
its path (e.g. `stages.decoder.inputs[0].shape`), never a KeyError deep in the code."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class FieldError(ValueError):
    """A value that does not fit its declared type; the message starts with the field's path."""


def from_data(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from plain dicts/lists, checking each field against its type hint."""
    return _convert(cls, data, path or cls.__name__)


def _convert(hint: Any, value: Any, path: str) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, path)
            except FieldError as exc:
                errors.append(str(exc))
        raise FieldError(errors[0] if len(errors) == 1 else f"{path}: {_describe(value)} fits none of "
                         f"{' | '.join(_name(o) for o in options)}")
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise FieldError(f"{path}: expected a list, got {_describe(value)}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise FieldError(f"{path}: expected an object, got {_describe(value)}")
        key, item = typing.get_args(hint) or (str, Any)
        return {k: _convert(item, v, f"{path}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        raise FieldError(f"{path}: expected {_name(hint)}, got {_describe(value)}")
    return value


def _dataclass(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise FieldError(f"{path}: expected an object ({cls.__name__}), got {_describe(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise FieldError(f"{path}: unknown field(s) {', '.join(unknown)}")
    missing = [name for name, f in fields.items() if name not in value
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise FieldError(f"{path}: missing field(s) {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _convert(hints[name], v, f"{path}.{name}") for name, v in value.items()})


def _name(hint: Any) -> str:
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
