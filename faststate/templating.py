"""Jinja2 templates: faststate's page helpers as template functions.

``install(templates)`` adds them to a ``jinja2.Environment`` or to Starlette's
(and FastAPI's) ``Jinja2Templates``:

    templates = Jinja2Templates(directory="templates")
    install(templates)

    <head>{{ datastar_script() }}</head>
    <body {{ live(request) }}>
      {{ counter }}                                       {# its data-signals element #}
      <span {{ text(counter, "count") }}></span>
      <button {{ on("click", counter.increment, amount=1) }}>+1</button>
      <input {{ bind(signup, "email") }}> <small {{ error(signup, "email") }}></small>

``text``, ``bind``, ``error``, ``on``, ``signals``, ``live``, ``viewer_count``
and ``viewer_names`` give attribute markup (``name="value"`` pairs, values
escaped) to write inside a tag.  ``action``, ``ref`` and ``signal_name`` give
plain strings, which autoescaping escapes where the template puts them, e.g.
inside an attribute it writes itself:

    <input data-on:keydown="evt.key === 'Enter' && {{ action(todos.add) }}">

A state itself renders as its ``data-signals`` element (``{{ counter }}``)
through ``ReactiveState.__html__``.  Autoescaping must be on, as
``Jinja2Templates`` sets it.  An event may return a rendered template
(``templates.get_template("items.html").render(todos=self)``): a string of
HTML is patched into the page like elements.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import wraps
from typing import TYPE_CHECKING, Any, Final, Literal

from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

from faststate import _helpers
from faststate._clients import datastar_src
from faststate._context import context_of
from faststate._live.streams import live as live_attributes

if TYPE_CHECKING:
    from starlette.templating import Jinja2Templates

__all__ = ["attributes", "datastar_script", "install"]

# What HTML allows in an attribute name; anything else would end the tag or the name.
_NAME: Final = re.compile(r"[^\s\"'<>/=\x00-\x1f\x7f]+")


def attributes(mapping: Mapping[str, str]) -> Markup:
    """``name="value" ...`` for a dict of attributes (what every helper returns), values escaped.

    Args:
        mapping: Attribute names and values (``{"data-text": "$Counter.count"}``).

    Returns:
        Markup to write inside a tag.

    Raises:
        ValueError: A name is not a valid HTML attribute name.
    """
    pairs = []
    for name, value in mapping.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"not an attribute name: {name!r}")
        pairs.append(Markup('{}="{}"').format(Markup(name), escape(value)))
    return Markup(" ").join(pairs)


def _as_markup(helper: Callable[..., Mapping[str, str]]) -> Callable[..., Markup]:
    @wraps(helper)
    def markup(*args: Any, **kwargs: Any) -> Markup:
        return attributes(helper(*args, **kwargs))

    return markup


@pass_context
def datastar_script(
    context: Context, src: str | None = None, protocol: Literal["v1", "beta"] | None = None
) -> Markup:
    """``<script type="module" src=...>`` loading the Datastar client.

    By default the CDN copy of the dialect the middleware speaks (read from
    ``request`` in the template's context; ``"v1"`` without one); ``src``
    points it at a self-hosted copy.

    Args:
        context: The template's context (Jinja2 passes it).
        src: The script's URL; ``None``: the CDN copy of the dialect.
        protocol: ``"v1"`` or ``"beta"``; ``None``: the middleware's.

    Returns:
        The ``<script>`` tag as markup.
    """
    if src is None:
        if protocol is None:
            request = context.get("request")
            beta = request is not None and context_of(request).runtime.protocol.name == "beta"
            protocol = "beta" if beta else "v1"
        src = datastar_src(protocol)
    return Markup('<script type="module" src="{}"></script>').format(src)


def install(target: Environment | Jinja2Templates) -> Environment:
    """Add the helpers to ``target``'s globals; returns its environment.

    Adds ``text``, ``bind``, ``error``, ``on``, ``signals``, ``live``,
    ``viewer_count`` and ``viewer_names`` (as attribute markup), ``action``,
    ``ref`` and ``signal_name`` (as strings) and ``datastar_script``.

    Args:
        target: A ``jinja2.Environment``, or Starlette's (or FastAPI's)
            ``Jinja2Templates``.

    Returns:
        The environment the helpers were added to.
    """

    env: Environment = target if isinstance(target, Environment) else target.env
    env.globals.update(
        text=_as_markup(_helpers.text),
        bind=_as_markup(_helpers.bind),
        error=_as_markup(_helpers.error),
        on=_as_markup(_helpers.on),
        signals=_as_markup(_helpers.signals),
        live=_as_markup(live_attributes),
        viewer_count=_as_markup(_helpers.viewer_count),
        viewer_names=_as_markup(_helpers.viewer_names),
        action=_helpers.action,
        ref=_helpers.ref,
        signal_name=_helpers.signal_name,
        datastar_script=datastar_script,
    )
    return env
