"""The page's JSON of a state, and JSON Merge Patches (RFC 7396) between versions of it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from functools import cache
from types import UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel

_PLAIN_TYPES: Final = (int, str, bool, type(None))
# Types whose JSON form is a string, an integer or a boolean: never null, never a float.
_JSON_SCALARS: Final = frozenset(
    {int, bool, str, bytes, Decimal, date, datetime, time, timedelta, UUID}
)
# Where a value sits decides what _without_nulls would change about it.
_TOP, _MEMBER, _ITEM = "top", "member", "item"


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
    if cls.__pydantic_decorators__.model_serializers:
        return frozenset()
    customised = _with_field_serializers(cls)
    return frozenset(
        name
        for name, info in cls.__pydantic_fields__.items()
        if info.exclude is not True and not info.metadata and name not in customised
    )


def _with_field_serializers(cls: type[BaseModel]) -> set[str]:
    return {
        name
        for decorator in cls.__pydantic_decorators__.field_serializers.values()
        for name in decorator.info.fields
    }


def alternatives(annotation: Any) -> tuple[Any, ...] | None:
    """The types a value of ``annotation`` may have, unions and ``Annotated`` taken apart.

    ``None`` when an ``Annotated`` layer carries something that may change
    values (a validator or serializer): the declared type then says nothing
    certain about what is held or sent.  Constraints (``Field(min_length=1)``)
    and markers such as ``Bindable`` only check or label, and are looked through.
    """
    origin = get_origin(annotation)
    if origin is Annotated:
        if not inert(annotation.__metadata__):
            return None
        return alternatives(annotation.__origin__)
    if origin is Union or origin is UnionType:
        kinds: list[Any] = []
        for member in get_args(annotation):
            inner = alternatives(member)
            if inner is None:
                return None
            kinds.extend(inner)
        return tuple(kinds)
    return (annotation,)


def inert(metadata: Iterable[Any]) -> bool:
    """Metadata pydantic only checks values against: none of it may replace them.

    Validators, serializers and ``SkipValidation`` all hook into pydantic's
    schema through ``__get_pydantic_core_schema__``; constraints do not.
    """
    return not any(hasattr(item, "__get_pydantic_core_schema__") for item in metadata)


@cache
def _serialised_as_declared(cls: type[BaseModel]) -> frozenset[str]:
    """Public fields whose JSON form follows from their declared type alone.

    No serializer of the model or of the field, no metadata that may replace
    values, not excluded (always or sometimes).
    """
    if cls.__pydantic_decorators__.model_serializers or cls.model_config.get("json_encoders"):
        return frozenset()
    customised = _with_field_serializers(cls)
    return frozenset(
        name
        for name, info in cls.__pydantic_fields__.items()
        if name not in customised
        and info.exclude is not True
        and getattr(info, "exclude_if", None) is None  # pydantic >= 2.11
        and inert(info.metadata)
    )


@cache
def null_free_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Public fields whose page JSON ``_without_nulls`` would leave as it is, below the top.

    Decided once per class from the declared types, so that a collection of
    100,000 integers is not walked item by item twice per event.  The top
    level (a ``None`` or a non-finite float as the whole value) costs one
    check and is still made right for every field.
    """
    return frozenset(
        name
        for name in _serialised_as_declared(cls)
        if _null_free(cls.__pydantic_fields__[name].annotation, _TOP)
    )


@cache
def flat_json_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Public fields holding a list or dict whose page JSON is a copy of it.

    ``list[int]``, ``list[str | None]``, ``dict[str, int]``: one container of
    integers, strings and booleans (null items in lists), string keys.  Their
    JSON form is ``value.copy()``, which spares pydantic's serializer a walk
    of every item, twice per event (ten times ``list.copy`` on 100,000
    integers, thirty times ``dict.copy``).
    """
    return frozenset(
        name
        for name in _serialised_as_declared(cls)
        if all_of(cls.__pydantic_fields__[name].annotation, _flat_json_kind)
    )


def all_of(annotation: Any, test: Callable[[Any], bool]) -> bool:
    """Whether every type ``annotation`` admits passes ``test`` (see ``alternatives``)."""
    kinds = alternatives(annotation)
    return kinds is not None and all(test(kind) for kind in kinds)


def _flat_json_kind(kind: Any) -> bool:
    origin, args = get_origin(kind), get_args(kind)
    if origin is list and len(args) == 1:
        return all_of(args[0], _json_item)
    if origin is dict and len(args) == 2:
        return all_of(args[0], lambda key: key is str) and all_of(args[1], _json_member)
    # The whole value: None and scalars are not copied (``type(value)`` is checked).
    return kind is type(None) or _json_member(kind)


def _json_member(kind: Any) -> bool:
    """A type whose values are their own JSON, and not null."""
    if get_origin(kind) is Literal:
        return all(type(value) in (int, str, bool) for value in get_args(kind))
    return kind in (int, str, bool)


def _json_item(kind: Any) -> bool:
    """A list item type whose values are their own JSON (a null item deletes nothing)."""
    return kind is type(None) or _json_member(kind)


def _null_free(annotation: Any, where: str) -> bool:
    return all_of(annotation, lambda kind: _null_free_kind(kind, where))


def _null_free_kind(kind: Any, where: str) -> bool:
    if kind is float:  # NaN and infinity: only the whole value is checked without a walk
        return where == _TOP
    if kind is type(None):  # null members delete signals; null list items do not
        return where != _MEMBER
    if kind in _JSON_SCALARS:
        return True
    if isinstance(kind, type) and issubclass(kind, Enum):
        return all(type(member.value) in _JSON_SCALARS for member in kind)
    origin, args = get_origin(kind), get_args(kind)
    if origin is Literal:
        return all(
            _null_free_kind(type(value.value if isinstance(value, Enum) else value), where)
            for value in args
        )
    if origin in (list, set, frozenset) and len(args) == 1:
        return _null_free(args[0], _ITEM)
    if origin is tuple and args:
        return all(arg is Ellipsis or _null_free(arg, _ITEM) for arg in args)
    if origin is dict and len(args) == 2:  # keys become strings; values are members
        return _null_free(args[1], _MEMBER)
    return False  # Any, models, unparameterised containers, everything else


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
    null_free = null_free_fields(type(state))
    return {
        name: _whole(value) if name in null_free else _without_nulls(value)
        for name, value in dumped.items()
    }


def dump_fields(state: BaseModel, values: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """``dump_public`` of ``names``, with plain values taken as they are.

    A flat list or dict (``flat_json_fields``) is copied rather than taken:
    the patch holding it may be sent after a later event changed it in place.
    """
    cls = type(state)
    plain = plain_fields(cls)
    dumped: dict[str, Any] = {}
    rest: set[str] = set()
    for name in names:
        value = values.get(name)
        if name in plain and is_plain(value):
            dumped[name] = "" if value is None else value
        elif (type(value) is list or type(value) is dict) and name in flat_json_fields(cls):
            dumped[name] = value.copy()
        else:
            rest.add(name)
    if rest:
        dumped.update(dump_public(state, rest))
    return dumped


def _whole(value: Any) -> Any:
    """``_without_nulls`` of the value itself, not of what it holds."""
    if value is None or (type(value) is float and not math.isfinite(value)):
        return ""
    return value


def _without_nulls(value: Any) -> Any:
    """A signal value the page can hold: no null members, no NaN or infinity.

    Non-finite floats are not JSON; they become what pydantic's JSON has for
    them (null), that is ``""`` as an object member and ``null`` in a list,
    where null deletes nothing.
    """
    value = _whole(value)
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
