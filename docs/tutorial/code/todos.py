# todos.py — run it with `python todos.py`, then open http://127.0.0.1:5003/lists/groceries
import uuid
from typing import Annotated

from fasthtml.common import Button, Input, Li, Small, Span, Titled, Ul
from pydantic import BaseModel, Field, StringConstraints

from faststate import ReactiveState, error, event, on, set_signals, use_state
from faststate.fasthtml import FastStateHTML

# A title is 1 to 200 characters, spaces stripped: pydantic checks it before the event runs.
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class TodoItem(BaseModel):
    id: str
    title: str
    done: bool = False


class TodoList(ReactiveState):
    items: list[TodoItem] = Field(default_factory=list)

    @event
    def add(self, title: Title):
        self.items.append(TodoItem(id=uuid.uuid4().hex[:8], title=title))
        # The new list as HTML (morphed into #items), and the input emptied.
        return render_items(self), set_signals(title="")

    @event
    def toggle(self, item_id: str):
        for item in self.items:
            if item.id == item_id:
                item.done = not item.done
        return render_items(self)

    @event
    def remove(self, item_id: str):
        self.items = [item for item in self.items if item.id != item_id]
        return render_items(self)


def render_items(todos: TodoList):
    return Ul(
        *(
            Li(
                Span(item.title, style="text-decoration: line-through" if item.done else ""),
                Button("done" if not item.done else "undo",
                       **on("click", todos.toggle, item_id=item.id)),
                Button("delete", **on("click", todos.remove, item_id=item.id)),
                id=f"item-{item.id}",
            )
            for item in todos.items
        ),
        id="items",
    )


app = FastStateHTML()
app.register_state(TodoList, scope="record")  # one list per record id


@app.route("/lists/{id}")
def show(req, id: str):
    todos = use_state(req, TodoList)  # the record id comes from the path's {id}
    return Titled(
        f"Todo list: {id}",
        todos,
        # An input bound to the page's own "title" signal: the event's parameter.
        Input(data_bind="title", placeholder="What needs doing?", id="new-title"),
        Button("Add", **on("click", todos.add), id="add"),
        Small(**error(todos, "title"), id="title-error"),
        render_items(todos),
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5003)
