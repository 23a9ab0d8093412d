"""Real-browser tests: headless Debian Chromium driven by Playwright, offline.

Playwright's own browser download is never used: the browser is the system's ``chromium`` (Debian's
package; CI installs it, see ``.ci/run``), found on ``PATH``. WebGL runs in software (SwiftShader through
ANGLE), so pages with a three.js canvas render on machines without a GPU.

    from tests.browser import open_page

    with open_page(path_or_url) as session:
        session.page.wait_for_selector("body[data-viewer-state=ready]")
        assert not session.errors

In pytest, the ``browser`` fixture of :func:`browser_fixture` shares one browser per module; tests that
need one are skipped, with the reason, only when no ``chromium`` is installed (CI installs it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright, Request

#: Chromium switches for headless WebGL without a GPU, and no traffic of its own
CHROMIUM_ARGS = (
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
)
NO_CHROMIUM = "no 'chromium' on PATH (Debian: apt-get install chromium); real-browser tests need it"


def chromium_path() -> str | None:
    """The system Chromium (``$GAITWAY_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH)."""
    explicit = os.environ.get("GAITWAY_CHROMIUM")
    if explicit:
        return explicit
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def launch(*, args: tuple[str, ...] = ()) -> Iterator[Browser]:
    """A headless Chromium (the system's) for the duration of the block."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError(NO_CHROMIUM)
    with sync_playwright() as pw:
        browser = _launch(pw, exe, args)
        try:
            yield browser
        finally:
            browser.close()


def _launch(pw: Playwright, exe: str, args: tuple[str, ...]) -> Browser:
    return pw.chromium.launch(executable_path=exe, headless=True, args=[*CHROMIUM_ARGS, *args])


@dataclass
class Session:
    """An open page, what went wrong in it, and every request it made that was not for a local file."""

    page: Page
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    blocked: list[str] = field(default_factory=list)  # URLs refused by the offline rule
    console: list[str] = field(default_factory=list)  # every console message, "type: text"


def as_url(target: str | Path) -> str:
    """``file://`` URL of a path; URLs are returned as they are."""
    if isinstance(target, Path) or "://" not in str(target):
        return Path(target).resolve().as_uri()
    return str(target)


@contextmanager
def open_page(
    target: str | Path,
    *,
    browser: Browser | None = None,
    offline: bool = True,
    viewport: tuple[int, int] = (1280, 900),
    timeout_ms: int = 60_000,
    wait_until: str = "load",
    **context_options: Any,
) -> Iterator[Session]:
    """Open ``target`` (a path or URL) in a fresh browser context; yields a :class:`Session`.

    ``offline``: every request that is not ``file:``, ``data:`` or ``blob:`` is aborted and recorded in
    ``Session.blocked`` (assert it stays empty to prove a page needs no network). ``browser``: reuse an
    open browser (else one is launched for the block).
    """
    if browser is None:
        with (
            launch() as own,
            open_page(
                target,
                browser=own,
                offline=offline,
                viewport=viewport,
                timeout_ms=timeout_ms,
                wait_until=wait_until,
                **context_options,
            ) as session,
        ):
            yield session
        return
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, service_workers="block", **context_options
    )
    context.set_default_timeout(timeout_ms)
    page = context.new_page()
    session = Session(page=page)

    def on_console(msg: Any) -> None:
        session.console.append(f"{msg.type}: {msg.text}")
        if msg.type == "error":
            session.errors.append(f"console: {msg.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: session.errors.append(f"page error: {exc}"))
    if offline:

        def guard(route: Any, request: Request) -> None:
            if request.url.split(":", 1)[0] in ("file", "data", "blob"):
                route.continue_()
            else:
                session.blocked.append(request.url)
                route.abort()

        context.route("**/*", guard)
    try:
        page.goto(as_url(target), wait_until=wait_until)  # type: ignore[arg-type]
        yield session
    finally:
        context.close()


def browser_fixture(scope: str = "module") -> Any:
    """A pytest fixture yielding a shared headless Chromium; skips (with the reason) without chromium.

    Use in a test module: ``browser = browser_fixture()``.
    """

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]
    def browser() -> Iterator[Browser]:
        if chromium_path() is None:
            pytest.skip(NO_CHROMIUM)
        with launch() as b:  # playwright is a dev dependency: missing, this errors rather than skips
            yield b

    return browser
