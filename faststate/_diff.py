"""The page's JSON of a state, and JSON Merge Patches (RFC 7396) between versions of it."""

from __future__ import annotations

import math
from functools import cache
from typing import Any, Final

from pydantic import BaseModel

_PLAIN_TYPES: Final = (int, str, bool, type(None))


def is_plain(value: Any) -> bool:
    """A value whose JSON form is itself (checked by exact type: no subclasses)."""
    kind = type(value)
    return kind in _PLAIN_TYPES or (kind is float and math.isfinite(value))


@cache
def plain_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Public fields that pydantic serialises without any customisation.

    For those, a plain value (``is_plain``) is its own JSON form, which
    spares a serializer call per touched field on every event.
    """
    decorators = cls.__pydantic_decorators__
    if decorators.model_serializers:
        return frozenset()
    customised = {
        name
        for decorator in decorators.field_serializers.values()
        for name in decorator.info.fields
    }
    return frozenset(
        name
        for name, info in cls.__pydantic_fields__.items()
        if info.exclude is not True and not info.metadata and name not in customised
    )


def dump_public(state: BaseModel, include: set[str] | None = None) -> dict[str, Any]:
    """JSON form of public values as the page receives them.

    ``None`` becomes ``""``: to Datastar a ``null`` member means "delete this
    signal", and the 1.0 client then leaves elements bound to it showing the
    old value even after a new one arrives.  An empty string shows nothing
    and keeps the binding alive.
    """
    # The model's own serializer, without SQLModel's model_dump wrapper.
    dumped: dict[str, Any] = state.__pydantic_serializer__.to_python(
        state, mode="json", include=include
    )
    return {name: _without_nulls(value) for name, value in dumped.items()}


def dump_fields(state: BaseModel, values: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """``dump_public`` of ``names``, with plain values taken as they are."""
    plain = plain_fields(type(state))
    dumped: dict[str, Any] = {}
    rest: set[str] = set()
    for name in names:
        value = values.get(name)
        if name in plain and is_plain(value):
            dumped[name] = "" if value is None else value
        else:
            rest.add(name)
    if rest:
        dumped.update(dump_public(state, rest))
    return dumped


def _without_nulls(value: Any) -> Any:
    """A signal value the page can hold: no null members, no NaN or infinity.

    Non-finite floats are not JSON; they become what pydantic's JSON has for
    them (null), that is ``""`` as an object member and ``null`` in a list,
    where null deletes nothing.
    """
    if value is None or (type(value) is float and not math.isfinite(value)):
        return ""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_list_item(item) for item in value]
    return value


def _list_item(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        return None
    if isinstance(value, dict | list):
        return _without_nulls(value)
    return value


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON Merge Patch turning ``old`` into ``new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        patch: dict[str, Any] = {key: None for key in old if key not in new}
        for key, value in new.items():
            if key not in old:
                patch[key] = value
            elif old[key] != value:
                patch[key] = merge_diff(old[key], value)
        return patch
    return new


def compose_patches(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One merge patch doing what applying ``first`` then ``second`` does."""
    result = dict(first)
    for key, value in second.items():
        earlier = result.get(key)
        if isinstance(value, dict) and isinstance(earlier, dict):
            result[key] = compose_patches(earlier, value)
        else:
            result[key] = value
    return result
