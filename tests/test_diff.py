"""The page's JSON of a state: which fields skip the null walk, and small dict patches."""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any, Optional

from pydantic import BaseModel, PlainSerializer, field_serializer
from sqlmodel import Field
from starlette.testclient import TestClient

from faststate import ReactiveState, StateScope, event
from faststate._diff import flat_json_fields, null_free_fields
from faststate._state import begin_tracking, diff_tracked, end_tracking, public_state
from faststate.testing import fire
from tests.apps import state_app


class Tone(Enum):
    LOW = "low"
    HIGH = "high"


class Ratio(Enum):
    HALF = 0.5


class Point(BaseModel):
    x: int = 0


class Shapes(ReactiveState):
    """Fields the null walk cannot change, then fields it may."""

    numbers: list[int] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    optional: Optional[list[int]] = None  # noqa: UP045 (the spelling is what is tested)
    union: list[str] | None = None
    constrained: Annotated[list[int], Field(min_length=0)] = Field(default_factory=list)
    tones: list[Tone] = Field(default_factory=list)
    grid: list[list[int]] = Field(default_factory=list)
    nullable_items: list[int | None] = Field(default_factory=list)  # null items delete nothing
    rows: list[dict[str, str]] = Field(default_factory=list)
    score: float = 0.0  # the whole value is checked without a walk
    # Walked: a null member or a float below the top may appear.
    floats: list[float] = Field(default_factory=list)
    nullable_members: dict[str, int | None] = Field(default_factory=dict)
    float_members: dict[str, float] = Field(default_factory=dict)
    ratios: list[Ratio] = Field(default_factory=list)
    points: list[Point] = Field(default_factory=list)
    anything: list[Any] = Field(default_factory=list)
    serialised: Annotated[list[int], PlainSerializer(lambda v: [None for _ in v])] = Field(
        default_factory=list
    )
    custom: list[int] = Field(default_factory=list)

    @field_serializer("custom")
    def _nulls(self, value: list[int]) -> list[None]:
        return [None for _ in value]


def test_null_walk_is_skipped_only_where_it_would_change_nothing() -> None:
    assert null_free_fields(Shapes) == {
        "id",
        "numbers",
        "counts",
        "optional",
        "union",
        "constrained",
        "tones",
        "grid",
        "nullable_items",
        "rows",
        "score",
    }


def test_values_the_page_cannot_hold_are_still_replaced() -> None:
    state = Shapes(
        optional=None,
        score=math.inf,
        floats=[1.5, math.nan],
        nullable_members={"a": None, "b": 1},
        float_members={"a": math.inf},
        nullable_items=[None, 1],
        anything=[{"a": None}, math.nan],
    )
    shown = public_state(state)
    assert shown["optional"] == "" and shown["union"] == "" and shown["score"] == ""
    assert shown["floats"] == [1.5, None]
    assert shown["nullable_members"] == {"a": "", "b": 1}
    assert shown["float_members"] == {"a": ""}
    assert shown["nullable_items"] == [None, 1]
    assert shown["anything"] == [{"a": ""}, None]


def test_json_of_flat_collections_is_a_copy_only_where_it_equals_pydantic_json() -> None:
    # Tuples and sets become lists, enums their values, int keys strings,
    # floats may be NaN: those go through pydantic.
    assert flat_json_fields(Shapes) == {
        "id",
        "numbers",
        "counts",
        "optional",
        "union",
        "constrained",
        "nullable_items",
    }
    state = Shapes(numbers=[1, 2], counts={"a": 1}, union=["é"], nullable_items=[None])
    shown = public_state(state)
    assert shown == state.__pydantic_serializer__.to_python(state, mode="json") | {"optional": ""}


def test_a_patch_holds_a_copy_of_a_flat_list_not_the_live_one() -> None:
    # The patch may be sent after the next event changed the list in place,
    # and a checkpoint must not compare the live list with itself.
    state = Shapes(numbers=[1])
    tracker = begin_tracking(state)
    state.numbers.append(2)
    patch = diff_tracked(state, tracker, checkpoint=True)
    state.numbers.append(3)
    assert patch == {"numbers": [1, 2]}
    assert diff_tracked(state, tracker, checkpoint=True) == {"numbers": [1, 2, 3]}
    state.counts["a"] = 1
    assert diff_tracked(state, tracker, checkpoint=True) == {"counts": {"a": 1}}
    state.counts["a"] = 2
    assert diff_tracked(state, tracker) == {"counts": {"a": 2}}
    end_tracking(state)


def _tracked(state: ReactiveState, change: Any) -> dict[str, Any]:
    tracker = begin_tracking(state)
    change(state)
    end_tracking(state)
    return diff_tracked(state, tracker)


def test_one_key_of_a_large_dict_patches_that_key_only() -> None:
    state = Shapes(counts={f"k{i}": i for i in range(100_000)})
    patch = _tracked(state, lambda s: s.counts.update(k5=-1, new=1))
    assert patch == {"counts": {"k5": -1, "new": 1}}


class Tally(ReactiveState):
    counts: dict[str, int] = Field(default_factory=lambda: {f"k{i}": 0 for i in range(100_000)})
    items: list[int] = Field(default_factory=lambda: list(range(100_000)))

    @event
    def bump(self, key: str) -> None:
        self.counts[key] += 1

    @event
    def append(self, item: int) -> None:
        self.items.append(item)


def test_one_key_changed_in_a_dict_of_100000_sends_a_tiny_patch() -> None:
    with TestClient(state_app({Tally: StateScope.SESSION})) as client:
        answer = fire(client, "/Tally/bump", key="k99999")
        assert answer.signals == {"Tally": {"counts": {"k99999": 1}}}
        assert len(answer.text) < 200


def test_a_list_is_replaced_whole_as_json_merge_patch_has_it() -> None:
    with TestClient(state_app({Tally: StateScope.SESSION})) as client:
        answer = fire(client, "/Tally/append", item=-1)
        items = answer.signals["Tally"]["items"]
        assert len(items) == 100_001 and items[-1] == -1
