# stores.py — several workers sharing state through Redis, kept in PostgreSQL:
#   FASTSTATE_SECRET_KEY=change-me uvicorn stores:app --workers 4 --port 5001
import os

from fasthtml.common import Button, Div, P, Span, Titled

from faststate import (
    ReactiveState,
    RedisStore,
    SQLPersistence,
    event,
    live,
    on,
    text,
    use_state,
)
from faststate.fasthtml import FastStateHTML

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/postgres")


class Visits(ReactiveState):
    count: int = 0

    @event
    def visit(self):
        self.count += 1


app = FastStateHTML(
    faststate={
        # The same key on every worker (here from FASTSTATE_SECRET_KEY when not given).
        "secret_key": os.environ.get("FASTSTATE_SECRET_KEY"),
        "store": RedisStore(REDIS_URL),  # instances, locks and live pages through Redis
        "persistence": SQLPersistence(DATABASE_URL),  # auto_persist states, row per instance
    }
)
app.register_state(Visits, scope="global", auto_persist=True)


@app.route("/")
def index(req):
    visits = use_state(req, Visits)
    return Titled(
        "Visits",
        visits,
        P("Clicks, all workers together: ", Span(**text(visits, "count"), id="count")),
        Button("+1", **on("click", visits.visit), id="visit"),
        Div(**live(req)),  # a click on any worker reaches every page
    )
