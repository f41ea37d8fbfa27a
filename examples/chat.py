"""A GLOBAL chat room: every open page sees every message as it is sent.

Run:  python examples/chat.py   (serves http://127.0.0.1:5007)
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

from fasthtml.common import B, Button, Div, FastHTML, Input, Li, Small, Span, Titled, Ul
from pydantic import BaseModel, StringConstraints
from sqlmodel import Field

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    RedisStore,
    StateScope,
    error,
    event,
    live,
    on,
    register_state,
    set_signals,
    text,
    use_state,
    viewer_count,
)
from faststate.fasthtml import datastar_script

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
KEEP = 100


class Message(BaseModel):
    author: str
    text: str
    at: float


class ChatRoom(ReactiveState):
    messages: list[Message] = Field(default_factory=list, exclude=True)
    count: int = 0

    @event(broadcast=True)
    def send(self, name: Name, message: Text) -> Any:
        self.messages = [*self.messages, Message(author=name, text=message, at=time.time())][-KEEP:]
        self.count += 1
        # The list goes to every page; only the sender's input is emptied, and
        # only now that the message was accepted (a refused one stays to fix).
        return render_messages(self), set_signals(message="")


def render_messages(room: ChatRoom) -> Any:
    """The message list, pushed whole to every page (the last KEEP messages)."""
    return Ul(
        *(Li(B(m.author), ": ", Span(m.text), cls="message") for m in room.messages),
        id="messages",
    )


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
            render_messages(room),
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
