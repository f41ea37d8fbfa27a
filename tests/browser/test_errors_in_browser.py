"""Errors on the page, in the real clients under both protocols: a refused value
shows its message next to its field and stays in the input, a fix clears it,
``Invalid`` and a failing event show, and nothing changes on the server."""

from __future__ import annotations

from typing import Annotated

import pytest
from fasthtml.common import Button, Div, FastHTML, Input, Label, P, Small, Span, Titled
from pydantic import Field

from faststate import (
    Bindable,
    FastStateMiddleware,
    Invalid,
    ReactiveState,
    StateScope,
    bind,
    error,
    event,
    on,
    register_state,
    text,
    use_state,
)
from faststate._errors import FAILED_MESSAGE
from faststate.fasthtml import datastar_script

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])


class Signup(ReactiveState):
    email: Bindable[str] = ""
    age: Bindable[Annotated[int, Field(ge=18)]] = 18
    welcomed: str = "nobody yet"
    attempts: int = 0

    @event
    def submit(self) -> None:
        self.attempts += 1
        if self.email.endswith("@example.org"):
            raise Invalid(email="that domain is closed")
        self.welcomed = f"welcome {self.email}, {self.age}"

    @event
    def order(self, copies: int) -> None:
        self.welcomed = f"{copies} copies"

    @event
    def crash(self) -> None:
        self.attempts += 100
        raise RuntimeError("the mail relay password is hunter2")


def make_app(protocol: str) -> FastHTML:
    app = FastHTML(hdrs=(datastar_script(protocol=protocol),), htmx=False, surreal=False)
    app.add_middleware(FastStateMiddleware, protocol=protocol, secret_key="browser-errors")
    register_state(app, Signup, scope=StateScope.SESSION)

    @app.route("/")
    def page(req):  # type: ignore[no-untyped-def]
        s = use_state(req, Signup)
        return Titled(
            "Sign up",
            s,
            Label("Email", Input(**bind(s, "email"), id="email")),
            Small(**error(s, "email"), id="email-error"),
            Label("Age", Input(**bind(s, "age"), id="age", type="number")),
            Small(**error(s, "age"), id="age-error"),
            Small(**error(s, "copies"), id="copies-error"),
            P(**error(s), id="general"),
            Div(
                Button("sign up", **on("click", s.submit), id="submit"),
                Button("order", **on("click", s.order, copies="many"), id="order"),
                Button("crash", **on("click", s.crash), id="crash"),
            ),
            P(Span(**text(s, "welcomed"), id="welcomed")),
            P(Span(**text(s, "attempts"), id="attempts")),
        )

    return app


def test_refused_values_show_next_to_their_fields_until_fixed(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    for hidden in ("#email-error", "#age-error", "#copies-error", "#general"):
        expect(page.locator(hidden)).to_be_hidden()

    # Invalid(email=...) raised by the event: shown, typed value kept, nothing saved.
    page.fill("#email", "ada@example.org")
    page.click("#submit")
    expect(page.locator("#email-error")).to_have_text("that domain is closed")
    expect(page.locator("#email-error")).to_be_visible()
    expect(page.locator("#email")).to_have_value("ada@example.org")
    expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#age")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#attempts")).to_have_text("0")

    # A bindable value its type refuses: the event does not run.
    page.fill("#email", "ada@example.com")
    page.fill("#age", "12")
    page.click("#submit")
    expect(page.locator("#age-error")).to_have_text("Input should be greater than or equal to 18")
    expect(page.locator("#age")).to_have_value("12")
    expect(page.locator("#welcomed")).to_have_text("nobody yet")

    # Fixed: accepted, and every message clears.
    page.fill("#age", "36")
    page.click("#submit")
    expect(page.locator("#welcomed")).to_have_text("welcome ada@example.com, 36")
    for hidden in ("#email-error", "#age-error"):
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator("#attempts")).to_have_text("1")
    expect(page.locator("#email")).not_to_have_attribute("aria-invalid", "true")

    # A parameter its annotation refuses.
    page.click("#order")
    expect(page.locator("#copies-error")).to_have_text(
        "Input should be a valid integer, unable to parse string as an integer"
    )
    expect(page.locator("#welcomed")).to_have_text("welcome ada@example.com, 36")

    # On the server nothing refused was kept.
    page.reload()
    expect(page.locator("#attempts")).to_have_text("1")
    expect(page.locator("#email")).to_have_value("ada@example.com")
    expect(page.locator("#copies-error")).to_be_hidden()
    assert page_errors(page) == []
    page.close()


def test_a_failing_event_shows_the_generic_message_and_changes_nothing(  # type: ignore[no-untyped-def]
    protocol: str, site, new_context, page_errors
) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    page.click("#crash")
    expect(page.locator("#general")).to_have_text(FAILED_MESSAGE)
    expect(page.locator("#general")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("hunter2")
    expect(page.locator("#attempts")).to_have_text("0")
    page.click("#submit")  # accepted: the message goes
    expect(page.locator("#attempts")).to_have_text("1")
    expect(page.locator("#general")).to_be_hidden()
    assert page_errors(page) == []
    page.close()
