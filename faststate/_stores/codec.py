"""Turning an instance into JSON for a store or database, and back.

Everything the server keeps is stored: public fields, ``Field(exclude=True)``
fields and private attributes (faststate's own ``_fs_*`` excepted).  Reading
is forgiving, so that deploying a changed class never strands a user:
unknown keys are ignored, missing ones take their defaults, and a record
that no longer validates yields ``None`` (the caller starts afresh).
"""

from __future__ import annotations

import json
import logging
import typing
from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from faststate._state import ReactiveState

logger = logging.getLogger("faststate")

S = TypeVar("S", bound=ReactiveState)


def encode(state: ReactiveState) -> str:
    """JSON of everything the instance keeps on the server."""
    cls = type(state)
    computed, excluded = _fields_plan(cls)
    if excluded:
        fields: dict[str, Any] = state.model_dump(mode="json", exclude=computed)
        for name in excluded:
            adapter = _field_adapter(cls, name)
            fields[name] = adapter.dump_python(state.__dict__[name], mode="json")
        fields_json = json.dumps(fields, separators=(",", ":"))
    else:
        # The usual case: pydantic writes the JSON itself, at a third of the
        # cost, and its serializer straight away (what ``model_dump_json``
        # calls, with every keyword spelled out: half the cost again).
        fields_json = cls.__pydantic_serializer__.to_json(state, exclude=computed).decode()
    private: dict[str, Any] = {}
    for name, value in (state.__pydantic_private__ or {}).items():
        try:
            private[name] = _private_adapter(cls, name).dump_python(value, mode="json")
        except PydanticSerializationError:
            logger.warning(
                "faststate: %s.%s is not JSON-serialisable; not stored", cls.__name__, name
            )
    private_json = json.dumps(private, separators=(",", ":")) if private else "{}"
    return f'{{"fields":{fields_json},"private":{private_json}}}'


def decode(cls: type[S], text: str | bytes) -> S | None:
    """The instance stored as ``text``, or None when it no longer fits ``cls``."""
    try:
        payload = json.loads(text)
        fields = payload["fields"]
        private = payload.get("private", {})
        state = cls.model_validate(_known(cls, fields))
        state_private = state.__pydantic_private__
        if state_private is not None:
            for name, value in private.items():
                if name in state_private:
                    state_private[name] = _private_adapter(cls, name).validate_python(value)
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        logger.warning(
            "faststate: stored %s no longer validates (%s); starting afresh",
            cls.__name__,
            exc.__class__.__name__,
        )
        return None
    return state


def _known(cls: type[ReactiveState], fields: Any) -> dict[str, Any]:
    if not isinstance(fields, dict):
        raise TypeError("stored fields must be an object")
    return {name: value for name, value in fields.items() if name in cls.__pydantic_fields__}


@cache
def _fields_plan(cls: type[ReactiveState]) -> tuple[set[str] | None, tuple[str, ...]]:
    """What ``encode`` leaves to pydantic's serializer: computed fields are not
    stored (None: none to leave out), and the ``Field(exclude=True)`` fields
    it would leave out are written separately."""
    computed = set(cls.__pydantic_computed_fields__) or None
    excluded = tuple(name for name, info in cls.__pydantic_fields__.items() if info.exclude is True)
    return computed, excluded


@cache
def _field_adapter(cls: type[ReactiveState], name: str) -> TypeAdapter[Any]:
    # Typed Any: pydantic's stubs have typed this argument differently release by release.
    annotation: Any = cls.__pydantic_fields__[name].annotation
    return TypeAdapter(annotation)


@cache
def _private_adapter(cls: type[ReactiveState], name: str) -> TypeAdapter[Any]:
    try:
        annotation = typing.get_type_hints(cls).get(name, Any)
    except (NameError, TypeError):  # an annotation that cannot be resolved here
        annotation = Any
    return TypeAdapter(annotation)
