"""A real browser posts a cancel from another site's page: Jira's XSRF check must refuse it.

Drives Debian's headless Chromium through its chromedriver, both from the system
(``apt-get install chromium chromium-driver``); nothing is downloaded. Skipped,
with the reason, where either is missing.
"""

from __future__ import annotations

import contextlib
import html
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from tasklib import TaskStatus, TaskTracker
from tasklib.server import make_server as make_task_server
from tasklib.web import TRUST_ALL, wsgi_app

from .helpers import TASK, WAIT, submit

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"browser test: needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
)


@contextlib.contextmanager
def in_thread(server: Any) -> Iterator[int]:
    """Run ``server.serve_forever`` in a thread; yields its port, then shuts it down."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def tasks_served(kind: str, tracker: TaskTracker, allowed_origins: list[str]) -> Iterator[int]:
    """The tasks on 127.0.0.1: by the server of ``tasklib serve``, or by wsgi_app under wsgiref."""
    if kind == "serve":
        server: Any = make_task_server(tracker, "127.0.0.1", 0, authenticate=TRUST_ALL, allowed_origins=allowed_origins)
    else:
        app = wsgi_app(tracker, authenticate=TRUST_ALL, allowed_origins=allowed_origins)
        server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    with in_thread(server) as port:
        yield port


class Site:
    """Another web site, on localhost (another origin than 127.0.0.1): serves ``page`` at every path."""

    def __init__(self) -> None:
        self.page = ""
        self.origin = ""


@contextlib.contextmanager
def site_served() -> Iterator[Site]:
    site = Site()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = site.page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with in_thread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        site.origin = f"http://localhost:{port}"
        yield site


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    # Both paths given: Selenium Manager has nothing to look up or download.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def attack_page(target: str) -> str:
    """A page that posts a cancel to ``target`` the way any site can: a form, text/plain, no preflight."""
    return (
        "<!doctype html><title>cute cats</title>"
        f'<form method="POST" action="{html.escape(target)}" enctype="text/plain">'
        '<input type="hidden" name="x" value="y"></form>'
        "<script>document.forms[0].submit()</script>"
    )


def answer_shown(browser: Any, *texts: str) -> Callable[[Any], bool]:
    def shown(_: Any) -> bool:
        return any(text in browser.page_source for text in texts)

    return shown


@pytest.mark.parametrize("kind", ["serve", "wsgi"])
def test_a_form_post_from_another_site_cannot_cancel(
    browser: Any, make_tracker: Callable[..., TaskTracker], kind: str
) -> None:
    """A page of another origin auto-submits a cancel form: 403 XSRF, the task runs on. Once that origin
    is allowed, the same page cancels: so the browser really posted."""
    from selenium.webdriver.support.wait import WebDriverWait

    tracker = make_tracker(base_url=None)
    task_id = submit(tracker, TaskStatus.RUNNING)
    for allowed in (False, True):
        with site_served() as site, tasks_served(kind, tracker, [site.origin] if allowed else []) as port:
            site.page = attack_page(f"http://127.0.0.1:{port}{TASK}{task_id}/cancel")
            browser.get(site.origin + "/cats.html")
            WebDriverWait(browser, WAIT).until(answer_shown(browser, "XSRF check failed", "CANCEL_REQUESTED"))
            if allowed:
                assert '"status":"CANCEL_REQUESTED"' in browser.page_source
                assert tracker.get(task_id).status is TaskStatus.CANCEL_REQUESTED
            else:
                assert '["XSRF check failed"]' in browser.page_source
                assert tracker.get(task_id).status is TaskStatus.RUNNING
