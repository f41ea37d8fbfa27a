"""Versions of stored copies: which save a page has seen, and of which copy."""

from __future__ import annotations

import secrets
from typing import Final

#: A version is ``incarnation << COUNT_BITS | saves``: the incarnation is drawn at
#: random when a stored copy is created, so a page can tell "the same instance,
#: a later save" from "a new copy" (a store that lost its data, a worker that
#: restarted): only the first can be caught up by patches.  Both fit the 53 bits
#: a JavaScript number holds exactly.
COUNT_BITS: Final = 32
INCARNATION_BITS: Final = 21


def first_version() -> int:
    """The version of a copy just created: a fresh incarnation, no save yet."""
    return (secrets.randbits(INCARNATION_BITS) or 1) << COUNT_BITS


def same_incarnation(version: int, other: int) -> bool:
    return version >> COUNT_BITS == other >> COUNT_BITS
