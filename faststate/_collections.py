"""``Stream`` fields: big collections that reach the page as keyed element patches.

A list field is a signal: the page holds all of it, every change re-sends
what changed of it, and the server keeps it whole.  A stream instead keeps
at most ``limit`` items on the server (nothing of it is a signal) and shows
each item as one element rendered by the field's function, with a dom id
made of the instance's namespace, the field and the item's key::

    class ChatRoom(ReactiveState):
        messages: Stream[Message] = stream(render_message, key="id", limit=200)

An event's operations (``append``, ``prepend``, ``update``, ``delete``,
``reset``) are rendered as they happen into element patches, which the
transaction hands to the caller's answer and, with the instance's change,
to every live page; a rolled-back event reverts them from an undo log, so
its cost follows the operations, not the size of the stream.

Like the state's fields, a stream is read-only outside an event or
``mutate`` once a request resolved its instance; on an instance made by
hand it simply changes.
"""

from __future__ import annotations

import copy
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, get_args

from pydantic import Field
from pydantic_core import core_schema

from faststate._protocol import Dialect, ElementPatch, to_html
from faststate._state import ReactiveState, ReadOnlyState

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler

T = TypeVar("T")

_NON_ID_CHARS: Final = re.compile(r"[^A-Za-z0-9]")

# How a stream may be changed: directly (an instance no request resolved),
# not at all (a resolved instance outside a transaction), or recorded.
_FREE: Final = 0
_GUARDED: Final = 1
_OPEN: Final = 2


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "__" if char == "_" else f"_{ord(char):x}_"


def container_id(namespace: str, name: str) -> str:
    """The dom id of the element holding a stream's items: ``ChatRoom-messages``.

    Namespaces and field names hold no ``-``, so ids of different streams and
    of their items never meet.
    """
    return f"{namespace}-{name}"


def item_id(container: str, key: str) -> str:
    """The dom id of one item: the container's id and the key, escaped injectively
    to letters, digits and ``_`` (``a-b`` → ``a_2d_b``), so it is a valid id and
    CSS selector whatever the key holds."""
    if key.isascii() and key.isalnum():
        return f"{container}-{key}"
    return f"{container}-{_NON_ID_CHARS.sub(_escape, key)}"


@dataclass(frozen=True, slots=True, eq=False)
class StreamConfig:
    """How a stream field renders and keys its items, and how many it keeps.

    It lives on the class (in the field's metadata) and is given back to the
    stream whenever pydantic builds one from its stored items.
    """

    render: Callable[[Any], Any]
    key: Callable[[Any], object]
    limit: int

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._adopt, handler(source))

    def _adopt(self, value: Any) -> Any:
        if isinstance(value, Stream):
            value._configure(self)
        return value


def stream(
    render: Callable[[T], Any], *, key: str | Callable[[T], object] = "id", limit: int
) -> Any:
    """The default of a ``Stream[T]`` field: ``stream(render_message, key="id", limit=200)``.

    ``render(item)`` returns one FastHTML element (its ``id`` is set to the
    item's dom id); it must not depend on who asked, since every live page
    gets what it renders.  ``key`` names the attribute (or is a function)
    giving each item's unique key.  The server keeps the last ``limit`` items;
    beyond it, inserting drops the item at the other end, on the server and
    on the page.  The field is never a signal and is stored as its items.

    Args:
        render: ``render(item)`` → one element; the same for every page.
        key: The name of the attribute holding each item's unique key, or a
            function of the item returning it.
        limit: How many items the server keeps (a positive int).

    Returns:
        A pydantic ``Field`` (``exclude=True``) whose default is an empty stream.

    Raises:
        ValueError: ``limit`` is not a positive int.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"a stream's limit is a positive int, not {limit!r}")
    key_of: Callable[[Any], object] = attrgetter(key) if isinstance(key, str) else key
    config = StreamConfig(render, key_of, limit)
    info: Any = Field(default_factory=lambda: Stream(config), exclude=True)
    info.metadata.append(config)
    return info


class Stream(Generic[T]):
    """The items of a stream field, in page order, at most ``limit`` of them.

    Read it like a sequence (``len``, iteration, ``key in stream``,
    ``stream.get(key)``); change it only through its methods.  Items are
    values: to change one, ``update`` it with a new one (a changed copy).

    Declare the field ``messages: Stream[Message] = stream(render, key="id",
    limit=200)``; faststate builds the stream, you never call ``Stream(...)``
    yourself.  Inside an event (or ``mutate``) each change becomes one element
    patch for the page; outside them a resolved instance's stream is
    read-only.

    Args:
        config: How items render and key (given by ``stream(...)``).
        items: The initial items.
    """

    __slots__ = (
        "_config",
        "_container",
        "_dialect",
        "_items",
        "_label",
        "_mode",
        "_order",
        "_patches",
        "_stored",
        "_undo",
    )

    def __init__(self, config: StreamConfig | None = None, items: Iterable[T] = ()) -> None:
        self._items: dict[str, T] = {}
        self._order: deque[str] = deque()
        self._mode = _FREE
        self._label = "a stream"
        self._container = ""
        self._dialect: Dialect | None = None
        self._patches: list[ElementPatch] = []
        # Inverse steps of what the running transaction did, applied last first.
        self._undo: list[tuple[Any, ...]] = []
        self._config = config
        #: Items validated from the stored form, kept until the config arrives.
        self._stored: list[T] = []
        if config is not None:
            self._set(list(items))
        else:
            self._stored = list(items)

    # pydantic: validated from, and serialised as, the list of items.
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        args = get_args(source)
        items = core_schema.list_schema(handler.generate_schema(args[0] if args else Any))
        return core_schema.no_info_after_validator_function(
            cls._from_items,
            items,
            serialization=core_schema.plain_serializer_function_ser_schema(
                list, return_schema=items
            ),
        )

    @classmethod
    def _from_items(cls, items: list[T]) -> Stream[T]:
        return cls(None, items)

    def _configure(self, config: StreamConfig) -> None:
        """Attach the class's config; items stored under another limit are cut to this one."""
        items = self._values()
        self._config = config
        self._set(items)

    # Reading.
    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[T]:
        items = self._items
        return (items[key] for key in self._order)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._items

    def get(self, key: object, default: T | None = None) -> T | None:
        """The item with this key, or ``default``.

        Args:
            key: The item's key (compared as a string).
            default: What to return when there is no such item.

        Returns:
            The item, or ``default``.
        """
        return self._items.get(str(key), default)

    def __repr__(self) -> str:
        return f"Stream({list(self)!r})"

    # Copies hold the items and the config, never a transaction's records.
    def __copy__(self) -> Stream[T]:
        return Stream(self._config, self._values())

    def __deepcopy__(self, memo: dict[int, Any]) -> Stream[T]:
        return Stream(self._config, copy.deepcopy(self._values(), memo))

    def _values(self) -> list[T]:
        return list(self) if self._config is not None else list(self._stored)

    @property
    def limit(self) -> int:
        """The most items the server keeps (the field's ``stream(..., limit=)``)."""
        return self._settings().limit

    # Changing.
    def append(self, item: T) -> None:
        """Add ``item`` at the end (dropping the first item beyond ``limit``).

        Args:
            item: The new item; its key must not be in the stream yet.

        Raises:
            ValueError: An item with the same key is already there.
        """
        key = self._new_key(item)
        self._items[key] = item
        self._order.append(key)
        if self._mode == _OPEN:
            self._undo.append(("pop",))
            self._patch(self._render(item, key), f"#{self._container}", "append")
        while len(self._order) > self._settings().limit:
            self._drop(0)

    def prepend(self, item: T) -> None:
        """Add ``item`` at the start (dropping the last item beyond ``limit``).

        Args:
            item: The new item; its key must not be in the stream yet.

        Raises:
            ValueError: An item with the same key is already there.
        """
        key = self._new_key(item)
        self._items[key] = item
        self._order.appendleft(key)
        if self._mode == _OPEN:
            self._undo.append(("popleft",))
            self._patch(self._render(item, key), f"#{self._container}", "prepend")
        while len(self._order) > self._settings().limit:
            self._drop(len(self._order) - 1)

    def update(self, item: T) -> None:
        """Replace the item with ``item``'s key by ``item``, where it stands.

        Args:
            item: The changed item (``old.model_copy(update={...})``).

        Raises:
            KeyError: No item has that key.
        """
        key = self._key(item)
        self._check()
        if key not in self._items:
            raise KeyError(f"{self._label} has no item {key!r}; append or prepend it")
        old = self._items[key]
        self._items[key] = item
        if self._mode == _OPEN:
            self._undo.append(("put", key, old))
            self._patch(self._render(item, key), f"#{item_id(self._container, key)}", "outer")

    def delete(self, key: object) -> bool:
        """Remove the item with this key; False if there was none (already gone).

        Args:
            key: The item's key.

        Returns:
            True if an item was removed.
        """
        self._check()
        text = str(key)
        if text not in self._items:
            return False
        self._drop(self._order.index(text))
        return True

    def reset(self, items: Iterable[T] = ()) -> None:
        """Make the stream hold ``items`` (the last ``limit`` of them), in order.

        Args:
            items: The new items; none empties the stream.
        """

        self._check()
        old = (self._items, self._order)
        self._set(list(items))
        if self._mode == _OPEN:
            self._undo.append(("swap", *old))
            self._patches.extend(self.resets(self._container, self._dialect))

    # What the transaction and the page helpers use.
    def resets(self, container: str, dialect: Dialect | None) -> list[ElementPatch]:
        """Patches that make the container hold exactly the current items.

        Datastar 1.0 morphs the container's children in one patch.  Beta's
        ``inner`` keeps only the last of several elements, so there the
        children are removed and the items appended.
        """
        pairs = self._pairs(container)
        html = "".join(to_html(self._element(item, dom_id)) for dom_id, item in pairs)
        selector = f"#{container}"
        if dialect is None or dialect.name != "beta":
            return [ElementPatch(html, selector, "inner")]
        patches = [ElementPatch("", f"{selector} > *", "remove")]
        if html:
            patches.append(ElementPatch(html, selector, "append"))
        return patches

    def elements(self, container: str) -> list[Any]:
        """The items rendered as elements, with their dom ids (a page's first render)."""
        return [self._element(item, key) for key, item in self._pairs(container)]

    def _guard(self, label: str) -> None:
        self._label = label
        if self._mode == _FREE:
            self._mode = _GUARDED

    def _open(self, container: str, dialect: Dialect) -> None:
        self._mode = _OPEN
        self._container = container
        self._dialect = dialect

    def _flush(self) -> list[ElementPatch]:
        patches, self._patches = self._patches, []
        return patches

    def _close(self, keep: bool) -> None:
        """End the transaction: keep what it did, or undo it."""
        if not keep:
            for step in reversed(self._undo):
                self._revert(step)
        self._undo = []
        self._patches = []
        self._mode = _GUARDED

    # Internals.
    def _settings(self) -> StreamConfig:
        if self._config is None:
            raise TypeError(
                f"{self._label} has no configuration: declare the field "
                "`name: Stream[Item] = stream(render, key=..., limit=...)`"
            )
        return self._config

    def _key(self, item: T) -> str:
        return str(self._settings().key(item))

    def _check(self) -> None:
        if self._mode == _GUARDED:
            raise ReadOnlyState(
                f"{self._label} cannot be changed outside an event: use "
                "`async with mutate(request, ...) as state:` (or an @event method)"
            )

    def _new_key(self, item: T) -> str:
        key = self._key(item)
        self._check()
        if key in self._items:
            raise ValueError(f"{self._label} already has an item {key!r}; update it instead")
        return key

    def _drop(self, position: int) -> None:
        key = self._order[position]
        item = self._items.pop(key)
        del self._order[position]
        if self._mode == _OPEN:
            self._undo.append(("insert", position, key, item))
            self._patch("", f"#{item_id(self._container, key)}", "remove")

    def _set(self, items: list[T]) -> None:
        limit = self._settings().limit
        kept: dict[str, T] = {}
        for item in items[-limit:]:
            key = self._key(item)
            if key in kept:
                raise ValueError(f"{self._label} got two items keyed {key!r}")
            kept[key] = item
        self._items = kept
        self._order = deque(kept)
        self._stored = []

    def _revert(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "pop":
            del self._items[self._order.pop()]
        elif kind == "popleft":
            del self._items[self._order.popleft()]
        elif kind == "insert":
            _, position, key, item = step
            self._order.insert(position, key)
            self._items[key] = item
        elif kind == "put":
            _, key, item = step
            self._items[key] = item
        else:  # "swap": a reset
            _, self._items, self._order = step

    def _patch(self, html: str, selector: str, mode: Any) -> None:
        self._patches.append(ElementPatch(html, selector, mode))

    def _pairs(self, container: str) -> Iterator[tuple[str, T]]:
        items = self._items
        return ((item_id(container, key), items[key]) for key in self._order)

    def _render(self, item: T, key: str) -> str:
        """One item's HTML, in the container of the running transaction."""
        return to_html(self._element(item, item_id(self._container, key)))

    def _element(self, item: T, dom_id: str) -> Any:
        element = self._settings().render(item)
        attributes = getattr(element, "attrs", None)
        if attributes is None and hasattr(element, "__ft__"):
            element = element.__ft__()
            attributes = getattr(element, "attrs", None)
        if not isinstance(attributes, dict):
            raise TypeError(
                f"the render function of {self._label} returned {type(element).__name__}; "
                "return one FastHTML element (its id becomes the item's dom id)"
            )
        # A new dict rather than a copy of the element (a copy costs more than
        # the rest of an append): render functions return elements of their own.
        element.attrs = {**attributes, "id": dom_id}
        return element


@cache
def stream_fields(cls: type[ReactiveState]) -> tuple[str, ...]:
    """The names of ``cls``'s stream fields (none for most classes: then free)."""
    return tuple(
        name
        for name, info in cls.__pydantic_fields__.items()
        if any(isinstance(item, StreamConfig) for item in info.metadata)
    )


def streams_of(state: ReactiveState) -> list[tuple[str, Stream[Any]]]:
    names = stream_fields(type(state))
    if not names:
        return []
    values = state.__dict__
    return [(name, values[name]) for name in names if isinstance(values.get(name), Stream)]


def guard_streams(state: ReactiveState) -> None:
    """A request resolved ``state``: its streams change only inside transactions now."""
    for name, value in streams_of(state):
        value._guard(f"{type(state).__name__}.{name}")


def open_streams(
    state: ReactiveState, namespace: str, dialect: Dialect
) -> list[Stream[Any]]:
    """Start recording the streams of ``state`` for a transaction; returns them."""
    opened = []
    for name, value in streams_of(state):
        value._open(container_id(namespace, name), dialect)
        opened.append(value)
    return opened


def flush_streams(streams: list[Stream[Any]]) -> list[ElementPatch]:
    """The element patches of what ``streams`` did since the last flush."""
    if not streams:
        return []
    return [patch for value in streams for patch in value._flush()]


def close_streams(streams: list[Stream[Any]], keep: bool) -> None:
    for value in streams:
        value._close(keep)


def stream_resets(state: ReactiveState, namespace: str, dialect: Dialect) -> list[ElementPatch]:
    """Patches re-rendering every stream container of ``state`` (a page resyncing)."""
    return [
        patch
        for name, value in streams_of(state)
        for patch in value.resets(container_id(namespace, name), dialect)
    ]


def stream_of(state: ReactiveState, name: str) -> Stream[Any]:
    value = state.__dict__.get(name) if name in stream_fields(type(state)) else None
    if not isinstance(value, Stream):
        raise AttributeError(f"{type(state).__name__} has no stream field {name!r}")
    return value
