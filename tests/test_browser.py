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
import pathlib
import queue
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from tasklib import TaskCancelled, TaskStatus, TaskTracker, current_task
from tasklib.server import make_server as make_task_server
from tasklib.web import TRUST_ALL, wsgi_app

from .helpers import TASK, WAIT, eventually, submit

ROOT = str(pathlib.Path(__file__).resolve().parent.parent)

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
    # A connection the browser opens ahead of need and leaves idle must not hold a
    # handler thread for the browser's own idle timeout (minutes).
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server, one thread per connection: Chromium preconnects a socket it may never use."""

    daemon_threads = True


@contextlib.contextmanager
def tasks_served(kind: str, tracker: TaskTracker, allowed_origins: list[str]) -> Iterator[int]:
    """The tasks on 127.0.0.1: by the server of ``tasklib serve``, or by wsgi_app under wsgiref."""
    if kind == "serve":
        server: Any = make_task_server(tracker, "127.0.0.1", 0, authenticate=TRUST_ALL, allowed_origins=allowed_origins)
    else:
        app = wsgi_app(tracker, authenticate=TRUST_ALL, allowed_origins=allowed_origins)
        server = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=Quiet)
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


# -- the task page of a real ``tasklib serve`` ------------------------------------

ALICE, BOB = 7, 8
TOKENS = {"admin": "admin-t0ken", ALICE: "alice-t0ken", BOB: "bob-t0ken"}


def stepped(steps: queue.Queue[int | None]) -> str:
    """A task that reports each progress the test hands it, and ends on None."""
    handle = current_task()
    while (value := steps.get(timeout=WAIT)) is not None:
        handle.update_progress(value, message=f"step to {value}%")
    return "done"


def stoppable() -> None:
    """A task that runs until its cancel is requested."""
    handle = current_task()
    deadline = time.monotonic() + WAIT
    while not handle.cancel_requested and time.monotonic() < deadline:
        time.sleep(0.05)
    raise TaskCancelled(handle.id)


@contextlib.contextmanager
def tasklib_serve(store_url: str) -> Iterator[str]:
    """``tasklib serve`` in a subprocess, with the administrator's and two users' tokens; yields its origin."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "tasklib", "--db", store_url, "serve", "--port", str(port)]
    command += ["--token", TOKENS["admin"], "--user-token", f"{ALICE}={TOKENS[ALICE]}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    env["TASKLIB_USER_TOKENS"] = f"{BOB}={TOKENS[BOB]}"  # unused: --user-token given wins
    command += ["--user-token", f"{BOB}={TOKENS[BOB]}"]
    origin = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:

        def up() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                with urllib.request.urlopen(origin + "/login", timeout=WAIT) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        eventually(up)
        yield origin
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=WAIT)
        assert "Traceback" not in stderr, stderr


def sign_in(browser: Any, origin: str, token: str) -> None:
    """Sign in through the /login form, as a person would; lands on the task page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    browser.delete_all_cookies()
    browser.get(origin + "/")  # no cookie: sent to the form
    WebDriverWait(browser, WAIT).until(lambda _: browser.current_url == origin + "/login")
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(browser, WAIT).until(lambda _: browser.find_elements(By.ID, "tasklib-tasks"))


def page_html(origin: str, token: str) -> str:
    """The page as a browser without JavaScript gets it: the cookie, no script run."""
    request = urllib.request.Request(origin + "/", headers={"Cookie": f"tasklib_token={token}"})
    with urllib.request.urlopen(request, timeout=WAIT) as answer:
        return str(answer.read().decode())


def test_the_page_of_tasklib_serve_follows_a_users_tasks_live(
    browser: Any, make_tracker: Callable[..., TaskTracker], store_url: str, tmp_path: pathlib.Path
) -> None:
    """Signed in as Alice: a task's bar rises step by step and its row ends COMPLETE without a reload;
    Cancel ends another CANCELLED; Bob sees neither; the page without JavaScript lists them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    tracker = make_tracker(base_url=None)
    steps: queue.Queue[int | None] = queue.Queue()
    slow = tracker.submit(stepped, steps, description="Import the orders", submitted_by=ALICE)
    stopped = tracker.submit(stoppable, description="Rebuild the index", submitted_by=ALICE)
    bobs = tracker.submit(description="Bob's report", submitted_by=BOB)
    eventually(lambda: tracker.get(stopped.id).status is TaskStatus.RUNNING)
    eventually(lambda: tracker.get(slow.id).status is TaskStatus.RUNNING)

    with tasklib_serve(store_url) as origin:
        # A wrong token is refused by the form, and sets no cookie.
        wrong = urllib.request.Request(origin + "/login", data=b"token=guess", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=WAIT)
        with refused.value:
            assert refused.value.code == 401 and "Set-Cookie" not in refused.value.headers

        sign_in(browser, origin, TOKENS[ALICE])
        browser.execute_script("window.notReloaded = true;")

        def bar() -> int:
            return int(browser.find_element(By.CSS_SELECTOR, f"#task-{slow.id} progress").get_attribute("value"))

        def status(task_id: str) -> str:
            return str(browser.find_element(By.CSS_SELECTOR, f"#task-{task_id} .status").text)

        seen = [bar()]
        for value in (30, 60, 90):  # a step about every second: the page polls once a second
            steps.put(value)
            WebDriverWait(browser, WAIT).until(lambda _, value=value: bar() == value)
            seen.append(bar())
        browser.set_window_size(1280, 800)
        browser.save_screenshot(str(tmp_path / "desktop.png"))
        browser.set_window_size(390, 844)
        browser.save_screenshot(str(tmp_path / "phone.png"))
        browser.set_window_size(1280, 800)
        steps.put(None)
        WebDriverWait(browser, WAIT).until(lambda _: status(slow.id) == "COMPLETE")
        assert seen == sorted(set(seen)) and len(seen) >= 3, seen  # rose at least twice
        assert bar() == 100

        browser.find_element(By.CSS_SELECTOR, f"#task-{stopped.id} button.cancel").click()
        WebDriverWait(browser, WAIT).until(lambda _: status(stopped.id) == "CANCELLED")
        assert tracker.get(stopped.id).status is TaskStatus.CANCELLED
        assert browser.execute_script("return window.notReloaded === true;")
        assert not browser.find_elements(By.ID, f"task-{bobs.id}")

        # Without JavaScript: the same tasks, server-rendered, current at load.
        alices = page_html(origin, TOKENS[ALICE])
        assert f"id='task-{slow.id}'" in alices and f"id='task-{stopped.id}'" in alices
        assert f"id='task-{bobs.id}'" not in alices and "COMPLETE" in alices and "CANCELLED" in alices

        sign_in(browser, origin, TOKENS[BOB])
        WebDriverWait(browser, WAIT).until(lambda _: browser.find_elements(By.ID, f"task-{bobs.id}"))
        for task_id in (slow.id, stopped.id):
            assert not browser.find_elements(By.ID, f"task-{task_id}")
            assert f"task-{task_id}'" not in page_html(origin, TOKENS[BOB])
        # Bob cannot cancel Alice's task through Jira's route either.
        cancel = urllib.request.Request(
            f"{origin}{TASK}{slow.id}/cancel", headers={"Cookie": f"tasklib_token={TOKENS[BOB]}"}, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as forbidden:
            urllib.request.urlopen(cancel, timeout=WAIT)
        with forbidden.value:
            assert forbidden.value.code == 403
        # The administrator's token sees every task.
        admin = urllib.request.Request(origin + "/", headers={"Authorization": f"Bearer {TOKENS['admin']}"})
        with urllib.request.urlopen(admin, timeout=WAIT) as answer:
            every = answer.read().decode()
        assert all(f"id='task-{task.id}'" in every for task in (slow, stopped, bobs))
