"""Helpers shared by the test modules, which import them from here and never from one another."""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote

import jsonschema
import pytest

from tasklib import Task, TaskStatus, TaskTracker
from tasklib.status import Event
from tasklib.web import DEFAULT_PREFIX

BASE_URL = "https://your-domain.atlassian.net/rest/api/3/task/"
WAIT = 30  # seconds: generous, only reached when something is broken

# A shell starts background jobs with SIGINT ignored, and children inherit that:
# a test that stops a child with Ctrl-C cannot run there.
interruptible = pytest.mark.skipif(
    sys.platform == "win32" or signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
    reason="needs SIGINT, which is ignored here (or Windows)",
)


def eventually(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def rows(tracker: TaskTracker) -> list[tuple[Any, ...]]:
    """Every stored task row, read straight from the database."""
    cursor = tracker._store.db.execute_sql("SELECT * FROM tasklib_task ORDER BY id")
    return [tuple(r) for r in cursor.fetchall()]


# -- the status machine, through the public API ---------------------------------

S = TaskStatus

# How a tracker reaches each status, from a fresh ENQUEUED task.
PATHS: dict[TaskStatus, list[Event]] = {
    S.ENQUEUED: [],
    S.RUNNING: [Event.START],
    S.CANCEL_REQUESTED: [Event.START, Event.CANCEL],
    S.COMPLETE: [Event.START, Event.COMPLETE],
    S.FAILED: [Event.START, Event.FAIL],
    S.CANCELLED: [Event.CANCEL],
    S.DEAD: [Event.START, Event.DIE],
}


def act(tracker: TaskTracker, task_id: str, event: Event) -> Task:
    """Apply ``event`` through the public API."""
    calls: dict[Event, Callable[[], Task]] = {
        Event.START: lambda: tracker.start(task_id),
        Event.PROGRESS: lambda: tracker.update_progress(task_id, 50, message="half way"),
        Event.CANCEL: lambda: tracker.cancel(task_id),
        Event.ACKNOWLEDGE_CANCEL: lambda: tracker.acknowledge_cancel(task_id, message="stopped"),
        Event.COMPLETE: lambda: tracker.complete(task_id, result={"done": True}),
        Event.FAIL: lambda: tracker.fail(task_id, message="disk full"),
        Event.DIE: lambda: tracker.mark_dead(task_id, "runner gone"),
        # No method of the tracker's: a queue's worker releases a task it will retry.
        Event.RELEASE: lambda: tracker.workers.ledger.transition(task_id, Event.RELEASE, message="retrying"),
    }
    return calls[event]()


def reach(tracker: TaskTracker, status: TaskStatus) -> Task:
    task = tracker.submit(description="t", submitted_by=1)
    for event in PATHS[status]:
        task = act(tracker, task.id, event)
    assert task.status is status
    return task


# -- the web layer -------------------------------------------------------------

OWNER, ADMIN, OTHER = 10000, 1, 20000
TASK = DEFAULT_PREFIX + "/task/"
JSON = "application/json;charset=UTF-8"
ALLOWED = {200, 202, 400, 401, 403, 404, 405}
#: What Allow says on a task's path and on its cancel path.
ALLOW_GET, ALLOW_CANCEL = "GET, HEAD, OPTIONS", "POST, OPTIONS"
TERMINAL = [s for s in TaskStatus if s.is_terminal]
#: Odd ids: malformed, percent-encoded, huge, injections; none is a task's id as it stands.
NASTY_IDS = [
    "",
    "0",
    "-1",
    "+1",
    "01",
    "1.0",
    "1e3",
    " 1",
    "1 ",
    "١",
    "𝟙",
    "é",
    "\x00",
    "\ud800",
    "%",
    "%%",
    "%zz",
    "%00",
    "%FF",
    "%C3%A9",
    "%2F",
    "%2e%2e",
    "..",
    ".",
    "1%00",
    "1%0A",
    "%31%32",
    "%2531",
    "1;drop",
    "1 OR 1=1",
    "1' OR '1'='1",
    "1; DROP TABLE tasklib_task",
    "../1",
    "../../etc/passwd",
    "1/..",
    "1?x=1",
    "1#x",
    "9" * 19,
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "1" * 5000,
    "٣",
    "ⅰ",
    "0x1",
    "1_000",
    "\t1",
    "1\r\n",
    "<script>",
    "${jndi:x}",
    "\\1",
    "1\\",
]


def bearer(headers: Mapping[str, str]) -> int | None:
    """The host's authenticator in these tests: "Authorization: Bearer <user id>", else anonymous."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme != "Bearer" or not (token.isascii() and token.isdigit()) or len(token) > 18:
        return None
    return int(token)


def auth(user: int | None) -> dict[str, str]:
    return {} if user is None else {"Authorization": f"Bearer {user}"}


def body_checker(task_schema: dict[str, Any]) -> Callable[..., Any]:
    """A checker of one answer's content type and body against Jira's schemas; returns the decoded body."""
    # Built once: jsonschema.validate() would check and compile the schema on every call.
    task = jsonschema.Draft202012Validator(task_schema)
    error_collection = jsonschema.Draft202012Validator(task_schema["$defs"]["ErrorCollection"])
    cancel_errors = jsonschema.Draft202012Validator(task_schema["$defs"]["CancelTaskErrorBody"])

    def check(status: int, content_type: str | None, body: bytes, *, cancel: bool = False) -> Any:
        assert content_type == JSON
        value = json.loads(body.decode("utf-8"))
        if status in (200, 202, 303):
            task.validate(value)
        elif cancel and status != 405:
            cancel_errors.validate(value)
            assert len(value) == 1 and value[0]
        else:
            error_collection.validate(value)
            assert value.keys() == {"errorMessages", "errors"} and value["errors"] == {}
            assert len(value["errorMessages"]) == 1 and value["errorMessages"][0]
        return value

    return check


def submit(tracker: TaskTracker, status: TaskStatus = TaskStatus.ENQUEUED, user: int = OWNER) -> str:
    """A task submitted by ``user`` and brought to ``status`` through the public API; returns its id."""
    task = tracker.submit(description="t", submitted_by=user)
    for event in PATHS[status]:
        task = act(tracker, task.id, event)
    assert task.status is status
    return task.id


def is_cancel(path: str) -> bool:
    """Whether ``path`` is a task's cancel path, whose error bodies are arrays."""
    segments = path[len(TASK) :].split("/") if path.startswith(TASK) else []
    return len(segments) == 2 and bool(segments[0]) and unquote(segments[1]) == "cancel"


def fuzz_paths(seed: int, count: int, *, encode: bool = False) -> list[str]:
    """Nasty ids raw and percent-encoded, plus random strings, on both resource paths.

    With ``encode``, every id is percent-encoded, so each path is valid ASCII a client can send.
    """
    rng = random.Random(seed)
    alphabet = "0123456789" * 3 + "%/?#;. -+\x00\ud800é中٣AFaf~\\"
    ids = NASTY_IDS + [quote(i, safe="", errors="surrogatepass") for i in NASTY_IDS]
    ids += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30))) for _ in range(count)]
    if encode:
        ids = [quote(i, safe="", errors="surrogatepass") for i in ids]
    paths = [TASK + i for i in ids] + [TASK + i + "/cancel" for i in ids]
    cut_short = [path[: rng.randrange(len(path) + 1)] for path in paths[: count // 4]]
    return paths + cut_short


async def asgi_exchange(
    app: Any, method: str, path: str, headers: Mapping[str, str], body: bytes = b"", **scope: Any
) -> tuple[int, dict[str, str], bytes]:
    """Call an ASGI app once, as a server would, with the body in 1 KB messages: status, headers, body."""
    sent: list[dict[str, Any]] = []
    messages = [
        {"type": "http.request", "body": body[i : i + 1024], "more_body": True} for i in range(0, len(body), 1024)
    ]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    full = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("127.0.0.1", 8000),
        **scope,
    }
    await app(full, receive, send)
    start, content = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, content
