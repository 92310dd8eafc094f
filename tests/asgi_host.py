"""The ASGI applications the tests serve with a real uvicorn process (``uvicorn --factory tests.asgi_host:make``).

The environment says which: ``TASKLIB_TEST_STORE`` is the store, ``TASKLIB_TEST_APP``
one of ``asgi``, ``asgi-async``, ``fastapi-async`` (``-async``: an AsyncTaskTracker,
and for ``asgi-async`` an ``async def`` authenticate too). Users as in the tests:
"Authorization: Bearer <user id>", and ADMIN administers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tasklib import AsyncTaskTracker, TaskTracker
from tasklib.web import asgi_app, fastapi_router

from .helpers import ADMIN, bearer


def is_admin(user: int) -> bool:
    return user == ADMIN


async def bearer_async(headers: Mapping[str, str]) -> int | None:
    return bearer(headers)


def make() -> Any:
    store, kind = os.environ["TASKLIB_TEST_STORE"], os.environ["TASKLIB_TEST_APP"]
    tracker: TaskTracker | AsyncTaskTracker
    if kind.endswith("-async"):
        tracker = AsyncTaskTracker(store, base_url=None, is_admin=is_admin)
    else:
        tracker = TaskTracker(store, base_url=None, is_admin=is_admin)
    if kind.startswith("fastapi"):
        import fastapi

        app = fastapi.FastAPI()
        app.include_router(fastapi_router(tracker, authenticate=bearer))
        return app
    return asgi_app(tracker, authenticate=bearer_async if kind == "asgi-async" else bearer)
