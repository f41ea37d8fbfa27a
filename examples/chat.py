"""A GLOBAL chat room: every open page sees every message as it is sent.

Run:  python examples/chat.py   (serves http://127.0.0.1:5007)
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

from fasthtml.common import B, Button, Div, FastHTML, Input, Li, Small, Span, Titled, Ul
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
        hdrs=(datastar_script(protocol=protocol),),
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
            Div("Messages: ", Span(**text(room, "count"), id="count")),
            Div("Online now: ", Span(**viewer_count(room), id="online")),
            stream_view(room, "messages", Ul),
            # The inputs are this page's own signals, sent as the event's parameters.
            Input(data_bind="name", placeholder="your name", id="name"),
            Small(**error(room, "name"), id="name-error"),
            Input(data_bind="message", placeholder="say something", id="message"),
            Small(**error(room, "message"), id="message-error"),
            Button("Send", **on("click", room.send), id="send"),
            Div(**live(req), id="live"),
        )

    return app


app = create_app(redis_url=os.environ.get("FASTSTATE_REDIS_URL"))

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5007)
