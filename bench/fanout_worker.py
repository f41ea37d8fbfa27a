"""The receiving side of the Redis fan-out benchmark: N live streams in one process.

Prints "ready" once subscribed, then one JSON line with the time the last
stream had the change in its queue.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's faststate

from faststate import RedisBroker
from faststate._live.broker import Change


async def main(url: str, subscribers: int) -> None:
    broker = RedisBroker(url, prefix="faststate-bench:")
    received: list[float] = []
    done = asyncio.Event()

    def subscriber(change: Change | None) -> None:
        if change is not None:
            received.append(time.time())
            if len(received) == subscribers:
                done.set()

    # Distinct callables: each stands for one page's stream.
    callbacks = [lambda c, s=subscriber: s(c) for _ in range(subscribers)]
    for callback in callbacks:
        await broker.subscribe("global:X", callback)
    await asyncio.sleep(0.3)  # the reader task confirms the subscription
    print("ready", flush=True)
    await asyncio.wait_for(done.wait(), 30)
    print(json.dumps({"last_received": max(received)}), flush=True)
    await broker.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
