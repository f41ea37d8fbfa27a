"""ReactiveState: typed server-side state whose changes become merge patches.

Change tracking is what keeps an event's cost proportional to what it
touched rather than to the size of the state.  While an event runs, an
instance records, on first touch only, the pre-event value (for rollback)
and its JSON form (for the diff) of each field the event assigns, and of
each mutable field (list, dict, set, model) the event merely reads, since
it may be changed in place.  Untouched fields cost nothing.
"""

from __future__ import annotations

import copy
import html
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Final,
    Literal,
    Protocol,
    TypeAlias,
    TypeVar,
    get_args,
    get_origin,
)

import pydantic.main
from pydantic import BaseModel
from sqlmodel import Field, SQLModel

from faststate._diff import (
    all_of,
    dump_fields,
    dump_public,
    inert,
    is_plain,
    merge_diff,
    plain_fields,
)
from faststate._protocol import ERRORS_SIGNAL, VIEWERS_SIGNAL, Dialect, dump_json, get_protocol

if TYPE_CHECKING:
    from fastcore.xml import FT

_getattribute: Final = object.__getattribute__
#: The handler pydantic (2.11 and later) memoizes in a class's
#: ``__pydantic_setattr_handlers__`` for a field set without validation; with a
#: pydantic that has none, no handler is it and fields are set through pydantic.
_PLAIN_FIELD_SETATTR: Final = getattr(pydantic.main, "_model_field_setattr_handler", object())
_NO_HANDLERS: Final[dict[str, Any]] = {}
_MUTABLE: Final = (list, dict, set, bytearray, BaseModel)
_MISSING: Final = object()
_IMMUTABLE: Final = frozenset(
    {int, float, complex, bool, str, bytes, type(None), Decimal, date, datetime, time}
    | {timedelta, uuid.UUID}
)


def _private_of(state: object) -> dict[str, Any] | None:
    try:
        private: dict[str, Any] | None = _getattribute(state, "__pydantic_private__")
    except AttributeError:  # before pydantic has set the instance up
        return None
    return private


class _NoFieldsSet(set[str]):
    """The fields-set of an instance built with its defaults only, shared by all
    of them: pydantic gives each instance a set of its own (216 bytes, most of
    an idle session).  ``ReactiveState.__setattr__`` swaps in a set of the
    instance's own before pydantic adds to it; copies and pickles get one too.
    A set (pydantic's serializer reads only real sets) that refuses changes."""

    def __copy__(self) -> set[str]:
        return set()

    def __deepcopy__(self, memo: dict[int, Any]) -> set[str]:
        return set()

    def __reduce__(self) -> tuple[type[set[str]], tuple[()]]:
        return set, ()

    def _shared(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("the fields-set shared by instances built with defaults cannot change")

    add = update = discard = remove = pop = clear = _shared
    difference_update = intersection_update = symmetric_difference_update = _shared
    __ior__ = __iand__ = __isub__ = __ixor__ = _shared


_NO_FIELDS_SET: Final = _NoFieldsSet()


class Placement(Protocol):
    """Where a resolved instance lives and how the page and URLs name it.

    The resolver's address record has this shape; the state only carries it.
    """

    @property
    def key(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def protocol(self) -> Dialect: ...
    @property
    def url_prefix(self) -> str: ...
    @property
    def client_param(self) -> tuple[str, str] | None: ...
    @property
    def presence(self) -> bool: ...


class PlacementSite(Protocol):
    """What the placements of one class share; an instance keeps it and its key."""

    def at(self, key: str) -> Placement: ...


@dataclass(frozen=True, slots=True)
class _Unplaced:
    """What helpers see of an instance no request resolved (made by hand, say)."""

    key: str
    namespace: str
    protocol: Dialect
    url_prefix: str = ""
    client_param: tuple[str, str] | None = None
    presence: bool = False


class _BindableMarker:
    __slots__ = ()

    def __repr__(self) -> str:
        return "Bindable"


_BINDABLE: Final = _BindableMarker()
T = TypeVar("T")

Bindable: TypeAlias = Annotated[T, _BINDABLE]
"""``email: Bindable[str] = ""``: a public field the page may write (two-way binding).

With each event of its instance, the page's value of a bindable field is sent
along, validated with the field's type, and applied before the method runs,
inside the event's transaction.  Every other field stays server-owned: what
the page holds of it is never read.
"""


@cache
def bindable_fields(cls: type[BaseModel]) -> frozenset[str]:
    """The fields of ``cls`` declared ``Bindable[...]``."""
    return frozenset(
        name
        for name, info in cls.__pydantic_fields__.items()
        if any(item is _BINDABLE for item in info.metadata)
    )


@cache
def shallow_copied_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Fields whose rollback copy may be shallow: one container of immutable values.

    ``list[int]``, ``dict[str, int]``, ``set[str]``, optional or constrained:
    an event can change such a value only at its own level (append, pop,
    item assignment), so ``list(value)`` keeps the pre-event value exactly,
    for a fraction of ``copy.deepcopy``'s cost on a large collection.  A
    ``list[list[int]]`` or ``list[Model]`` can change inside its items, and
    ``Any`` or a bare ``list`` can hold anything: those stay deep.

    The declared type is trusted: pydantic validated what came in, and
    ``mypy`` checks what events put in.
    """
    return frozenset(
        name
        for name, info in cls.__pydantic_fields__.items()
        if inert(info.metadata) and all_of(info.annotation, _copied_by_one_level)
    )


def _copied_by_one_level(kind: Any) -> bool:
    origin, args = get_origin(kind), get_args(kind)
    if origin in (list, set) and len(args) == 1:
        return all_of(args[0], _immutable)
    if origin is dict and len(args) == 2:
        return all_of(args[0], _immutable) and all_of(args[1], _immutable)
    return _immutable(kind)


def _immutable(kind: Any) -> bool:
    if kind in _IMMUTABLE or (isinstance(kind, type) and issubclass(kind, Enum)):
        return True
    origin, args = get_origin(kind), get_args(kind)
    if origin is Literal:
        return all(type(value) in _IMMUTABLE or isinstance(value, Enum) for value in args)
    if origin is frozenset and len(args) == 1:
        return all_of(args[0], _immutable)
    # A bare tuple (or typing.Tuple) has no arguments and may hold anything.
    if origin is tuple and args:
        return all(arg is Ellipsis or all_of(arg, _immutable) for arg in args)
    return False


def _rollback_copy(cls: type[BaseModel], name: str, value: Any) -> Any:
    if name in shallow_copied_fields(cls):
        return copy.copy(value)
    return copy.deepcopy(value)


class ReadOnlyState(AttributeError):
    """A resolved instance was assigned to outside an event or ``mutate``."""


class Tracker:
    """Pre-event values of what one event touched."""

    __slots__ = ("computed_before", "fields_set", "old_json", "saved")

    def __init__(
        self, fields_set: set[str] | frozenset[str], computed_before: dict[str, Any]
    ) -> None:
        self.saved: dict[str, Any] = {}
        self.old_json: dict[str, Any] = {}
        self.fields_set = fields_set
        self.computed_before = computed_before

    def remember(self, state: ReactiveState, name: str, value: Any, deep: bool) -> None:
        cls = type(state)
        saved = _rollback_copy(cls, name, value) if deep else value
        dumped = None
        if name in plain_fields(cls) and is_plain(value):  # the common case, without a call
            dumped = {name: "" if value is None else value}
        elif name in cls.__pydantic_fields__:
            dumped = dump_fields(state, {name: value}, {name})
        # A page rendering this instance from another thread may read the
        # same field while a sync event runs; whichever copy is complete
        # first was taken before the event changed anything, so it wins.
        if name in self.saved:
            return
        self.saved[name] = saved
        if dumped and name in dumped:  # Field(exclude=True) stays server-side
            self.old_json[name] = dumped[name]


class ReactiveState(SQLModel):
    """Base class of server-side reactive state.

    Public fields and computed fields are the signals the page sees; private
    attributes and ``Field(exclude=True)`` fields never leave the server.

    A ``sqlmodel.SQLModel`` (not a table model): declare fields as on any
    pydantic model, mark methods with ``@event``, register the class with
    ``register_state`` and get its instance with ``use_state``.  faststate
    adds only ``id`` and ``__ft__`` (plus ``__html__``) to the public names,
    so any field name is free; what it keeps per instance lives in private
    attributes.  What faststate adds:

        id          str, a uuid4 by default
        __ft__()    the element carrying data-signals (FastHTML renders it)
        __html__()  the same element as HTML (Jinja2's {{ state }})

    Everything else on the class (``model_dump``, ``model_copy``,
    validators...) is pydantic's and SQLModel's.

    Example:
        ```python
        class CounterState(ReactiveState):
            count: int = 0

            @event
            def increment(self, amount: int = 1):
                self.count += amount
        ```
    """

    # faststate's own data of each instance in slots: as pydantic private
    # attributes they would give every instance a dict (184 bytes), which a
    # class without private attributes of its own does not otherwise have.
    # Where it lives (its key and its class's shared ``PlacementSite``, not
    # an address object of its own), the running event's tracker, the stored
    # version, and the memory store's expiry and use order (``MemoryStore``
    # threads its LRU lists through the instances it holds: a table entry
    # and an ``OrderedDict`` node per instance cost 117 bytes, these four
    # slots 32).  Instances built without ``__init__`` (``model_validate``,
    # copies) leave them unset, which reads as unplaced, untracked, version 0.
    __slots__ = (
        "_fs_deadline",
        "_fs_key",
        "_fs_newer",
        "_fs_older",
        "_fs_site",
        "_fs_tracker",
        "_fs_ttl",
        "_fs_version",
    )

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    """A uuid4 string by default; a public field like any other."""

    # SQLModel's spelling of ``self``: a field may be called "self".
    def __init__(__pydantic_self__, **data: Any) -> None:
        super().__init__(**data)
        if not _getattribute(__pydantic_self__, "__pydantic_fields_set__"):
            object.__setattr__(__pydantic_self__, "__pydantic_fields_set__", _NO_FIELDS_SET)

    def __getattribute__(self, name: str) -> Any:
        value = _getattribute(self, name)
        if name[0] != "_" and isinstance(value, _MUTABLE):
            try:
                tracker = _get_tracker(self)
            except AttributeError:
                return value
            if (
                tracker is not None
                and name not in tracker.saved
                and name in type(self).__pydantic_fields__
            ):
                tracker.remember(self, name, value, deep=True)
        return value

    def __getattr__(self, name: str) -> Any:
        # Private attributes live outside __dict__ and arrive here.
        value = super().__getattr__(name)  # type: ignore[misc]
        if isinstance(value, _MUTABLE):
            tracker = tracker_of(self)
            if tracker is not None and name not in tracker.saved:
                tracker.remember(self, name, value, deep=True)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        tracker = tracker_of(self)
        fields = type(self).__pydantic_fields__
        if tracker is not None:
            if name not in tracker.saved:
                if name in fields:
                    # Read past __getattribute__: no frame of its own for it.
                    held = _getattribute(self, "__dict__").get(name, _MISSING)
                    tracker.remember(self, name, held, deep=False)
                else:
                    private = _private_of(self)
                    if private is not None and name in private:
                        tracker.remember(self, name, private[name], deep=False)
                    else:
                        tracker.saved[name] = _MISSING
        elif is_placed(self):
            # The stored copy itself (memory store) or a copy whose change
            # would vanish (Redis): either way, not a change anyone sees.
            raise ReadOnlyState(
                f"{type(self).__name__}.{name} cannot be changed outside an event: "
                f"use `async with mutate(request, {type(self).__name__}) as state:` "
                "(or an @event method), which locks, saves and pushes the change"
            )
        if name in fields:
            fields_set = _getattribute(self, "__pydantic_fields_set__")
            if fields_set is _NO_FIELDS_SET:
                fields_set = set()
                object.__setattr__(self, "__pydantic_fields_set__", fields_set)
            handlers = getattr(type(self), "__pydantic_setattr_handlers__", _NO_HANDLERS)
            if handlers.get(name) is _PLAIN_FIELD_SETATTR:
                # What pydantic's handler for the field does, without the three
                # attribute reads of this instance (each a call of
                # __getattribute__ above) it takes to do it.
                _getattribute(self, "__dict__")[name] = value
                fields_set.add(name)
                return
        # Straight to pydantic: SQLModel's own __setattr__ only matters for
        # table models, which a ReactiveState never is.
        BaseModel.__setattr__(self, name, value)

    def __ft__(self) -> FT:
        """An element carrying this instance's public state as ``data-signals``.

        FastHTML calls it when a state is put into a page (``Titled("Counter",
        counter, ...)``).

        Returns:
            A ``<div data-signals=...>`` element, under the instance's namespace.
        """
        from fasthtml.components import ft_hx

        return ft_hx("div", **signal_attributes(self))

    def __html__(self) -> str:
        """The element of ``__ft__`` as HTML, for templates that escape (``{{ counter }}``
        in Jinja2 gives the element, not the escaped repr).  FastHTML asks ``__ft__`` first.

        Returns:
            ``<div data-signals="..."></div>``.
        """

        attributes = " ".join(
            f'{name}="{html.escape(value)}"' for name, value in signal_attributes(self).items()
        )
        return f"<div {attributes}></div>"


#: The slots' descriptors: reading or writing through them skips the
#: instance's own ``__getattribute__`` and ``__setattr__``.
KEY_SLOT: Final[Any] = ReactiveState.__dict__["_fs_key"]
_SITE_SLOT: Final[Any] = ReactiveState.__dict__["_fs_site"]
_TRACKER_SLOT: Final[Any] = ReactiveState.__dict__["_fs_tracker"]
_VERSION_SLOT: Final[Any] = ReactiveState.__dict__["_fs_version"]
#: The memory store's: seconds of idleness allowed, when they run out, and
#: the neighbours in its use order (see ``MemoryStore``).
TTL_SLOT: Final[Any] = ReactiveState.__dict__["_fs_ttl"]
DEADLINE_SLOT: Final[Any] = ReactiveState.__dict__["_fs_deadline"]
OLDER_SLOT: Final[Any] = ReactiveState.__dict__["_fs_older"]
NEWER_SLOT: Final[Any] = ReactiveState.__dict__["_fs_newer"]
#: The running event's tracker of an instance; AttributeError when none ever was.
_get_tracker: Final = _TRACKER_SLOT.__get__
_get_key: Final = KEY_SLOT.__get__
_get_site: Final = _SITE_SLOT.__get__


def placement(state: ReactiveState) -> Placement | None:
    """Where ``use_state``, an event or ``mutate`` placed the instance, if any did."""
    try:
        site: PlacementSite = _get_site(state)
    except AttributeError:
        return None
    return site.at(_get_key(state))


def is_placed(state: ReactiveState) -> bool:
    try:
        _get_site(state)
    except AttributeError:
        return False
    return True


def placed_at(state: ReactiveState, key: str, site: PlacementSite) -> bool:
    """Whether the instance is placed under ``key`` at ``site`` already."""
    try:
        return _get_site(state) is site and _get_key(state) == key
    except AttributeError:
        return False


def tracker_of(state: ReactiveState) -> Tracker | None:
    try:
        tracker: Tracker | None = _get_tracker(state)
    except AttributeError:
        return None
    return tracker


def placement_of(state: ReactiveState) -> Placement:
    """The instance's placement, or a default one for instances no request resolved."""
    place = placement(state)
    if place is None:
        name = type(state).__name__
        place = _Unplaced(f"unbound:{name}", name, get_protocol("v1"))
    return place


def place(state: ReactiveState, key: str, site: PlacementSite) -> None:
    KEY_SLOT.__set__(state, key)
    _SITE_SLOT.__set__(state, site)


def stored_version(state: ReactiveState) -> int:
    try:
        return int(_VERSION_SLOT.__get__(state))
    except AttributeError:
        return 0


def set_stored_version(state: ReactiveState, version: int) -> None:
    _VERSION_SLOT.__set__(state, version)


def public_state(state: ReactiveState) -> dict[str, Any]:
    """The JSON form of everything the page may see (fields and computed)."""
    return dump_public(state)


def signal_attributes(state: ReactiveState) -> dict[str, str]:
    where = placement_of(state)
    namespace = where.namespace
    # The errors signal exists from the start, so that what shows it reacts.
    signals = {**public_state(state), ERRORS_SIGNAL: ""}
    attributes = {"data-signals": dump_json({namespace: signals})}
    if where.presence:
        # Only if missing: a re-rendered state must not blank the live stream's list.
        attributes["data-signals__ifmissing"] = dump_json({namespace: {VIEWERS_SIGNAL: []}})
    return attributes


def begin_tracking(state: ReactiveState) -> Tracker:
    """Start recording what the coming event touches."""
    cls = type(state)
    computed = cls.__pydantic_computed_fields__
    before = dump_public(state, set(computed)) if computed else {}
    fields_set = _getattribute(state, "__pydantic_fields_set__")
    # The shared empty set is never changed in place: no copy of it is needed.
    tracker = Tracker(fields_set if fields_set is _NO_FIELDS_SET else set(fields_set), before)
    _TRACKER_SLOT.__set__(state, tracker)
    return tracker


def end_tracking(state: ReactiveState) -> Tracker | None:
    tracker = tracker_of(state)
    _TRACKER_SLOT.__set__(state, None)
    return tracker


def resume_tracking(state: ReactiveState, tracker: Tracker) -> None:
    _TRACKER_SLOT.__set__(state, tracker)


def diff_tracked(
    state: ReactiveState, tracker: Tracker, checkpoint: bool = False
) -> dict[str, Any]:
    """Merge patch of the public state since ``tracker`` began (not nested).

    With ``checkpoint`` the next diff starts from now (a generator event
    flushing step by step); what rollback restores is not affected.
    """
    patch: dict[str, Any] = {}
    names = set(tracker.old_json)
    if names:
        now = dump_fields(state, _getattribute(state, "__dict__"), names)
        for name in names:
            old = tracker.old_json[name]
            new = now.get(name)
            if new != old:
                patch[name] = merge_diff(old, new)
        if checkpoint:
            tracker.old_json.update(now)
    computed = type(state).__pydantic_computed_fields__
    if computed:
        after = dump_public(state, set(computed))
        for name, new in after.items():
            old = tracker.computed_before.get(name, _MISSING)
            if new != old:
                patch[name] = new if old is _MISSING else merge_diff(old, new)
        if checkpoint:
            tracker.computed_before = after
    return patch


def rollback(state: ReactiveState, tracker: Tracker) -> None:
    """Put back every touched value as it was before the event."""
    fields = type(state).__pydantic_fields__
    values = _getattribute(state, "__dict__")
    private = _private_of(state)
    for name, old in tracker.saved.items():
        target = values if name in fields else private
        if target is None:  # a name no field or private attribute has: nothing was set
            continue
        if old is _MISSING:
            target.pop(name, None)
        else:
            target[name] = old
    object.__setattr__(state, "__pydantic_fields_set__", tracker.fields_set)
