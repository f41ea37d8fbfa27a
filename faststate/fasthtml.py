"""FastHTML extras: an app class with faststate built in, and the client script."""

from __future__ import annotations

from typing import Any, Literal

from fastcore.xml import FT
from fasthtml.common import FastHTML, Script

from faststate._app import StateApp
from faststate._clients import DATASTAR_BETA_SRC, DATASTAR_V1_SRC, datastar_src
from faststate._middleware import FastStateMiddleware

__all__ = ["DATASTAR_BETA_SRC", "DATASTAR_V1_SRC", "FastStateHTML", "datastar_script"]


def datastar_script(src: str | None = None, protocol: Literal["v1", "beta"] = "v1") -> FT:
    """The ``<script type="module">`` tag loading the Datastar client.

    By default from the public CDN, in the version matching ``protocol``;
    ``src`` points it elsewhere (a self-hosted copy).

    Args:
        src: The script's URL (``"/static/datastar.js"``); ``None``: the CDN.
        protocol: The Datastar dialect the middleware speaks, ``"v1"`` or ``"beta"``.

    Returns:
        A FastHTML ``Script`` element to put in the page's headers.
    """
    return Script(type="module", src=datastar_src(protocol) if src is None else src)


class FastStateHTML(StateApp, FastHTML):  # type: ignore[misc]
    """A FastHTML app with FastStateMiddleware and the Datastar client.

    ``faststate={...}`` passes options to the middleware; ``datastar_src``
    overrides the client script (``False`` leaves it out).  htmx is off by
    default: Datastar drives the page.

    Args:
        *args: FastHTML's positional arguments.
        faststate: Keyword options of ``FastStateMiddleware``
            (``{"secret_key": ..., "store": RedisStore(url)}``).
        datastar_src: The client script's URL; ``None``: the CDN copy of the
            middleware's ``protocol``; ``False``: no script tag.
        **kwargs: FastHTML's keyword arguments (``hdrs=``, ``before=``...);
            ``htmx`` and ``surreal`` default to False.
    """


    def __init__(
        self,
        *args: Any,
        faststate: dict[str, Any] | None = None,
        datastar_src: str | Literal[False] | None = None,
        **kwargs: Any,
    ) -> None:
        options = dict(faststate or {})
        protocol = options.get("protocol", "v1")
        kwargs.setdefault("htmx", False)
        kwargs.setdefault("surreal", False)
        if datastar_src is not False:
            beta = (protocol if isinstance(protocol, str) else protocol.name) == "beta"
            script = datastar_script(datastar_src, "beta" if beta else "v1")
            hdrs = kwargs.get("hdrs") or ()
            kwargs["hdrs"] = (script, *(hdrs if isinstance(hdrs, list | tuple) else (hdrs,)))
        super().__init__(*args, **kwargs)
        self.add_middleware(FastStateMiddleware, **options)
