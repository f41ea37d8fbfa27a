"""USER scope with a tiny login: the same user sees the same profile everywhere,
and an avatar upload (a form posting a file to an event).

Run:  python examples/profile.py   (serves http://127.0.0.1:5005)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from fasthtml.common import (
    H2,
    A,
    Beforeware,
    Button,
    Dd,
    Div,
    Dl,
    Dt,
    FastHTML,
    Form,
    Input,
    P,
    RedirectResponse,
    Small,
    Span,
    Style,
    Titled,
)
from pydantic import StringConstraints
from starlette.datastructures import UploadFile

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    Upload,
    error,
    event,
    live,
    on,
    register_state,
    set_signals,
    text,
    use_state,
)
from faststate.fasthtml import datastar_script

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()

DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
USERNAME = re.compile(r"^[a-z0-9_]{1,32}$")
#: Checked before the event runs; a refusal shows next to the form.
Avatar = Annotated[
    UploadFile, Upload(max_size=2**20, accept=("image/png", "image/jpeg", "image/webp"))
]


class Profile(ReactiveState):
    display_name: str = "anonymous"
    likes: int = 0

    @event
    def rename(self, display_name: DisplayName) -> Any:
        self.display_name = display_name
        return set_signals(display_name="")  # accepted: the input empties

    avatar: str = ""  # what the last accepted avatar was: "me.png, 12345 bytes"

    @event
    def like(self) -> None:
        self.likes += 1

    @event
    async def set_avatar(self, avatar: Avatar) -> None:
        # A real app would store the file (it is spooled to disk, not held in memory).
        data = await avatar.read()
        self.avatar = f"{avatar.filename}, {len(data)} bytes"


def require_login(req, sess):  # type: ignore[no-untyped-def]
    """FastHTML beforeware: who is logged in goes to req.scope["auth"].

    FastHTML fills ``req`` and ``sess`` by name, so they carry no annotations.
    """
    user = sess.get("user")
    if not user:
        return RedirectResponse("/login", status_code=303)
    req.scope["auth"] = user
    return None


def create_app(protocol: str = "v1") -> FastHTML:
    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol), Style(STYLE)),
        htmx=False,
        surreal=False,
        secret_key="profile-example",
        before=Beforeware(require_login, skip=[r"/login", r"/logout"]),
    )
    app.add_middleware(FastStateMiddleware, protocol=protocol)
    register_state(app, Profile, scope=StateScope.USER)

    @app.get("/login")
    def login_form():  # type: ignore[no-untyped-def]
        return Titled(
            "Log in",
            P("Any user name will do (a-z, 0-9, _): no password in this example.", cls="lead"),
            Form(
                Input(name="username", placeholder="username", id="username"),
                Button("Log in", type="submit", id="login"),
                method="post",
                action="/login",
                cls="row",
            ),
        )

    @app.post("/login")
    def login(username: str, sess):  # type: ignore[no-untyped-def]
        username = username.strip().lower()
        if not USERNAME.match(username):
            return RedirectResponse("/login", status_code=303)
        sess["user"] = username
        return RedirectResponse("/", status_code=303)

    @app.get("/logout")
    def logout(sess):  # type: ignore[no-untyped-def]
        sess.pop("user", None)
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def index(req):  # type: ignore[no-untyped-def]
        profile = use_state(req, Profile)
        return Titled(
            "Profile",
            profile,
            P(
                "Logged in as ",
                Span(req.scope["auth"], id="user", cls="badge"),
                " (",
                A("log out", href="/logout", id="logout"),
                "): every browser of this user shows the same profile.",
                cls="muted",
            ),
            Dl(
                Dt("Display name"),
                Dd(Span(**text(profile, "display_name"), id="display-name")),
                Dt("Likes"),
                Dd(
                    Span(**text(profile, "likes"), id="likes", cls="badge"),
                    Button("Like", **on("click", profile.like), id="like", cls="quiet small"),
                ),
                Dt("Avatar"),
                Dd(Span(**text(profile, "avatar"), id="avatar", cls="or-none")),
                cls="facts",
            ),
            H2("Rename"),
            # The page's own "display_name" signal is the event's parameter.
            Div(
                Input(data_bind="display_name", placeholder="new display name", id="new-name"),
                Button("Rename", **on("click", profile.rename), id="rename"),
                cls="row",
            ),
            Small(**error(profile, "display_name"), id="name-error", cls="error"),
            H2("Avatar"),
            # FastHTML's Form is multipart: form=True posts its fields, files included.
            Form(
                Div(
                    Input(type="file", name="avatar", accept="image/*", id="avatar-file"),
                    Button("Upload avatar", id="upload"),
                    cls="row",
                ),
                Small(**error(profile, "avatar"), id="avatar-error", cls="error"),
                **on("submit", profile.set_avatar, form=True),
            ),
            # Every session of this user follows along.
            Div(**live(req), id="live"),
        )

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5005)
