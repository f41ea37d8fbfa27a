"""Todo lists on plain Starlette with Jinja2 templates (examples/templates/).

Run:  python examples/jinja_todos.py   (serves http://127.0.0.1:5011/lists/groceries)

The page helpers are template functions (``faststate.templating.install``);
the events answer with the list rendered by the same template the page
includes, which Datastar morphs into every page showing the list.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from markupsafe import Markup
from pydantic import BaseModel, StringConstraints
from sqlmodel import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    event,
    register_state,
    set_signals,
    use_state,
)
from faststate.templating import install

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
install(templates)
# The stylesheet all the examples share, for base.html's <style> (trusted: our own file).
templates.env.globals["stylesheet"] = Markup(Path(__file__).with_name("style.css").read_text())

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


def render_items(todos: TodoList) -> str:
    """The list as the page includes it: an event may answer with any HTML string."""
    return templates.get_template("todo_items.html").render(todos=todos)


async def home(request: Request) -> Response:
    return RedirectResponse("/lists/groceries", status_code=303)


async def show(request: Request) -> Response:
    todos = use_state(request, TodoList)
    return templates.TemplateResponse(
        request, "todo_list.html", {"todos": todos, "list_id": request.path_params["id"]}
    )


def create_app(protocol: str = "v1") -> Starlette:
    app = Starlette(routes=[Route("/", home), Route("/lists/{id}", show)])
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, TodoList, scope=StateScope.RECORD)
    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5011)
