"""Generator events under faults: the first step decides the status, a later failure
sends the page its correction."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import create_engine, text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from faststate import (
    MemoryStore,
    ReactiveState,
    RedisStore,
    SQLPersistence,
    StateScope,
    event,
    use_state,
)
from faststate.testing import fire
from tests.apps import state_app
from tests.faults.support import PrivateRedis, TcpProxy, proxied_postgres_url

#: What the running test wants done between two steps of ``Job.run`` (a fault).
between_steps: list[Callable[[], None]] = []


class Job(ReactiveState):
    done: int = 0

    @event
    def run(self, steps: int = 2) -> Iterator[None]:
        for _ in range(steps):
            self.done += 1
            yield None
            while between_steps:
                between_steps.pop()()


def job_app(**options: object) -> TestClient:
    def page(request: Request) -> JSONResponse:
        return JSONResponse({"done": use_state(request, Job).done})

    app = state_app(
        {Job: {"scope": StateScope.GLOBAL, "auto_persist": "persistence" in options}},
        **options,  # type: ignore[arg-type]
    )
    app.add_route("/", page)
    return TestClient(app)


def test_a_generator_event_during_a_redis_outage_answers_503(
    private_redis: PrivateRedis,
) -> None:
    store = RedisStore(private_redis.url, prefix="faststate-generator:")
    with job_app(store=store) as client:
        assert fire(client, "/Job/run", steps=1).status_code == 200
        private_redis.stop()
        result = fire(client, "/Job/run", steps=3)
        assert result.status_code == 503, (result.status_code, result.text)
        private_redis.start()
        assert fire(client, "/Job/run", steps=1).status_code == 200
        assert client.get("/").json() == {"done": 1}  # the outage lost Redis's data


def test_the_database_failing_mid_stream_takes_back_what_the_page_was_shown(
    postgres_proxy: TcpProxy,
) -> None:
    url = proxied_postgres_url(postgres_proxy)
    persistence = SQLPersistence(url)
    try:
        with job_app(store=MemoryStore(), persistence=persistence) as client:
            assert fire(client, "/Job/run", steps=1).status_code == 200
            between_steps.append(postgres_proxy.kill)
            result = fire(client, "/Job/run", steps=2)
            # Already streaming: 200, then the patch that undoes the shown progress.
            assert result.status_code == 200
            shown = [e.signals["Job"]["done"] for e in result.events if e.signals]
            assert shown[0] == 2 and shown[-1] == 1, shown
            assert client.get("/").json() == {"done": 1}
            postgres_proxy.restore()
            persistence.engine.dispose()
            assert fire(client, "/Job/run", steps=1).status_code == 200
        engine = create_engine(url)
        with engine.connect() as connection:
            row = connection.execute(
                text("select data from faststate_states where key = 'global:Job'")
            ).scalar_one()
        engine.dispose()
        assert '"done":2' in row
    finally:
        between_steps.clear()
        persistence.engine.dispose()
