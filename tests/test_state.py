"""ReactiveState: change tracking, merge patches, rollback, private data."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    computed_field,
)
from sqlmodel import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import (
    Bindable,
    MemoryStore,
    ReactiveState,
    RedisStore,
    StateScope,
    StateStore,
    event,
    use_state,
)
from faststate._diff import merge_diff
from faststate._state import (
    begin_tracking,
    diff_tracked,
    end_tracking,
    public_state,
    rollback,
    shallow_copied_fields,
)
from faststate.testing import fire
from tests.apps import Counter, state_app


class Address(BaseModel):
    city: str = "Paris"
    zip: str = "75001"


class Profile(ReactiveState):
    name: str = "Ada"
    age: int = 36
    tags: list[str] = Field(default_factory=list)
    prefs: dict[str, Any] = Field(default_factory=lambda: {"theme": "dark", "lang": "en"})
    address: Address = Field(default_factory=Address)
    nickname: str | None = None
    password_hash: str = Field(default="s3cret-hash", exclude=True)
    _token: str = PrivateAttr(default="private-token")
    _cache: list[int] = PrivateAttr(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tag_count(self) -> int:
        return len(self.tags)

    @event
    def rename(self, name: str) -> None:
        self.name = name


def run(state: ReactiveState, change: Any) -> dict[str, Any]:
    tracker = begin_tracking(state)
    change(state)
    end_tracking(state)
    return diff_tracked(state, tracker)


def test_untouched_event_produces_empty_patch() -> None:
    assert run(Profile(), lambda s: None) == {}


def test_assignment_patch_holds_only_changed_field() -> None:
    assert run(Profile(), lambda s: setattr(s, "age", 37)) == {"age": 37}


def test_assigning_equal_value_is_not_a_change() -> None:
    assert run(Profile(), lambda s: setattr(s, "name", "Ada")) == {}


def test_in_place_list_mutation_is_seen_and_updates_computed_field() -> None:
    patch = run(Profile(), lambda s: s.tags.append("x"))
    assert patch == {"tags": ["x"], "tag_count": 1}


def test_nested_dict_change_is_a_nested_merge_patch() -> None:
    def change(s: Profile) -> None:
        s.prefs["theme"] = "light"
        del s.prefs["lang"]
        s.prefs["font"] = "mono"

    assert run(Profile(), change) == {"prefs": {"theme": "light", "lang": None, "font": "mono"}}


def test_nested_model_change_patches_only_changed_key() -> None:
    def change(s: Profile) -> None:
        s.address.city = "Lyon"

    assert run(Profile(), change) == {"address": {"city": "Lyon"}}


def test_none_is_sent_as_empty_string_so_bindings_survive() -> None:
    # Datastar deletes a signal patched to null and leaves its bound elements
    # stale (see tests/browser); an empty string shows nothing instead.
    state = Profile(nickname="ada")
    assert run(state, lambda s: setattr(s, "nickname", None)) == {"nickname": ""}
    assert run(state, lambda s: setattr(s, "nickname", "back")) == {"nickname": "back"}
    assert public_state(Profile())["nickname"] == ""


def test_none_inside_dicts_is_not_a_deletion_but_removed_keys_are() -> None:
    def change(s: Profile) -> None:
        s.prefs["theme"] = None
        del s.prefs["lang"]

    assert run(Profile(), change) == {"prefs": {"theme": "", "lang": None}}


def test_excluded_and_private_data_never_in_patch_or_public_state() -> None:
    def change(s: Profile) -> None:
        s.password_hash = "new-hash"
        s._token = "new-token"
        s._cache.append(1)

    state = Profile()
    assert run(state, change) == {}
    dumped = str(public_state(state))
    for secret in ("hash", "token", "new-hash", "new-token", "_cache"):
        assert secret not in dumped
    assert "password_hash" not in state.__ft__().__html__()


def test_rollback_restores_assigned_mutated_and_private_values() -> None:
    state = Profile(tags=["a"])
    state._cache.append(7)
    before = state.model_dump()
    tracker = begin_tracking(state)
    state.name = "Grace"
    state.tags.append("b")
    state.prefs["theme"] = "light"
    state.address.city = "Rome"
    state._token = "changed"
    state._cache.append(8)
    state.password_hash = "x"
    end_tracking(state)
    rollback(state, tracker)
    assert state.model_dump() == before
    assert state.password_hash == "s3cret-hash"
    assert state._token == "private-token"
    assert state._cache == [7]


def test_rollback_then_new_event_starts_clean() -> None:
    state = Profile()
    tracker = begin_tracking(state)
    state.age = 99
    end_tracking(state)
    rollback(state, tracker)
    assert run(state, lambda s: setattr(s, "age", 40)) == {"age": 40}


def test_checkpoint_makes_next_diff_incremental() -> None:
    state = Profile()
    tracker = begin_tracking(state)
    state.age = 1
    end_tracking(state)
    assert diff_tracked(state, tracker, checkpoint=True) == {"age": 1}
    assert diff_tracked(state, tracker, checkpoint=True) == {}


def test_tracking_ignores_untouched_large_field() -> None:
    class Big(ReactiveState):
        items: list[int] = Field(default_factory=lambda: list(range(10_000)))
        n: int = 0

    state = Big()
    tracker = begin_tracking(state)
    state.n += 1
    end_tracking(state)
    assert "items" not in tracker.saved
    assert diff_tracked(state, tracker) == {"n": 1}


def test_field_names_of_helpers_are_free_for_users() -> None:
    class Free(ReactiveState):
        text: str = "t"
        action: str = "a"
        signals: int = 1
        on: bool = True
        ref: str = "r"

    state = Free()
    assert (state.text, state.action, state.signals, state.on, state.ref) == (
        "t",
        "a",
        1,
        True,
        "r",
    )
    assert run(state, lambda s: setattr(s, "text", "u")) == {"text": "u"}


def test_event_method_called_directly_just_runs() -> None:
    state = Profile()
    state.rename("Grace")
    assert state.name == "Grace"


def test_base_class_adds_only_id_as_public_field() -> None:
    class Empty(ReactiveState):
        pass

    assert set(Empty.model_fields) == {"id"}
    assert set(public_state(Empty())) == {"id"}


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        (1, 2, 2),
        ({"a": 1}, {"a": 1, "b": 2}, {"b": 2}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1, "y": 3}}, {"a": {"y": 3}}),
        ([1, 2], [1, 2, 3], [1, 2, 3]),
        ({"a": 1}, [1], [1]),
    ],
)
def test_merge_diff_is_rfc7396(old: Any, new: Any, patch: Any) -> None:
    assert merge_diff(old, new) == patch


# --- rollback copies of collections --------------------------------------------------------


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Collections(ReactiveState):
    """Fields whose rollback copy is shallow, then fields whose copy must stay deep."""

    numbers: list[int] = Field(default_factory=lambda: [1, 2, 3])
    scores: dict[str, int] = Field(default_factory=lambda: {"a": 1, "b": 2})
    labels: set[str] = Field(default_factory=lambda: {"x", "y"})
    pairs: list[tuple[int, tuple[str, ...]]] = Field(default_factory=lambda: [(1, ("a", "b"))])
    maybe: list[int] | None = Field(default_factory=lambda: [1])
    colors: list[Color] = Field(default_factory=lambda: [Color.RED])

    models: list[Address] = Field(default_factory=lambda: [Address()])
    grid: list[list[int]] = Field(default_factory=lambda: [[1], [2]])
    nested: dict[str, list[int]] = Field(default_factory=lambda: {"a": [1]})
    anything: list[Any] = Field(default_factory=lambda: [[1], {"k": 1}])
    bare: list = Field(default_factory=lambda: [[1]])  # type: ignore[type-arg]


# The id too: a string is never copied, reading it records nothing.
SHALLOW = {"id", "numbers", "scores", "labels", "pairs", "maybe", "colors"}


def test_rollback_copy_is_shallow_only_for_one_container_of_immutable_values() -> None:
    assert shallow_copied_fields(Collections) == SHALLOW


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.numbers.append(4),
        lambda s: s.numbers.pop(),
        lambda s: s.numbers.__setitem__(0, 9),
        lambda s: s.numbers.sort(reverse=True),
        lambda s: s.numbers.clear(),
        lambda s: s.scores.__setitem__("a", 5),
        lambda s: s.scores.pop("b"),
        lambda s: s.scores.update(c=3),
        lambda s: s.labels.add("z"),
        lambda s: s.labels.discard("x"),
        lambda s: s.pairs.append((2, ("c",))),
        lambda s: s.pairs.__setitem__(0, (1, ("a",))),
        lambda s: s.maybe.append(2),
        lambda s: s.colors.append(Color.BLUE),
        # Deep: what changes is inside an item.
        lambda s: setattr(s.models[0], "city", "Lyon"),
        lambda s: s.grid[0].append(9),
        lambda s: s.nested["a"].append(9),
        lambda s: s.anything[0].append(9),
        lambda s: s.anything[1].__setitem__("k", 2),
        lambda s: s.bare[0].append(9),
        # Several changes to one field, and to several fields.
        lambda s: (s.numbers.append(4), s.numbers.remove(1), s.grid[1].clear()),
    ],
    ids=[
        "numbers.append",
        "numbers.pop",
        "numbers[0]=",
        "numbers.sort",
        "numbers.clear",
        "scores[a]=",
        "scores.pop",
        "scores.update",
        "labels.add",
        "labels.discard",
        "pairs.append",
        "pairs[0]=",
        "maybe.append",
        "colors.append",
        "models[0].city=",
        "grid[0].append",
        "nested[a].append",
        "anything[0].append",
        "anything[1][k]=",
        "bare[0].append",
        "several",
    ],
)
def test_rollback_after_change_in_place_restores_the_exact_pre_event_value(
    change: Callable[[Any], Any],
) -> None:
    state = Collections()
    before = copy.deepcopy(state.__dict__)
    tracker = begin_tracking(state)
    change(state)
    end_tracking(state)
    assert state.__dict__ != before  # the change did change something
    rollback(state, tracker)
    assert state.__dict__ == before


def test_a_rolled_back_collection_stays_rolled_back_after_the_next_event() -> None:
    # The saved copy becomes the field's value: the next event must copy it
    # again rather than share it with what was saved.
    state = Collections()
    for _ in range(2):
        tracker = begin_tracking(state)
        state.numbers.append(4)
        end_tracking(state)
        rollback(state, tracker)
    assert state.numbers == [1, 2, 3]


class Item(BaseModel):
    name: str = ""


def _keep(value: list[int]) -> list[int]:
    return value


class Tricky(ReactiveState):
    optional: Optional[list[int]] = None  # noqa: UP045 (the spelling is what is tested)
    union: list[int] | None = None
    constrained: Annotated[list[int], Field(min_length=0)] = Field(default_factory=list)
    bindable: Bindable[list[str]] = Field(default_factory=list)
    literals: list[Literal["a", "b"]] = Field(default_factory=list)
    frozen: dict[frozenset[str], tuple[int, ...]] = Field(default_factory=dict)
    floats: list[float] = Field(default_factory=list)
    nullable_items: set[int | None] = Field(default_factory=set)
    # Deep: what the declared type does not pin down.
    any_field: Any = None
    any_items: list[Any] = Field(default_factory=list)
    bare_tuples: list[tuple] = Field(default_factory=list)  # type: ignore[type-arg]
    validated: Annotated[list[int], AfterValidator(_keep)] = Field(default_factory=list)
    either: list[int] | list[list[int]] = Field(default_factory=list)
    models: list[Item] = Field(default_factory=list)
    dicts: list[dict[str, int]] = Field(default_factory=list)
    model: Item = Field(default_factory=Item)


def test_rollback_copy_decision_for_tricky_annotations() -> None:
    assert shallow_copied_fields(Tricky) == {
        "id",
        "optional",
        "union",
        "constrained",
        "bindable",
        "literals",
        "frozen",
        "floats",
        "nullable_items",
    }


# --- read-only outside events ---------------------------------------------------------------


def _page_that_writes(store: StateStore) -> TestClient:
    def page(request: Request) -> JSONResponse:
        counter = use_state(request, Counter)
        try:
            counter.count = 99
        except AttributeError as exc:
            return JSONResponse({"refused": str(exc), "count": counter.count})
        return JSONResponse({"refused": None, "count": counter.count})

    app = state_app({Counter: StateScope.GLOBAL}, store=store)
    app.add_route("/", page)
    return TestClient(app)


def _refuses_writes_outside_events(client: TestClient) -> None:
    with client:
        assert fire(client, "/Counter/increment", amount=2).status_code == 200
        answer = client.get("/").json()
        assert "mutate" in answer["refused"] and answer["count"] == 2
        assert fire(client, "/Counter/increment").signals == {"Counter": {"count": 3}}


def test_a_resolved_instance_is_read_only_outside_events_in_memory() -> None:
    _refuses_writes_outside_events(_page_that_writes(MemoryStore()))


def test_a_resolved_instance_is_read_only_outside_events_in_redis(
    redis_url: str, redis_prefix: str
) -> None:
    _refuses_writes_outside_events(_page_that_writes(RedisStore(redis_url, prefix=redis_prefix)))


def test_an_instance_made_by_hand_stays_writable() -> None:
    counter = Counter()
    counter.count = 5
    counter.increment(2)
    assert counter.count == 7


def test_pydantic_still_tracks_which_fields_were_set() -> None:
    # Instances built with defaults share one empty fields-set until one is set.
    first, second = Profile(), Profile()
    assert first.model_fields_set == set() == second.model_fields_set
    first.name = "Grace"
    assert first.model_fields_set == {"name"} and second.model_fields_set == set()
    unset = {"tag_count"}  # a computed field is always dumped
    assert set(first.model_dump(exclude_unset=True)) - unset == {"name"}
    assert set(second.model_dump(exclude_unset=True)) - unset == set()
    copied = second.model_copy(update={"age": 40})
    assert copied.model_fields_set == {"age"} and second.model_fields_set == set()
    deep = copy.deepcopy(second)
    deep.age = 41
    assert deep.model_fields_set == {"age"} and second.model_fields_set == set()
    assert Profile(name="Lin").model_fields_set == {"name"}
    revived = pickle.loads(pickle.dumps(Profile()))
    revived.age = 7
    assert revived.model_fields_set == {"age"} and Profile().model_fields_set == set()


def test_validate_assignment_classes_keep_their_own_fields_set() -> None:
    class Strict(ReactiveState):
        model_config = ConfigDict(validate_assignment=True)
        count: int = 0

    first, second = Strict(), Strict()
    first.count = "4"  # type: ignore[assignment]  # validated on assignment
    assert (first.count, first.model_fields_set, second.model_fields_set) == (4, {"count"}, set())
    second.count = "5"  # type: ignore[assignment]  # and every time after
    assert (second.count, second.model_fields_set) == (5, {"count"})
    with pytest.raises(ValidationError):
        second.count = "five"  # type: ignore[assignment]
    assert second.count == 5


def test_a_rolled_back_event_leaves_the_fields_set_as_it_was() -> None:
    state = Profile()
    tracker = begin_tracking(state)
    state.name = "Grace"
    end_tracking(state)
    rollback(state, tracker)
    assert (state.name, state.model_fields_set) == ("Ada", set())
    state.age = 50  # and it can be set again afterwards
    assert state.model_fields_set == {"age"} and Profile().model_fields_set == set()


def test_copies_of_a_resolved_instance_are_detached_and_writable() -> None:
    app = state_app({Counter: StateScope.SESSION})

    async def page(request: Request) -> JSONResponse:
        counter = use_state(request, Counter)
        detached = counter.model_copy()
        detached.count = 99  # a copy is nobody's state: no ReadOnlyState
        return JSONResponse({"copy": detached.count, "kept": counter.count})

    app.add_route("/", page)
    with TestClient(app) as client:
        assert client.get("/").json() == {"copy": 99, "kept": 0}
