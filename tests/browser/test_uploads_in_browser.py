"""Uploads from the real clients under both protocols: a 50 MB file through a
real uvicorn server in bounded memory, and Datastar's own file binding (base64
signals, whose shape differs between the clients)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Any

import pytest
from fasthtml.common import Button, FastHTML, Form, Input, P, Small, Span, Titled
from starlette.datastructures import UploadFile

from faststate import (
    FastStateMiddleware,
    ReactiveState,
    StateScope,
    Upload,
    error,
    event,
    on,
    register_state,
    text,
    use_state,
)
from faststate.fasthtml import datastar_script

pytestmark = pytest.mark.parametrize("protocol", ["v1", "beta"])

MiB = 2**20
BIG = 50 * 10**6


class Files(ReactiveState):
    received: str = ""

    @event
    async def archive(self, file: Annotated[UploadFile, Upload(max_size=64 * MiB)]) -> None:
        digest = hashlib.sha256()
        while chunk := await file.read(MiB):
            digest.update(chunk)
        self.received = f"{file.filename} {file.size} {digest.hexdigest()[:16]}"

    @event
    async def bound(
        self, picked: Annotated[UploadFile, Upload(max_size=MiB, accept="image/*")]
    ) -> None:
        data = await picked.read()
        self.received = f"{picked.filename} {picked.content_type} {len(data)}"


def make_app(protocol: str) -> FastHTML:
    app = FastHTML(hdrs=(datastar_script(protocol=protocol),), htmx=False, surreal=False)
    app.add_middleware(FastStateMiddleware, protocol=protocol, secret_key="uploads")
    register_state(app, Files, scope=StateScope.SESSION)

    @app.get("/")
    def index(req):  # type: ignore[no-untyped-def]
        files = use_state(req, Files)
        return Titled(
            "Uploads",
            files,
            P(Span(**text(files, "received"), id="received")),
            Form(
                Input(type="file", name="file", id="big-file"),
                Button("Send", id="send"),
                Small(**error(files, "file"), id="file-error"),
                **on("submit", files.archive, form=True),
            ),
            # Datastar's file binding: the file travels base64 in the signals.
            Input(type="file", data_bind="picked", id="picked"),
            # Changes once the client has read a newly picked file into the signal.
            Span(data_text="JSON.stringify($picked).length", id="picked-size"),
            Button("Send picked", **on("click", files.bound), id="send-picked"),
            Small(**error(files, "picked"), id="picked-error"),
        )

    return app


def _peak_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise LookupError("VmHWM")


def test_a_50_mb_upload_in_bounded_memory(
    protocol: str, site, new_context, page_errors, tmp_path: Path
) -> None:
    """The server (uvicorn, in this process) keeps a 50 MB upload out of memory."""
    from playwright.sync_api import expect

    base = site(protocol)
    big = tmp_path / "big.bin"
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    with big.open("wb") as handle:
        for _ in range(BIG // MiB):
            handle.write(block)
            digest.update(block)
        handle.write(block[: BIG % MiB])
        digest.update(block[: BIG % MiB])
    page = new_context(protocol).new_page()
    page.goto(base + "/")
    page.set_input_files("#big-file", str(big))  # read by the browser, not by this process
    try:  # the peak afresh (Linux: "5" resets VmHWM to the current RSS)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS of this process")
    before = _peak_kib()
    page.click("#send")
    expect(page.locator("#received")).to_have_text(
        f"big.bin {BIG} {digest.hexdigest()[:16]}", timeout=60_000
    )
    growth_mib = (_peak_kib() - before) / 1024
    assert growth_mib <= 10, f"the server's peak memory grew {growth_mib:.1f} MiB"
    assert page_errors(page) == []


def test_datastar_file_binding(protocol: str, site, new_context, page_errors) -> None:
    from playwright.sync_api import expect

    page = new_context(protocol).new_page()
    page.goto(site(protocol) + "/")
    received, refusal = page.locator("#received"), page.locator("#picked-error")

    pick(page, "a.txt", "text/plain", b"hi")
    page.click("#send-picked")
    expect(refusal).to_have_text("Only image/* files are accepted.")

    pick(page, "big.png", "image/png", b"\0" * (MiB + 1))
    page.click("#send-picked")
    expect(refusal).to_have_text("The file is larger than 1 MiB.")

    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    pick(page, "me.png", "image/png", png)
    page.click("#send-picked")
    expect(received).to_have_text(f"me.png image/png {len(png)}")
    expect(refusal).to_be_hidden()
    assert page_errors(page) == []


def pick(page: Any, name: str, mime: str, data: bytes) -> None:
    """Choose a file in the bound input, and wait for the client to read it."""
    from playwright.sync_api import expect

    size = page.locator("#picked-size")
    before = size.text_content()
    page.set_input_files("#picked", files=[{"name": name, "mimeType": mime, "buffer": data}])
    expect(size).not_to_have_text(before or "")
