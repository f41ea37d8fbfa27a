"""Errors on the page: what an event refused, and why, per field.

The Datastar client applies only the bodies of 200 answers, so a refused
event is answered 200 with one client-only signal under the instance's
namespace, ``_errors``: a JSON object, as a string, of one message per
field or parameter (``""`` for a message naming none).  A string rather
than an object because a JSON Merge Patch cannot replace an object whole
and the 1.0 client leaves elements bound to deleted signals stale; one
string is set and cleared in one step by both clients.

The page sends ``_errors`` back with its next event, so an accepted event
clears it only when something is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from faststate._guards import FormFields
from faststate._protocol import ERRORS_SIGNAL, dump_json

#: The key of a message that names no field.
GENERAL: Final = ""
#: What the page shows when an event raised anything but ``Invalid``.
FAILED_MESSAGE: Final = "Something went wrong, so nothing was changed. Please try again."


class Invalid(Exception):
    """Raise inside an event to refuse it: ``raise Invalid(email="that domain is closed")``.

    Nothing the event changed is kept, saved or pushed, and the page shows
    each message through ``error(state, "email")``; a message given without
    a field (``raise Invalid("try again later")``) shows through
    ``error(state)``.  Field names may be dotted (``**{"address.zip": "..."}``).

    Args:
        message: A message that names no field, shown by ``error(state)``.
        **fields: One message per field or parameter name.

    Raises:
        TypeError: Neither a message nor a field was given.
    """


    def __init__(self, message: str | None = None, /, **fields: str) -> None:
        if message is None and not fields:
            raise TypeError("Invalid() needs a message, or one per field: Invalid(email='...')")
        self.messages: dict[str, str] = {GENERAL: message} if message is not None else {}
        self.messages.update(fields)
        super().__init__(message or "; ".join(f"{k}: {v}" for k, v in fields.items()))


@dataclass(frozen=True)
class BindError:
    """One value of a request that could not become an event argument or field."""

    param: str  # the parameter or field, with a dotted path into nested models
    msg: str
    type: str

    @classmethod
    def all(cls, param: str, exc: ValidationError) -> list[BindError]:
        """Every error pydantic found, each at its dotted path, never echoing the input."""
        return [
            cls(
                ".".join((param, *(str(part) for part in error["loc"]))),
                error["msg"],
                error["type"],
            )
            for error in exc.errors(include_url=False, include_input=False)
        ]

    def as_dict(self) -> dict[str, str]:
        return {"param": self.param, "msg": self.msg, "type": self.type}


def messages_of(errors: Iterable[BindError]) -> dict[str, str]:
    """One message per path: the first found."""
    messages: dict[str, str] = {}
    for error in errors:
        messages.setdefault(error.param, error.msg)
    return messages


def errors_signal(messages: Mapping[str, str]) -> str:
    """The value of the ``_errors`` signal showing ``messages`` (``""`` shows none)."""
    return dump_json(dict(messages)) if messages else ""


def errors_shown(values: Mapping[str, Any], namespace: str) -> bool:
    """Whether the page that sent ``values`` shows errors of the instance at ``namespace``."""
    if isinstance(values, FormFields):  # a form sends no signals: clear what may show
        return True
    own = values.get(namespace)
    return isinstance(own, dict) and bool(own.get(ERRORS_SIGNAL))
