"""The ``@event`` decorator and the binding of request values to parameters.

Only methods marked with ``@event`` are reachable over HTTP, and only their
named, typed parameters can be filled from a request.  Values are looked up
by name in the query string, then in the top-level keys of the Datastar
body (the page's signals) or the form, then the defaults; pydantic
validates and converts them from the annotations.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Final, Literal, TypeVar, overload
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import HTTPConnection

from faststate._errors import BindError
from faststate._guards import FormFields
from faststate._protocol import PATCH_MODES, PatchMode
from faststate._state import ReactiveState, bindable_fields
from faststate._uploads import UploadParam, UploadPolicy, bind_uploads, upload_of

F = TypeVar("F", bound=Callable[..., Any])
EventKind = Literal["sync", "async", "generator", "async_generator"]

EVENT_ATTRIBUTE: Final = "__faststate_event__"
EVENT_METHODS: Final = frozenset(("post", "put", "patch", "delete"))
_NO_DEFAULT: Final = inspect.Parameter.empty
#: ``_plain_value``'s answer for a value it leaves to pydantic.
_UNBOUND: Final = object()
_SEQUENCE_ORIGINS: Final = (list, tuple, set, frozenset, Sequence, Iterable)


@dataclass
class _Param:
    name: str
    adapter: TypeAdapter[Any] | None  # None: receives the request, a state or files
    default: Any
    many: bool  # a sequence type: takes every repeated query value
    state: type[ReactiveState] | None = None  # receives that class's instance
    upload: UploadParam | None = None  # receives uploaded files
    #: Annotated plainly ``int`` or ``str``: the usual values bind without pydantic.
    plain: type | None = None


@dataclass
class EventSpec:
    """What ``@event`` knows about one method."""

    name: str
    func: Callable[..., Any]
    path: str | None
    method: str
    selector: str | None
    mode: PatchMode
    kind: EventKind
    broadcast: bool = False
    thread: bool = False
    _params: list[_Param] | None = field(default=None, repr=False)
    _state_params: list[tuple[str, type[ReactiveState]]] | None = field(default=None, repr=False)
    _upload_params: list[UploadParam] | None = field(default=None, repr=False)

    def params(self) -> list[_Param]:
        """The bindable parameters, built on first use from the annotations."""
        if self._params is None:
            self._params = _build_params(self.func)
        return self._params

    def state_params(self) -> list[tuple[str, type[ReactiveState]]]:
        """Parameters annotated with a state class: they receive its instance."""
        if self._state_params is None:
            self._state_params = [(p.name, p.state) for p in self.params() if p.state is not None]
        return self._state_params

    def upload_params(self) -> list[UploadParam]:
        """Parameters annotated ``UploadFile`` or ``list[UploadFile]``."""
        if self._upload_params is None:
            self._upload_params = [p.upload for p in self.params() if p.upload is not None]
        return self._upload_params

    def upload_policy(self) -> UploadPolicy | None:
        """The limits of this event's upload bodies; None without upload parameters."""
        uploads = self.upload_params()
        return UploadPolicy(tuple(uploads)) if uploads else None

    def bind(
        self,
        connection: HTTPConnection,
        body: Mapping[str, Any],
    ) -> tuple[dict[str, Any], list[BindError]]:
        """Arguments for the method from ``connection`` and ``body``, or errors."""
        kwargs: dict[str, Any] = {}
        errors: list[BindError] = []
        query = _query(connection)
        for param in self.params():
            if param.adapter is None:
                if param.state is None and param.upload is None:
                    kwargs[param.name] = connection
                continue
            values = query.get(param.name, ())
            if not values and isinstance(body, FormFields):
                values = body.get(param.name, ())
            raw: Any
            if values:
                raw = values if param.many or len(values) > 1 else values[0]
            elif param.name in body and not isinstance(body, FormFields):
                raw = body[param.name]
            elif param.default is not _NO_DEFAULT:
                kwargs[param.name] = param.default
                continue
            else:
                errors.append(BindError(param.name, "Field required", "missing"))
                continue
            if param.plain is not None:
                value = _plain_value(param.plain, raw)
                if value is not _UNBOUND:
                    kwargs[param.name] = value
                    continue
            try:
                kwargs[param.name] = param.adapter.validate_python(raw)
            except ValidationError as exc:
                errors.extend(BindError.all(param.name, exc))
        uploads = self.upload_params()
        if uploads:
            files, upload_errors = bind_uploads(uploads, connection.scope, body)
            kwargs.update(files)
            errors += upload_errors
        return kwargs, errors


@dataclass(frozen=True)
class Redirect:
    """What ``redirect(url)`` returns: the page goes to ``url`` after the event."""

    url: str


def redirect(url: str) -> Redirect:
    """Return this from an event (alone or with elements) to make the page go to ``url``.

    The event's changes are saved and sent first; then the browser navigates,
    so the address bar changes (a ``RedirectResponse`` returned by an event
    does the same).  Only relative URLs and http(s) URLs are accepted.

    Args:
        url: A relative URL (``"/welcome"``) or an ``http``/``https`` URL.

    Returns:
        A marker the event's answer turns into the navigation.

    Raises:
        ValueError: ``url`` has another scheme (``javascript:``, ``data:``...).
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("", "http", "https"):
        raise ValueError(f"redirect() goes to relative or http(s) URLs only, not {scheme}:")
    return Redirect(url)


@dataclass(frozen=True)
class PageSignals:
    """What ``set_signals(...)`` returns: signals of the page that fired the event."""

    values: dict[str, Any]


def set_signals(**values: Any) -> PageSignals:
    """Return this from an event (alone or with elements) to set signals of the page
    that fired it, and only that page: ``return set_signals(message="")`` empties
    the input bound to ``$message`` once the message was accepted.

    For the page's own signals (inputs that are event parameters); a state's
    fields change by assignment.  Sent after the event's changes are saved.

    Args:
        **values: Top-level page signals by name, with their new values.

    Returns:
        A marker the event's answer turns into a signal patch for the caller.

    Raises:
        TypeError: No signal was given.
    """
    if not values:
        raise TypeError("set_signals() needs at least one signal: set_signals(message='')")
    return PageSignals(values)


@overload
def event(func: F, /) -> F: ...
@overload
def event(
    *,
    path: str | None = None,
    method: str = "post",
    selector: str | None = None,
    mode: PatchMode = "outer",
    merge_mode: str | None = None,
    broadcast: bool = False,
    thread: bool = False,
) -> Callable[[F], F]: ...
def event(
    func: Callable[..., Any] | None = None,
    /,
    *,
    path: str | None = None,
    method: str = "post",
    selector: str | None = None,
    mode: PatchMode = "outer",
    merge_mode: str | None = None,
    broadcast: bool = False,
    thread: bool = False,
) -> Any:
    """Mark a ``ReactiveState`` method as an HTTP event.

    ``selector`` and ``mode`` say where returned elements are patched;
    ``merge_mode="morph"`` (the seed's spelling) is the same as ``mode="outer"``.
    Signal changes reach every live page showing the instance; returned
    elements go to the caller only, unless ``broadcast=True`` (then they must
    not depend on who asked).

    A plain ``def`` event runs on the event loop, like the short state change
    it should be; ``thread=True`` runs it (and each step of a generator) in
    a worker thread instead, for blocking work.

    Used bare (``@event``) or with options (``@event(broadcast=True)``).  The
    method may be a ``def``, an ``async def``, a generator or an async
    generator (each ``yield`` sends what changed so far).  Its parameters are
    bound by name from the query string, then the page's signals (or form
    fields), then their defaults, and validated from their annotations; a
    parameter annotated ``Request`` gets the request, one annotated with a
    registered state class gets that instance, one annotated ``UploadFile``
    gets an uploaded file.  What it returns becomes the answer: ``None`` (the
    signal patch), elements or HTML strings (element patches), ``redirect``,
    ``set_signals``, or any Starlette ``Response``.

    Args:
        func: The method, when used bare as ``@event``.
        path: The event's URL path instead of ``/<Class>/<method>`` (must
            start with ``/``; the registration's ``prefix`` goes before it).
        method: The HTTP method: ``"post"`` (default), ``"put"``, ``"patch"``
            or ``"delete"``.
        selector: The CSS selector returned elements are patched into;
            ``None`` targets them by their own ``id``.
        mode: How returned elements are patched: ``"outer"`` (morph, default),
            ``"inner"``, ``"replace"``, ``"prepend"``, ``"append"``,
            ``"before"``, ``"after"`` or ``"remove"``.
        merge_mode: The seed's spelling; only ``"morph"`` (= ``mode="outer"``).
        broadcast: Send returned elements to every live page showing the
            instance, not only to the caller.
        thread: Run a plain ``def`` event (or each step of a generator) in a
            worker thread.

    Returns:
        The method itself, marked (or a decorator doing that, with options).

    Raises:
        ValueError: An unknown ``method`` or ``mode``, a ``path`` not starting
            with ``/``, a method name starting with ``_``, or ``thread=True``
            on an ``async`` method.
        TypeError: The method takes ``*args``, ``**kwargs``, positional-only
            parameters or parameters starting with ``_``.
    """


    method = method.lower()
    if method not in EVENT_METHODS:
        raise ValueError(f"event method must be one of {sorted(EVENT_METHODS)}, not {method!r}")
    if merge_mode is not None:
        if merge_mode != "morph":
            raise ValueError("merge_mode accepts only 'morph'; use mode= for the others")
        mode = "outer"
    if mode not in PATCH_MODES:
        raise ValueError(f"unknown patch mode {mode!r}")
    if path is not None and not path.startswith("/"):
        raise ValueError("event path must start with '/'")

    def decorate(target: F) -> F:
        name = target.__name__
        if name.startswith("_"):
            raise ValueError(f"{name}: names starting with '_' cannot be events")
        _check_signature(target)
        kind = _kind(target)
        if thread and kind in ("async", "async_generator"):
            raise ValueError(f"{name}: thread=True is for plain def events, not async ones")
        spec = EventSpec(name, target, path, method, selector, mode, kind, broadcast, thread)
        setattr(target, EVENT_ATTRIBUTE, spec)
        return target

    return decorate(func) if func is not None else decorate


def bound_values(
    cls: type[BaseModel], namespace: str, values: Mapping[str, Any]
) -> tuple[dict[str, Any], list[BindError]]:
    """The page's values of ``cls``'s ``Bindable`` fields in an event's signals,
    validated with each field's type; errors name the field."""
    fields = bindable_fields(cls)
    sent = values.get(namespace) if fields and not isinstance(values, FormFields) else None
    if not isinstance(sent, dict):
        return {}, []
    bound: dict[str, Any] = {}
    errors: list[BindError] = []
    for name in fields.intersection(sent):
        try:
            bound[name] = _field_adapter(cls, name).validate_python(sent[name])
        except ValidationError as exc:
            errors.extend(BindError.all(name, exc))
    return bound, errors


@cache
def _field_adapter(cls: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = cls.__pydantic_fields__[name]
    # Typed Any: pydantic's stubs have typed this argument differently release by release.
    annotation: Any = Annotated[info.annotation, *info.metadata]
    return TypeAdapter(annotation)


def _query(connection: HTTPConnection) -> dict[str, list[str]]:
    """Every query value by name (the same parse as Starlette's, in one step)."""
    raw: bytes = connection.scope.get("query_string", b"")
    if not raw:
        return {}
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return parse_qs(text, keep_blank_values=True)
    # Nothing escaped (the usual ``amount=1&record_id=42``): the same result
    # as parse_qs without its unquoting, which costs more than the rest.
    values: dict[str, list[str]] = {}
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            values.setdefault(name, []).append(value)
    return values


def event_spec(obj: Any) -> EventSpec | None:
    spec = getattr(obj, EVENT_ATTRIBUTE, None)
    return spec if isinstance(spec, EventSpec) else None


def _kind(func: Callable[..., Any]) -> EventKind:
    if inspect.isasyncgenfunction(func):
        return "async_generator"
    if inspect.isgeneratorfunction(func):
        return "generator"
    if inspect.iscoroutinefunction(func):
        return "async"
    return "sync"


def _check_signature(func: Callable[..., Any]) -> None:
    params = list(inspect.signature(func).parameters.values())
    if not params:
        raise TypeError(f"{func.__name__}: an event is a method and needs self")
    for param in params[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(
                f"{func.__name__}: events take named parameters only, not *args/**kwargs"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{func.__name__}: parameter {param.name} cannot be positional-only")
        if param.name.startswith("_"):
            raise TypeError(f"{func.__name__}: parameter {param.name} cannot start with '_'")


def _build_params(func: Callable[..., Any]) -> list[_Param]:
    hints = typing.get_type_hints(func, include_extras=True)
    params = []
    for param in list(inspect.signature(func).parameters.values())[1:]:
        annotation = hints.get(param.name, Any)
        upload = upload_of(annotation)
        if upload is not None:
            limits, many = upload
            spec = UploadParam(param.name, limits, many, param.default)
            params.append(_Param(param.name, None, param.default, many, upload=spec))
            continue
        if _is_request_type(annotation):
            params.append(_Param(param.name, None, param.default, False))
            continue
        if isinstance(annotation, type) and issubclass(annotation, ReactiveState):
            params.append(_Param(param.name, None, param.default, False, state=annotation))
            continue
        many = _is_sequence(annotation)
        plain = annotation if annotation in (int, str) else None
        params.append(_Param(param.name, TypeAdapter(annotation), param.default, many, plain=plain))
    return params


def _plain_value(plain: type | None, raw: Any) -> Any:
    """``raw`` as pydantic would validate it for a plain ``int`` or ``str``
    parameter, where that needs no pydantic (most values: a validator round
    costs more than the rest of binding); ``_UNBOUND`` otherwise."""
    kind = type(raw)
    if plain is str and kind is str:
        return raw
    if plain is int:
        if kind is int:
            return raw
        # Digits only (ASCII: "²" is a digit to str.isdigit), well under
        # Python's limit on the digits of an int parsed from text.
        if kind is str and len(raw) < 19 and raw.isascii() and raw.isdigit():
            return int(raw)
    return _UNBOUND


def _is_request_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, HTTPConnection)


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(annotation))
    if origin is None:
        return annotation in (list, tuple, set, frozenset)
    return isinstance(origin, type) and issubclass(origin, _SEQUENCE_ORIGINS) and origin is not str
