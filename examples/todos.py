"""Todo lists: one RECORD-scoped state per list, shared by everyone at /lists/{id}.

Run:  python examples/todos.py   (serves http://127.0.0.1:5003/lists/groceries)
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fasthtml.common import (
    A,
    Button,
    Div,
    FastHTML,
    Input,
    Li,
    P,
    RedirectResponse,
    Small,
    Span,
    Style,
    Titled,
    Ul,
)
from pydantic import BaseModel, StringConstraints
from sqlmodel import Field

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    error,
    event,
    live,
    on,
    register_state,
    set_signals,
    use_state,
)
from faststate.fasthtml import datastar_script

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class TodoItem(BaseModel):
    id: str
    title: str
    done: bool = False


class TodoList(ReactiveState):
    items: list[TodoItem] = Field(default_factory=list)

    @event(broadcast=True)
    def add(self, title: Title) -> Any:
        self.items.append(TodoItem(id=uuid.uuid4().hex[:8], title=title))
        # Accepted: this page's input empties (a refused title stays to be fixed).
        return render_items(self), set_signals(title="")

    @event(broadcast=True)
    def toggle(self, item_id: str) -> Any:
        for item in self.items:
            if item.id == item_id:
                item.done = not item.done
        return render_items(self)

    @event(broadcast=True)
    def remove(self, item_id: str) -> Any:
        self.items = [item for item in self.items if item.id != item_id]
        return render_items(self)

    @event(broadcast=True)
    def clear_done(self) -> Any:
        self.items = [item for item in self.items if not item.done]
        return render_items(self)


def render_items(todos: TodoList) -> Any:
    """The list, re-rendered whole and morphed into the page by Datastar."""
    return Ul(
        *(
            Li(
                Span(item.title, cls="done" if item.done else "", id=f"title-{item.id}"),
                Button(
                    "done" if not item.done else "undo",
                    **on("click", todos.toggle, item_id=item.id),
                    id=f"toggle-{item.id}",
                    cls="quiet small",
                ),
                Button(
                    "delete",
                    **on("click", todos.remove, item_id=item.id),
                    id=f"remove-{item.id}",
                    cls="quiet small",
                ),
                id=f"item-{item.id}",
            )
            for item in todos.items
        ),
        id="items",
        cls="todos",
    )


def create_app(protocol: str = "v1") -> FastHTML:
    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol), Style(STYLE)),
        htmx=False,
        surreal=False,
        secret_key="todos-example",
    )
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, TodoList, scope=StateScope.RECORD)

    @app.route("/")
    def home():  # type: ignore[no-untyped-def]
        return RedirectResponse("/lists/groceries", status_code=303)

    @app.route("/lists/{id}")
    def show(req, id: str):  # type: ignore[no-untyped-def]
        todos = use_state(req, TodoList)
        return Titled(
            f"Todo list: {id}",
            todos,
            P("Everyone at this address shares the list and sees changes live.", cls="lead"),
            # The page's own "title" signal is the event's parameter.
            Div(
                Input(data_bind="title", placeholder="What needs doing?", id="new-title"),
                Button("Add", **on("click", todos.add), id="add"),
                cls="row",
            ),
            Small(**error(todos, "title"), id="title-error", cls="error"),
            render_items(todos),
            Div(
                Button("Clear done", **on("click", todos.clear_done), id="clear-done", cls="quiet"),
                A("another list", href="/lists/chores", id="other-list"),
                cls="row",
            ),
            # Everyone looking at this list sees changes as they happen.
            Div(**live(req), id="live"),
        )

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5003)
