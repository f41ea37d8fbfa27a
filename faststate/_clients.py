"""Where pages load the Datastar client from, per dialect.

Kept apart from ``faststate.fasthtml`` so that pages built without FastHTML
(Jinja2 templates) get the same URLs without importing it.
"""

from __future__ import annotations

from typing import Final, Literal

DATASTAR_V1_SRC: Final = (
    "https://cdn.jsdelivr.net/gh/starfederation/datastar@v1.0.1/bundles/datastar.js"
)
DATASTAR_BETA_SRC: Final = (
    "https://cdn.jsdelivr.net/gh/starfederation/datastar@v1.0.0-beta.11/bundles/datastar.js"
)


def datastar_src(protocol: Literal["v1", "beta"] = "v1") -> str:
    """The public CDN URL of the client speaking ``protocol``."""
    return DATASTAR_BETA_SRC if protocol == "beta" else DATASTAR_V1_SRC
