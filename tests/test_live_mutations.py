"""mutate() and push() outside an event, seen on an open live stream.

The app's ``/webhook`` runs ``_mutations`` in tests/live.py, as a background
job would: a ``mutate()`` that is kept, one that raises and is rolled back,
then a ``push()`` of elements.  The ``server`` fixture is in tests/conftest.py.
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from .live import Stream, open_page


async def test_mutate_outside_an_event_is_pushed_and_rolled_back_on_error(
    server: tuple[str, Starlette],
) -> None:
    base, _ = server
    async with httpx.AsyncClient(base_url=base) as client:
        url = await open_page(client, "doc")
        async with client.stream("GET", url, headers={"Datastar-Request": "true"}) as response:
            stream = Stream(response)
            await stream.nothing_within(0.2)
            assert (await client.post("/webhook")).json() == {"ok": True}
            sse = await stream.next()
            assert sse.signals == {"Doc_d1": {"body": "from a webhook"}}
            elements = await stream.next()
            assert elements.type == "datastar-patch-elements"
            assert elements.html == '<p id="banner">pushed</p>'
            assert await stream.nothing_within(0.3)  # the failed mutation sent nothing
