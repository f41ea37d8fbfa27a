"""The receiving side of the Redis fan-out benchmark: N live streams in one process.

    python bench/fanout_worker.py <redis url> <prefix> <streams>

A worker of the benchmark app on a ``RedisStore``: it opens N real live
streams of ``CounterState`` of session ``bench`` (which must exist), prints
"ready" once they all wait, then one JSON line with the time (``time.time()``)
at which the last stream handed the next change to its ASGI ``send``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import apps  # noqa: E402
from asgi import LivePages, session_cookie  # noqa: E402

from faststate import RedisStore  # noqa: E402
from faststate._resolve import address_from_key  # noqa: E402
from faststate._state import stored_version  # noqa: E402
from faststate._transaction import read  # noqa: E402


async def main(url: str, prefix: str, subscribers: int) -> None:
    store = RedisStore(url, prefix=prefix)
    app = apps.faststate_app(store)
    await session_cookie(app)  # builds the middleware and its runtime
    registry = app.state.faststate_registry
    runtime = registry.runtime
    address = address_from_key(runtime, registry.by_name["CounterState"], "bench")
    state = await read(runtime, address)
    assert state is not None, "the benchmark creates the instance first"
    pages = LivePages(runtime, address, stored_version(state), subscribers, time.time)
    await pages.ready()  # subscribed: Redis confirmed it before the streams started
    pages.arm()
    print("ready", flush=True)
    last = await pages.last_sent()
    print(json.dumps({"last_sent": last}), flush=True)
    await pages.close()
    await runtime.broker.aclose()
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
