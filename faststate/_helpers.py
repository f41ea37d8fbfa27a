"""Page helpers: attribute dicts and expressions to splat into elements.

They follow the protocol of the request that resolved the instance, so one
page template serves Datastar 1.0 and beta alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from faststate._collections import container_id, stream_of
from faststate._errors import GENERAL
from faststate._events import EventSpec, event_spec
from faststate._live.presence import GUEST
from faststate._protocol import ERRORS_SIGNAL, VIEWERS_SIGNAL, dump_json
from faststate._state import ReactiveState, bindable_fields, placement_of, signal_attributes


def signal_name(state: ReactiveState) -> str:
    """The namespace of this instance's signals (``CounterState``, ``TodoList_42``).

    The class name for GLOBAL, SESSION and USER; ``ClassName_<key>`` for
    COMPONENT and RECORD, the key escaped injectively to letters, digits and ``_``.

    Args:
        state: An instance resolved by ``use_state``, an event or ``mutate``.

    Returns:
        The namespace, e.g. ``"CounterState"``.
    """
    return placement_of(state).namespace


def ref(state: ReactiveState, name: str) -> str:
    """``$Namespace.field``: a Datastar expression reading one public field.

    Args:
        state: A resolved instance.
        name: A public field or computed field of its class.

    Returns:
        The expression, e.g. ``"$CounterState.count"``.

    Raises:
        AttributeError: ``name`` is not a public field (unknown, or ``exclude=True``).
    """
    cls = type(state)
    field = cls.model_fields.get(name)
    if field is not None and field.exclude is True:
        raise AttributeError(f"{cls.__name__}.{name} is server-only (exclude=True)")
    if field is None and name not in cls.model_computed_fields:
        raise AttributeError(f"{cls.__name__} has no public field {name!r}")
    return f"${signal_name(state)}.{name}"


def bind(state: ReactiveState, name: str) -> dict[str, str]:
    """Attributes binding an input two-way to a ``Bindable`` field: ``data-bind``, and
    ``aria-invalid="true"`` while the page shows an error for the field.

    What the user types travels with the instance's next event, validated
    with the field's type; what the server sets shows in the input.

    Args:
        state: A resolved instance.
        name: A field declared ``Bindable[...]``.

    Returns:
        ``{"data-bind": ..., "data-attr:aria-invalid": ...}`` (the attribute
        names of the request's Datastar dialect).

    Raises:
        TypeError: The field is not ``Bindable``.
    """
    if name not in bindable_fields(type(state)):
        raise TypeError(
            f"{type(state).__name__}.{name} is not Bindable: declare it "
            f"`{name}: Bindable[...]` to let the page write it"
        )
    invalid = f"{_message(state, name)} ? 'true' : false"  # false: no attribute
    return {
        "data-bind": f"{signal_name(state)}.{name}",
        placement_of(state).protocol.attr_attribute("aria-invalid"): invalid,
    }


def error(state: ReactiveState, name: str | None = None) -> dict[str, str]:
    """``data-text`` and ``data-show`` of the message the page shows for ``name``.

    ``error(signup, "email")`` shows why the last event refused the email
    (an invalid bindable value or parameter, or ``Invalid(email=...)``) and
    is hidden otherwise; nested parameters use dotted names
    (``"address.zip"``).  ``error(signup)`` shows a message naming no field:
    ``Invalid("...")``, or that the event failed.  The next accepted event
    of the instance clears them.

    Args:
        state: A resolved instance.
        name: A field or event parameter (dotted for nested ones); ``None``
            for the message that names no field.

    Returns:
        ``{"data-text": ..., "data-show": ...}``.
    """
    message = _message(state, name)
    return {"data-text": message, "data-show": f"!!{message}"}


def _message(state: ReactiveState, name: str | None) -> str:
    """A Datastar expression: the error message shown for ``name``, or ``''``."""
    messages = f"JSON.parse(${signal_name(state)}.{ERRORS_SIGNAL} || '{{}}')"
    return f"({messages}[{dump_json(name or GENERAL)}] || '')"


def text(state: ReactiveState, name: str) -> dict[str, str]:
    """``{"data-text": "$Namespace.field"}``: an element showing one public field.

    Args:
        state: A resolved instance.
        name: A public field or computed field of its class.

    Returns:
        The attribute dict, e.g. ``{"data-text": "$CounterState.count"}``.

    Raises:
        AttributeError: ``name`` is not a public field.
    """
    return {"data-text": ref(state, name)}


def viewer_count(state: ReactiveState) -> dict[str, str]:
    """``data-text`` of how many sessions have a live page of ``state`` open.

    Args:
        state: An instance of a class registered with ``presence``.

    Returns:
        ``{"data-text": "$Namespace._viewers.length"}``.

    Raises:
        TypeError: The class was registered without ``presence``.
    """
    return {"data-text": f"{_viewers(state)}.length"}


def viewer_names(state: ReactiveState) -> dict[str, str]:
    """``data-text`` of the logged-in viewers of ``state``: ``"alice, bob"`` (guests left out).

    Args:
        state: An instance of a class registered with ``presence``.

    Returns:
        ``{"data-text": ...}`` joining the distinct labels other than ``"guest"``.

    Raises:
        TypeError: The class was registered without ``presence``.
    """
    names = f"[...new Set({_viewers(state)})].filter(name => name !== {dump_json(GUEST)})"
    return {"data-text": f"{names}.join(', ')"}


def _viewers(state: ReactiveState) -> str:
    if not placement_of(state).presence:
        raise TypeError(
            f"{type(state).__name__} does not track its viewers: register it with presence=True"
        )
    return f"${signal_name(state)}.{VIEWERS_SIGNAL}"


def stream_view(
    state: ReactiveState, name: str, tag: Callable[..., Any], **attributes: Any
) -> Any:
    """The container of a ``Stream`` field with its items: ``stream_view(room, "messages", Ul)``.

    ``tag`` makes the container (``Ul``, ``Tbody``, ``Div``...), given the
    rendered items and ``attributes``; its id (``ChatRoom-messages``) is what
    the stream's patches target, so it holds the items and nothing else.

    Args:
        state: A resolved instance.
        name: The name of a ``Stream`` field of its class.
        tag: The element constructor of the container, called as
            ``tag(*items, **attributes, id=...)``.
        **attributes: More attributes of the container (``cls="chat"``);
            not ``id``, which faststate sets.

    Returns:
        The container element holding the rendered items.
    """
    items = stream_of(state, name).elements(container_id(signal_name(state), name))
    return tag(*items, **attributes, id=container_id(signal_name(state), name))


def signals(state: ReactiveState) -> dict[str, str]:
    """``{"data-signals": <json>}`` with the public state under its namespace.

    What ``state.__ft__()`` puts on its element; use it to carry the state
    on an element of your own.

    Args:
        state: A resolved instance.

    Returns:
        The attribute dict.
    """
    return signal_attributes(state)


def action(method: Callable[..., Any], *, form: bool = False, **params: Any) -> str:
    """A Datastar expression that runs an event: ``action(counter.increment, amount=1)``.

    ``params`` go into the query string and win over page signals of the
    same name.  ``form=True`` sends the fields of the closest ``<form>``
    instead of the page's signals, files included when the form has
    ``enctype="multipart/form-data"`` (FastHTML's ``Form`` default).

    Args:
        method: An ``@event`` method of a resolved instance (``counter.increment``),
            so a typo is an ``AttributeError``, not a 404.
        form: Send the closest form's fields (files included) instead of signals.
        **params: Event parameters put into the query string; ``None`` values
            are left out, lists repeat the name.

    Returns:
        The expression, e.g. ``@post('/CounterState/increment?amount=1', {...})``,
        carrying the component or record key of the instance.

    Raises:
        TypeError: ``method`` is not an ``@event`` method of a state instance.
    """
    state, spec, url = _event_target(method, params)
    return placement_of(state).protocol.fetch_action(
        spec.method, url, signal_name(state), bindable_fields(type(state)), form
    )


def event_url(method: Callable[..., Any], **params: Any) -> str:
    """The URL that ``action(method, **params)`` posts to.

    Args:
        method: An ``@event`` method of a resolved instance.
        **params: Event parameters for the query string.

    Returns:
        The path and query, e.g. ``/CounterState/increment?amount=1``.
    """
    return _event_target(method, params)[2]


def _event_target(
    method: Callable[..., Any], params: dict[str, Any]
) -> tuple[ReactiveState, EventSpec, str]:
    state = getattr(method, "__self__", None)
    spec = event_spec(getattr(method, "__func__", None))
    if not isinstance(state, ReactiveState) or spec is None:
        raise TypeError(
            "action() takes an @event method of a state instance, e.g. action(counter.increment)"
        )
    where = placement_of(state)
    path = where.url_prefix + (spec.path or f"/{type(state).__name__}/{spec.name}")
    query: list[tuple[str, str]] = []
    if where.client_param is not None:
        query.append(where.client_param)
    for name, value in params.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple | set | frozenset) else [value]
        query.extend((name, _query_value(v)) for v in values)
    url = f"{path}?{urlencode(query)}" if query else path
    return state, spec, url


def on(
    dom_event: str, method: Callable[..., Any], *, form: bool = False, **params: Any
) -> dict[str, str]:
    """``{"data-on:click": action(...)}`` (``data-on-click`` in beta).

    ``Form(..., **on("submit", profile.set_avatar, form=True))`` uploads the
    form's files (the browser's own submission is prevented).

    Args:
        dom_event: A DOM event or Datastar trigger, with modifiers in
            Datastar's syntax: ``"click"``, ``"keydown"``,
            ``"click__debounce.300ms"``, ``"load"``, ``"interval__duration.5s"``.
        method: An ``@event`` method of a resolved instance.
        form: Send the closest form's fields (files included) instead of signals.
        **params: Event parameters put into the query string (see ``action``).

    Returns:
        A one-item attribute dict to splat into an element.

    Raises:
        TypeError: ``method`` is not an ``@event`` method of a state instance.
    """

    state = getattr(method, "__self__", None)
    if not isinstance(state, ReactiveState):
        raise TypeError("on() takes an @event method of a state instance")
    attribute = placement_of(state).protocol.on_attribute(dom_event)
    return {attribute: action(method, form=form, **params)}


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
