"""The live task page: served over WSGI, then driven in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import tasklib
from tasklib import TaskStatus, TaskTracker
from tasklib.page import TaskPage, page_app

from .helpers import ADMIN, OTHER, OWNER, WAIT, eventually, submit

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def by_cookie(headers: Mapping[str, str]) -> int | None:
    """The host's authenticator here: a cookie "user=<id>", which a browser sends by itself."""
    match = re.search(r"(?:^|;\s*)user=(\d{1,18})(?:;|$)", headers.get("cookie", ""))
    return int(match.group(1)) if match else None


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ThreadingServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        threading.Thread(target=self._serve_one, args=(request, client_address), daemon=True).start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


@pytest.fixture
def served(make_tracker: Callable[..., TaskTracker]) -> Iterator[tuple[TaskTracker, str]]:
    """The page and Jira's routes on a real HTTP server, on this test's store."""
    tracker = make_tracker(base_url=None, is_admin=lambda user: user == ADMIN)
    server = make_server(
        "127.0.0.1",
        0,
        page_app(tracker, authenticate=by_cookie),
        server_class=ThreadingServer,
        handler_class=QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tracker, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def get(url: str, user: int | None = None) -> tuple[int, str, bytes]:
    headers = {"Cookie": f"user={user}"} if user is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=WAIT) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read()


# -- over HTTP, without a browser ---------------------------------------------------


def test_a_user_sees_their_own_tasks_and_an_admin_all(served: tuple[TaskTracker, str]) -> None:
    tracker, base = served
    mine = tracker.submit(description="Reindex <FOO> & co", submitted_by=OWNER)
    theirs = tracker.submit(description="Their export", submitted_by=OTHER)
    status, kind, page = get(base + "/tasks/", OWNER)
    assert (status, kind) == (200, "text/html;charset=UTF-8")
    text = page.decode()
    assert "Reindex &lt;FOO&gt; &amp; co" in text and "Their export" not in text  # escaped; only their own
    assert (
        f"<progress max='100' value='0' aria-label='Progress of task {mine.id}: Reindex &lt;FOO&gt; &amp; co'>" in text
    )
    assert "Their export" in get(base + "/tasks/", ADMIN)[2].decode()
    feed = json.loads(get(base + "/tasks/tasks.json", OTHER)[2])
    assert [t["id"] for t in feed["tasks"]] == [theirs.id] and feed["next"] is None
    assert feed["tasks"][0]["cancellable"] is True and feed["tasks"][0]["status"] == "ENQUEUED"
    assert get(base + "/tasks/")[0] == 401
    assert get(base + "/tasks/tasks.json")[0] == 401


def test_filter_and_pages(served: tuple[TaskTracker, str]) -> None:
    tracker, base = served
    ids = [submit(tracker, TaskStatus.COMPLETE, OWNER) for _ in range(30)]
    running = submit(tracker, TaskStatus.RUNNING, OWNER)
    feed = json.loads(get(base + "/tasks/tasks.json?status=RUNNING", OWNER)[2])
    assert [t["id"] for t in feed["tasks"]] == [running]
    first = json.loads(get(base + "/tasks/tasks.json?status=COMPLETE", OWNER)[2])
    assert [t["id"] for t in first["tasks"]] == ids[::-1][:25] and first["next"] == ids[5]
    second = json.loads(get(base + f"/tasks/tasks.json?status=COMPLETE&after={first['next']}", OWNER)[2])
    assert [t["id"] for t in second["tasks"]] == ids[::-1][25:]
    page = get(base + "/tasks/?status=COMPLETE", OWNER)[2].decode()
    assert f"after={ids[5]}" in page and "Older tasks" in page
    assert get(base + "/tasks/?status=BOGUS", OWNER)[0] == 400
    assert get(base + "/tasks/?after=x", OWNER)[0] == 400


def test_self_contained_and_routes(served: tuple[TaskTracker, str]) -> None:
    tracker, base = served
    submit(tracker, TaskStatus.RUNNING, OWNER)
    page = get(base + "/tasks/", OWNER)[2].decode()
    for script in ("tasklib-progress.js", "page.js"):
        status, kind, body = get(base + "/tasks/" + script)
        assert (status, kind) == (200, "text/javascript;charset=UTF-8") and body
        assert f'src="/tasks/{script}"' in page
        assert "http" not in body.decode().replace("HTTP ", "")  # nothing fetched from anywhere else
    assert not re.search(r"(src|href)=['\"](https?:)?//", page)  # no CDN, no external font
    assert get(base + "/tasks/nothing", OWNER)[0] == 404
    request = urllib.request.Request(base + "/tasks/", method="POST", headers={"Cookie": f"user={OWNER}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=WAIT)
    refused.value.close()
    assert refused.value.code == 405
    assert get(base + "/rest/api/3/task/1", OWNER)[0] == 200  # Jira's routes, beside it


def test_bad_arguments(tracker: TaskTracker) -> None:
    with pytest.raises(TypeError):
        TaskPage(tracker, authenticate=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TaskPage(tracker, authenticate=by_cookie, prefix="tasks/")
    with pytest.raises(ValueError):
        TaskPage(tracker, authenticate=by_cookie, page_size=0)


# -- in a real browser ------------------------------------------------------------------


def progressing(steps: int, step_seconds: float) -> str:
    task = tasklib.current_task()
    for done in range(1, steps + 1):
        deadline = time.monotonic() + step_seconds
        while time.monotonic() < deadline:
            task.raise_if_cancelled()
            time.sleep(0.02)
        task.update_progress(done * 100 // steps, f"{done} of {steps}")
    return "done"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Headless Chromium through Selenium and Debian's chromedriver; skipped when any of them is missing."""
    if not CHROMIUM or not Path(CHROMEDRIVER).exists():
        pytest.skip(
            "browser tests: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="browser tests: pip install selenium")
    from selenium.webdriver.chrome.service import Service

    drivers: list[Any] = []

    def start(javascript: bool = True, width: int = 1280) -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        options.add_argument(f"--user-data-dir={tmp_path / f'profile-{len(drivers)}'}")
        if not javascript:
            options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_window_size(width, 900)
        drivers.append(driver)
        return driver

    try:
        yield start
    finally:
        for driver in drivers:
            driver.quit()


def sign_in(driver: Any, base: str, user: int) -> None:
    driver.get(base + "/tasks/nothing")  # any page of the origin, to set its cookie
    driver.add_cookie({"name": "user", "value": str(user), "path": "/"})
    driver.get(base + "/tasks/")


def test_in_the_browser(
    served: tuple[TaskTracker, str], browser: Callable[..., Any], tmp_path: Path, is_sqlite: bool
) -> None:
    if not is_sqlite:
        pytest.skip("the browser test runs once, on SQLite")
    from selenium.webdriver.common.by import By

    tracker, base = served
    long = tracker.submit(progressing, 100, 1.0, description="Long export", submitted_by=OWNER)
    eventually(lambda: tracker.get(long.id).status is TaskStatus.RUNNING)
    driver = browser()
    sign_in(driver, base, OWNER)
    work = tracker.submit(progressing, 10, 0.4, description="Reindex FOO", submitted_by=OWNER)
    row = f"#task-{work.id}"

    # The new task appears without a reload; its bar rises at least twice, then it settles COMPLETE.
    seen: list[int] = []

    def risen() -> bool:
        bars = driver.find_elements(By.CSS_SELECTOR, f"{row} progress")
        if bars:
            value = int(float(bars[0].get_attribute("value")))
            if not seen or value > seen[-1]:
                seen.append(value)
        status = driver.find_elements(By.CSS_SELECTOR, f"{row} .status")
        return bool(status) and status[0].text == "COMPLETE"

    eventually(risen)
    seen.append(int(float(driver.find_element(By.CSS_SELECTOR, f"{row} progress").get_attribute("value"))))
    assert len([v for v in seen if 0 < v < 100]) >= 2 and seen[-1] == 100, seen
    assert driver.find_element(By.CSS_SELECTOR, f"{row} button.cancel").is_displayed() is False
    driver.save_screenshot(str(tmp_path / "desktop.png"))

    # Cancel the other running task from its row.
    driver.find_element(By.CSS_SELECTOR, f"#task-{long.id} button.cancel").click()
    eventually(lambda: driver.find_element(By.CSS_SELECTOR, f"#task-{long.id} .status").text == "CANCELLED")
    assert tracker.get(long.id).status is TaskStatus.CANCELLED

    driver.set_window_size(390, 844)  # a phone
    driver.save_screenshot(str(tmp_path / "phone.png"))

    # Another user sees neither task.
    other = browser()
    sign_in(other, base, OTHER)
    assert other.find_elements(By.CSS_SELECTOR, "tbody tr[data-task]") == []
    assert "No tasks." in other.page_source

    # Without JavaScript the list is there, current at load.
    still = browser(javascript=False)
    sign_in(still, base, OWNER)
    statuses = [cell.text for cell in still.find_elements(By.CSS_SELECTOR, "tbody .status")]
    assert statuses == ["COMPLETE", "CANCELLED"]
    assert (tmp_path / "desktop.png").stat().st_size > 0 and (tmp_path / "phone.png").stat().st_size > 0


def test_the_trackers_admin_rule(make_tracker: Callable[..., TaskTracker]) -> None:
    tracker = make_tracker(is_admin=lambda user: user == ADMIN)
    assert tracker.is_admin(ADMIN) is True and tracker.is_admin(OWNER) is False
    assert make_tracker().is_admin(ADMIN) is False  # no is_admin: nobody
    with pytest.raises(TypeError):
        tracker.is_admin("1")  # type: ignore[arg-type]


# -- the framework mounts ----------------------------------------------------------------


def by_header(headers: Mapping[str, str]) -> int | None:
    """An authenticator by an "X-User" header, which the frameworks' test clients pass as given."""
    value = headers.get("x-user", "")
    return int(value) if value.isdigit() else None


def test_flask_and_fastapi_mounts(make_tracker: Callable[..., TaskTracker]) -> None:
    flask = pytest.importorskip("flask")
    pytest.importorskip("fastapi")
    import warnings

    import fastapi

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
        from fastapi.testclient import TestClient

    from tasklib.page import fastapi_page_router, flask_page_blueprint
    from tasklib.web import fastapi_router, flask_blueprint

    tracker = make_tracker(base_url=None)
    mine = submit(tracker, TaskStatus.RUNNING, OWNER)
    submit(tracker, TaskStatus.RUNNING, OTHER)
    flask_app = flask.Flask(__name__)
    flask_app.register_blueprint(flask_page_blueprint(tracker, authenticate=by_header, prefix="/jobs"))
    flask_app.register_blueprint(flask_blueprint(tracker, authenticate=by_header))
    fastapi_app = fastapi.FastAPI()
    fastapi_app.include_router(fastapi_page_router(tracker, authenticate=by_header, prefix="/jobs"))
    fastapi_app.include_router(fastapi_router(tracker, authenticate=by_header))
    with flask_app.test_client() as flask_client, TestClient(fastapi_app) as fastapi_client:
        for name, client in (("flask", flask_client), ("fastapi", fastapi_client)):
            headers = {"X-User": str(OWNER)}
            page = client.get("/jobs/", headers=headers)
            assert page.status_code == 200, name
            text = page.text if name == "fastapi" else page.get_data(as_text=True)
            assert f"id='task-{mine}'" in text and len(re.findall(r"<tr id='task-\d", text)) == 1, name
            assert 'data-api="/rest/api/3/task/"' in text and 'src="/jobs/page.js"' in text
            feed = client.get("/jobs/tasks.json?status=RUNNING", headers=headers)
            data = feed.json() if callable(feed.json) else feed.json  # Starlette's method, Flask's property
            assert [t["id"] for t in data["tasks"]] == [mine], name
            assert client.get("/jobs/").status_code == 401, name
            assert client.get("/jobs/tasklib-progress.js").status_code == 200, name
            assert client.post("/jobs/", headers=headers).status_code == 405, name
