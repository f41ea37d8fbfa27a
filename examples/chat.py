"""A GLOBAL chat room: every open page sees every message as it is sent.

Run:  python examples/chat.py   (serves http://127.0.0.1:5007)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

from fasthtml.common import B, Button, Div, FastHTML, Input, Li, Small, Span, Style, Titled, Ul
from pydantic import BaseModel, StringConstraints

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    RedisStore,
    StateScope,
    Stream,
    error,
    event,
    live,
    on,
    register_state,
    set_signals,
    stream,
    stream_view,
    text,
    use_state,
    viewer_count,
)
from faststate.fasthtml import datastar_script

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
KEEP = 100


class Message(BaseModel):
    id: int
    author: str
    text: str
    at: float


def render_message(m: Message) -> Any:
    """One message; every page shows it the same, whoever sent it."""
    return Li(B(m.author), ": ", Span(m.text), cls="message")


class ChatRoom(ReactiveState):
    # The last KEEP messages; a new one reaches every page as one appended <li>.
    messages: Stream[Message] = stream(render_message, key="id", limit=KEEP)
    count: int = 0

    @event
    def send(self, name: Name, message: Text) -> Any:
        self.count += 1
        self.messages.append(Message(id=self.count, author=name, text=message, at=time.time()))
        # Only the sender's input is emptied, and only now that the message
        # was accepted (a refused one stays to fix).
        return set_signals(message="")


def create_app(protocol: str = "v1", redis_url: str | None = None) -> FastHTML:
    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol), Style(STYLE)),
        htmx=False,
        surreal=False,
        secret_key="chat-example",
    )
    app.add_middleware(
        FastStateMiddleware, protocol=protocol, store=RedisStore(redis_url) if redis_url else None
    )
    # presence: the page shows how many people have the room open
    register_state(app, ChatRoom, scope=StateScope.GLOBAL, presence=True)

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        room = use_state(req, ChatRoom)
        return Titled(
            "Chat",
            room,
            Div(
                Span(Span(**text(room, "count"), id="count", cls="badge"), " messages"),
                Span(Span(**viewer_count(room), id="online", cls="badge live"), " online now"),
                cls="meta",
            ),
            stream_view(room, "messages", Ul, cls="messages"),
            # The inputs are this page's own signals, sent as the event's parameters.
            Div(
                Div(
                    Input(data_bind="name", placeholder="your name", id="name"),
                    Small(**error(room, "name"), id="name-error", cls="error"),
                    cls="field",
                ),
                Div(
                    Input(data_bind="message", placeholder="say something", id="message"),
                    Small(**error(room, "message"), id="message-error", cls="error"),
                    cls="field grow",
                ),
                Button("Send", **on("click", room.send), id="send"),
                cls="row top",
            ),
            Div(**live(req), id="live"),
        )

    return app


app = create_app(redis_url=os.environ.get("FASTSTATE_REDIS_URL"))

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5007)
