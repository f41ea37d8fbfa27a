"""Browser end-to-end test infrastructure.

Headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright's sync
API) runs the real Datastar client against ASGI apps served by a real uvicorn
server on 127.0.0.1. Nothing leaves the machine: the public Datastar CDN URLs
are answered from the local client cache (see ``scripts/fetch-datastar-clients``)
and every other non-loopback request is aborted.

Sync-API caveat: Playwright events (console errors, ``page.on(...)``) and the
CDN route handler are only processed while the test is inside a Playwright call.
Requests to the app itself (loopback) are not intercepted and never wait, but
before asserting on collected errors after plain-Python waiting, make one
Playwright call (e.g. ``page.wait_for_timeout(50)``) to flush pending events.

Fixtures (all tests under ``tests/browser`` get the ``browser`` marker):

``browser`` (session)
    A ``playwright.sync_api.Browser``. Skips (or fails, with
    ``FASTSTATE_REQUIRE_SERVICES=1``) when Playwright, Chromium or the client
    cache is missing.
``datastar_cache`` (session)
    ``Path`` of the client cache (``<cache>/v1/``, ``<cache>/beta/``).
``serve`` (module)
    ``serve(app) -> base_url``: runs ``app`` with uvicorn in a background
    thread (one server per call, all stopped at the end of the module).
``new_context`` (function)
    ``new_context(protocol=None, **context_kwargs) -> BrowserContext``: a fresh
    context (no cookies) with the CDN routing and request blocking installed;
    errors of every page opened in it are collected (``page_errors(page)``),
    and a screenshot of each page is saved when the test fails. Closed at the
    end of the test.
``page_errors`` (session)
    ``page_errors(page) -> list[str]``: live list of console errors / page errors.
``screenshot`` (function)
    ``screenshot(page, name)``: saves the page as ``docs/screenshots/<name>.png``
    for the documentation (see ``save_docs_screenshot``); in a test
    parametrized by ``protocol`` only the v1 run writes it.
``blocked_requests`` (session)
    ``blocked_requests(context) -> list[str]``: URLs the context refused.

Module-level helpers (the fixtures wrap them; from test modules prefer the
fixtures, as importing ``conftest`` by name depends on pytest's import mode):

``run_server(app) -> ContextManager[str]``
    The server behind ``serve``; yields the base URL (``http://127.0.0.1:PORT``).
``make_context(browser, protocol=None, *, cache_dir=None, **kwargs)``
    The context behind ``new_context`` (caller closes it).
``collect_errors(page) -> list[str]`` (also the ``page_errors`` fixture)
    Starts (idempotently) collecting console errors and uncaught page errors
    of ``page``; returns the live list.
``context_blocked_requests(context) -> list[str]`` (also the ``blocked_requests`` fixture)
    URLs that the context aborted or could not serve from the cache.
``cdn_url(protocol, file="datastar.js")``
    The public CDN URL an app under test uses for the given protocol.
``save_screenshots(item, pages)``
    Screenshot pages to ``tests/browser/screenshots/<test name>-<n>.png``.
``save_docs_screenshot(page, name) -> Path``
    The page at a fixed viewport as ``docs/screenshots/<name>.png``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support import load_example, run_server

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
SCREENSHOT_DIR = HERE / "screenshots"
DOCS_SCREENSHOT_DIR = REPO_ROOT / "docs" / "screenshots"
DOCS_VIEWPORT = {"width": 900, "height": 640}
FETCH_SCRIPT = REPO_ROOT / "scripts" / "fetch-datastar-clients"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PROTOCOLS = ("v1", "beta")
CDN_VERSIONS = {"v1": "v1.0.1", "beta": "v1.0.0-beta.11"}
_CDN_RE = re.compile(
    r"^https://cdn\.jsdelivr\.net/gh/starfederation/datastar@(?P<version>[^/]+)/bundles/(?P<file>[^?#]+)"
)
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Only non-loopback URLs are intercepted. This matters: with the sync API a route
# handler runs only while the test is inside a Playwright call, so intercepting
# the app's own requests would stall any request the client sends while the
# test waits in plain Python (time.sleep, polling the server): that made
# clicks "lose" their POST for seconds. The regex is evaluated browser-side.
_NON_LOCAL_URL = re.compile(
    r"^(?!(?:https?|wss?)://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?(?:[/?#]|$))"
)

DEFAULT_TIMEOUT_MS = 10_000


# --------------------------------------------------------------------------- #
# markers, reports
# --------------------------------------------------------------------------- #


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "browser: end-to-end test driving headless Chromium with the real Datastar client",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/browser with ``browser`` and run them last.

    They run last because Playwright's sync API leaves its event loop registered
    as the thread's *running* loop while the session-scoped browser is alive, so
    any asyncio test (pytest-asyncio, ``asyncio.run``) running after the first
    browser test in the same session would fail with "cannot be called from a
    running event loop".
    """
    browser_items: list[pytest.Item] = []
    other_items: list[pytest.Item] = []
    for item in items:
        try:
            inside = Path(str(item.path)).resolve().is_relative_to(HERE)
        except (OSError, ValueError):
            inside = False
        if inside:
            item.add_marker(pytest.mark.browser)
            browser_items.append(item)
        else:
            other_items.append(item)
    items[:] = other_items + browser_items


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _test_failed(item: pytest.Item) -> bool:
    for when in ("setup", "call"):
        rep = getattr(item, f"rep_{when}", None)
        if rep is not None and rep.failed:
            return True
    return False


# --------------------------------------------------------------------------- #
# requirements
# --------------------------------------------------------------------------- #


def _require_services() -> bool:
    return os.environ.get("FASTSTATE_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when FASTSTATE_REQUIRE_SERVICES=1."""
    if _require_services():
        pytest.fail(f"{reason} (FASTSTATE_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def datastar_cache_dir() -> Path:
    env = os.environ.get("FASTSTATE_DATASTAR_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return REPO_ROOT / ".cache" / "datastar"


def _cache_complete(cache: Path) -> bool:
    return (
        (cache / "v1" / "datastar.js").is_file()
        and (cache / "v1" / "datastar-core.js").is_file()
        and (cache / "beta" / "datastar.js").is_file()
    )


_fetch_attempt: dict[str, str] = {}


def ensure_datastar_cache() -> tuple[Path, str | None]:
    """Return (cache dir, problem or None); runs the fetch script once if needed."""
    cache = datastar_cache_dir()
    if _cache_complete(cache):
        return cache, None
    if "result" not in _fetch_attempt:
        try:
            proc = subprocess.run(
                [sys.executable, str(FETCH_SCRIPT)],
                capture_output=True,
                text=True,
                timeout=600,
            )
            _fetch_attempt["result"] = (
                "" if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-2000:]
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _fetch_attempt["result"] = str(exc)
    if _cache_complete(cache):
        return cache, None
    detail = _fetch_attempt.get("result") or "no output"
    return cache, (
        f"Datastar client cache missing in {cache} and `python scripts/fetch-datastar-clients` "
        f"could not fill it: {detail}"
    )


# --------------------------------------------------------------------------- #
# server
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def example_site(serve: Callable[[Any], str]) -> Iterator[Callable[..., Callable[[str], str]]]:
    """``example_site(name, **options)(protocol) -> base_url``: ``examples/<name>.py``
    (``create_app(protocol, **options)``) served once per protocol for the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASTSTATE_SECRET_KEY", "browser-examples")
        # Importing an example builds its module-level app: no shared store there.
        patch.delenv("FASTSTATE_REDIS_URL", raising=False)
        patch.delenv("FASTSTATE_DATABASE_URL", raising=False)

        def site_of(name: str, **options: Any) -> Callable[[str], str]:
            example = load_example(name, prefix="browser_example")
            urls: dict[str, str] = {}

            def base_url(protocol: str) -> str:
                if protocol not in urls:
                    urls[protocol] = serve(example.create_app(protocol, **options))
                return urls[protocol]

            return base_url

        yield site_of


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[[Any], str]]:
    """Module-scoped factory: ``serve(app) -> base_url``; servers stop at module end."""
    with contextlib.ExitStack() as stack:

        def _serve(app: Any) -> str:
            return stack.enter_context(run_server(app))

        yield _serve


@pytest.fixture(scope="module")
def site(serve: Callable[[Any], str], request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``site(protocol) -> base_url`` of the test module's ``make_app(protocol)``,
    one server per protocol, started on first use."""
    make_app = request.module.make_app
    urls: dict[str, str] = {}

    def base_url(protocol: str) -> str:
        if protocol not in urls:
            urls[protocol] = serve(make_app(protocol))
        return urls[protocol]

    return base_url


# --------------------------------------------------------------------------- #
# browser, contexts, pages
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="session")
def datastar_cache() -> Path:
    cache, problem = ensure_datastar_cache()
    if problem:
        skip_or_fail(problem)
    return cache


_running_browser: list[Any] = []


@pytest.fixture(scope="session")
def browser(datastar_cache: Path) -> Iterator[Any]:
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except Exception as exc:
        skip_or_fail(f"playwright cannot be imported: {exc!r}")
    executable = find_chromium()
    if executable is None:
        skip_or_fail(
            "Chromium not found (/usr/bin/chromium or `chromium` on PATH); run .ci/install-browser"
        )
    pw = sync_playwright().start()
    try:
        try:
            browser = pw.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
        except PlaywrightError as exc:
            skip_or_fail(f"Chromium at {executable} could not be launched: {exc}")
        _running_browser.append(browser)
        try:
            yield browser
        finally:
            _running_browser.remove(browser)
            browser.close()
    finally:
        pw.stop()


def cdn_url(protocol: str, file: str = "datastar.js") -> str:
    """Public CDN URL of a Datastar bundle file for ``protocol`` ("v1" or "beta")."""
    return f"https://cdn.jsdelivr.net/gh/starfederation/datastar@{CDN_VERSIONS[protocol]}/bundles/{file}"


def protocol_for_version(version: str) -> str | None:
    v = version[1:] if version.startswith("v") else version
    if v == "1.0.0-beta.11":
        return "beta"
    if v.startswith("1.0") and "beta" not in v and "-" not in v:
        return "v1"
    return None


def _error_text(msg: Any) -> str:
    loc = msg.location or {}
    where = f" ({loc.get('url')}:{loc.get('lineNumber')})" if loc.get("url") else ""
    return f"console.error: {msg.text}{where}"


def collect_errors(page: Any) -> list[str]:
    """Collect console errors and uncaught page errors of ``page`` (idempotent).

    Returns the live list; it grows as errors happen.
    """
    existing = getattr(page, "_fs_errors", None)
    if existing is not None:
        return existing
    errors: list[str] = []
    page._fs_errors = errors
    page.on("console", lambda msg: errors.append(_error_text(msg)) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return errors


def context_blocked_requests(context: Any) -> list[str]:
    """URLs the context aborted (non-loopback) or answered 404 (not in the cache)."""
    return getattr(context, "_fs_blocked", [])


@pytest.fixture(scope="session")
def page_errors() -> Callable[[Any], list[str]]:
    """``page_errors(page) -> list[str]``: the live error list of a page (see collect_errors)."""
    return collect_errors


@pytest.fixture(scope="session")
def blocked_requests() -> Callable[[Any], list[str]]:
    """``blocked_requests(context) -> list[str]``: see context_blocked_requests."""
    return context_blocked_requests


def make_context(
    browser: Any,
    protocol: str | None = None,
    *,
    cache_dir: Path | None = None,
    **context_kwargs: Any,
) -> Any:
    """A fresh BrowserContext with Datastar CDN requests served from the local cache.

    With ``protocol`` given, only that protocol's bundle is served: a request for
    the other one gets a 404 (and is listed in ``blocked_requests``). Requests to
    non-loopback hosts are aborted. Errors of every page are collected.
    """
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    cache = (cache_dir or datastar_cache_dir()).resolve()
    context = browser.new_context(**context_kwargs)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    blocked: list[str] = []
    context._fs_blocked = blocked

    def handle(route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in _LOCAL_HOSTS:
            route.continue_()
            return
        m = _CDN_RE.match(url)
        if m:
            proto = protocol_for_version(m["version"])
            root = (cache / proto).resolve() if proto else None
            target = (root / m["file"]).resolve() if root else None
            if (
                proto is not None
                and (protocol is None or proto == protocol)
                and target is not None
                and target.is_relative_to(root)
                and target.is_file()
            ):
                route.fulfill(
                    status=200,
                    body=target.read_bytes(),
                    content_type="application/javascript",
                    headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
                )
                return
            blocked.append(url)
            route.fulfill(
                status=404,
                body=f"not in local Datastar cache: {url}",
                content_type="text/plain",
                headers={"Access-Control-Allow-Origin": "*"},
            )
            return
        if parts.scheme in ("data", "blob", "about"):
            route.continue_()
            return
        blocked.append(url)
        route.abort("blockedbyclient")

    context.route(_NON_LOCAL_URL, handle)
    context.on("page", collect_errors)
    return context


SCREENSHOT_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")


def save_screenshots(item: pytest.Item, pages: list[Any]) -> list[Path]:
    """Save a screenshot of each page as screenshots/<test name>-<n>.png."""
    done: set[int] = item.__dict__.setdefault("_fs_shot_pages", set())
    saved: list[Path] = []
    name = SCREENSHOT_NAME_RE.sub("_", item.name).strip("_") or "test"
    for page in pages:
        if id(page) in done:
            continue
        done.add(id(page))
        try:
            if page.is_closed():
                continue
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            n = len(done)
            path = SCREENSHOT_DIR / f"{name}-{n}.png"
            page.screenshot(path=str(path), full_page=True, timeout=5_000)
            saved.append(path)
        except Exception as exc:
            sys.stderr.write(f"screenshot of {getattr(page, 'url', '?')} failed: {exc}\n")
    return saved


def save_docs_screenshot(page: Any, name: str) -> Path:
    """Save ``page`` as ``docs/screenshots/<name>.png`` (``<name>``: the example's module).

    The documentation shows these, and the tests write them on every run so that
    they stay current; nothing compares them, so a changed picture fails nothing.
    The page is laid out at a fixed 900 px wide viewport (the whole page is taken
    when it is taller than 640 px), with no hover, focus ring or caret.
    """
    page.set_viewport_size(DOCS_VIEWPORT)
    page.mouse.move(0, 0)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.evaluate("() => document.fonts.ready.then(() => undefined)")
    DOCS_SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = DOCS_SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    return path


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path | None]:
    """``screenshot(page, name)``: ``save_docs_screenshot(page, name)`` from this test.

    A test parametrized by ``protocol`` runs its steps under both clients, but
    only the v1 run writes the picture (the docs show one page per example).
    """
    callspec = getattr(request.node, "callspec", None)
    protocol = callspec.params.get("protocol") if callspec is not None else None

    def _screenshot(page: Any, name: str) -> Path | None:
        if protocol not in (None, "v1"):
            return None
        return save_docs_screenshot(page, name)

    return _screenshot


@pytest.fixture
def new_context(
    request: pytest.FixtureRequest, browser: Any, datastar_cache: Path
) -> Iterator[Callable[..., Any]]:
    """Factory: ``new_context(protocol=None, **context_kwargs) -> BrowserContext``."""
    contexts: list[Any] = []

    def _new_context(protocol: str | None = None, **context_kwargs: Any) -> Any:
        ctx = make_context(browser, protocol, cache_dir=datastar_cache, **context_kwargs)
        contexts.append(ctx)
        return ctx

    yield _new_context

    if _test_failed(request.node):
        save_screenshots(request.node, [p for ctx in contexts for p in ctx.pages])
    for ctx in contexts:
        with contextlib.suppress(Exception):
            ctx.close()


@pytest.fixture(autouse=True)
def _screenshot_open_pages_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fallback for pages opened outside ``new_context`` (still open at teardown)."""
    yield
    if _running_browser and _test_failed(request.node):
        pages = [p for b in _running_browser for ctx in b.contexts for p in ctx.pages]
        save_screenshots(request.node, pages)
