"""Watching events: the record each one leaves, the hooks that get it, its log line.

An event is watched when the middleware has an ``on_event`` hook or the
``faststate.events`` logger is enabled for DEBUG; it is then timed from the
moment faststate takes the request (before its body is read) until its
answer is ready (for a generator event, until its last step was sent), and
one ``EventRecord`` goes to every hook and to the log.  An unwatched event
takes no clock reading and builds nothing.

A record names the state class and the event, and measures; it never
carries a parameter, a field, a key or anything else a user typed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from time import perf_counter
from typing import Final, Literal, TypeVar

T = TypeVar("T")

EventOutcome = Literal["ok", "rejected", "refused", "failed"]
"""How an event ended (``EventRecord.outcome`` says when each applies)."""
OK: Final = "ok"
REJECTED: Final = "rejected"
REFUSED: Final = "refused"
FAILED: Final = "failed"

#: Where the middleware leaves the ``Watch`` of an event request it guarded (None: unwatched).
WATCH_KEY: Final = "faststate.watch"

#: One DEBUG line per watched event; the ``faststate`` logger's child.
logger = logging.getLogger("faststate.events")


@dataclass(frozen=True, slots=True)
class EventRecord:
    """What one event did, for an ``on_event`` hook: names and measures, never values.

    Attributes:
        state_class: The name of the state class (``"CounterState"``).
        event: The name of the event method (``"increment"``).
        outcome: ``"ok"``: the event ran and its changes were committed (a
            generator event: all its steps).  ``"rejected"``: the input was
            refused with messages on the page, so nothing changed: invalid
            or missing parameters or ``Bindable`` values, a refused upload,
            or ``raise Invalid(...)`` in the method.  ``"refused"``: the event
            was not run or not kept, and the answer is an error status
            below 500 or a 503: the request guard (no ``Datastar-Request``
            header, cross-site, body too large or too slow), no user (401),
            no or a bad id (400), ``authorize`` said no (403), an
            ``HTTPException`` the method raised, a concurrent change or a
            lost lock (409), the store unreachable or an instance locked for
            longer than the store waits (503).  ``"failed"``: the method or
            the commit raised, or a 5xx other than 503; the page is told
            that the action failed and the server log has the details.
        status: The HTTP status of the answer (200 for ``rejected`` events and
            for failures the page is shown).
        duration: Seconds from when faststate took the request, before its
            body was read, until the answer was ready; for a generator event,
            until its last step was sent.
        lock_wait: Seconds spent waiting for the locks of the instances the
            event used (included in ``duration``).
        patch_bytes: Bytes of Server-Sent Events sent as the answer (signal
            and element patches, error messages); 0 for an empty answer
            (204), an error status, or a ``Response`` the event returned.
    """

    state_class: str
    event: str
    outcome: EventOutcome
    status: int
    duration: float
    lock_wait: float
    patch_bytes: int


EventHook = Callable[[EventRecord], object]
"""A callable given each ``EventRecord``, on the event loop, before the answer is sent."""


class Watch:
    """The clock of one watched event, and its outcome as the code finds it out."""

    __slots__ = ("lock_wait", "outcome", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.lock_wait = 0.0
        self.outcome: EventOutcome = OK

    async def locked(self, lock: AbstractAsyncContextManager[T]) -> T:
        """``await lock.__aenter__()``, the wait added to ``lock_wait``."""
        started = perf_counter()
        try:
            return await lock.__aenter__()
        finally:
            self.lock_wait += perf_counter() - started


class Observer:
    """The middleware's ``on_event`` hooks, and whether an event is watched at all."""

    __slots__ = ("hooks",)

    def __init__(self, on_event: EventHook | Iterable[EventHook] | None = None) -> None:
        hooks: tuple[EventHook, ...]
        if on_event is None:
            hooks = ()
        elif callable(on_event):
            hooks = (on_event,)
        else:
            hooks = tuple(on_event)
        for hook in hooks:
            if not callable(hook):
                raise TypeError(f"on_event needs callables, got {hook!r}")
            if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
                getattr(hook, "__call__", None)  # noqa: B004 - an object with async __call__
            ):
                raise TypeError(
                    "on_event hooks are called synchronously, before the answer is sent: "
                    "give a plain function (hand slow work to a queue or a task)"
                )
        self.hooks = hooks

    def watch(self) -> Watch | None:
        """A started ``Watch`` when anyone watches events, else None (and no clock read)."""
        if self.hooks or logger.isEnabledFor(logging.DEBUG):
            return Watch(perf_counter())
        return None

    def report(
        self,
        watch: Watch,
        state_class: str,
        event: str,
        status: int,
        patch_bytes: int,
        outcome: EventOutcome | None = None,
    ) -> None:
        """End ``watch``: its record goes to the log and to every hook.

        A hook that raises is logged and skipped; the others still run.
        """
        record = EventRecord(
            state_class,
            event,
            outcome or watch.outcome,
            status,
            perf_counter() - watch.started,
            watch.lock_wait,
            patch_bytes,
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "faststate: %s.%s %s (%d) in %.2f ms, lock wait %.2f ms, %d bytes",
                state_class,
                event,
                record.outcome,
                status,
                record.duration * 1000,
                record.lock_wait * 1000,
                patch_bytes,
            )
        for hook in self.hooks:
            try:
                hook(record)
            except Exception:
                logger.exception("faststate: the on_event hook %r failed", hook)


def outcome_of_status(status: int) -> EventOutcome:
    """How an error answer counts: 5xx but 503 failed, every other status refused."""
    return FAILED if status >= 500 and status != 503 else REFUSED
