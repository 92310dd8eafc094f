"""The tracker's scheduled maintenance, on an APScheduler 3.x scheduler, and the purge round.

Two jobs per tracker, with fixed ids under the tracker's name (by default one
derived from its store): ``{name}:purge`` deletes expired tasks and
``{name}:heartbeat`` renews this process's heartbeat and sweeps dead runners.
A tracker refuses to open on a host scheduler that already has its jobs, which
would be another open tracker's.
A scheduler the host passes in is only given jobs: it is never started, stopped
or reconfigured here. The heartbeat round is liveness's
(:meth:`tasklib.liveness.Liveness.heartbeat_round`); the purge round is here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from .storage import PURGE_LEASE
from .telemetry import log

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from .storage import Store

__all__ = ["PURGE_LEASE_MS", "Maintenance", "purge_round"]


#: How long the purge lease is held without renewal before another process may
#: take it (its holder died).
PURGE_LEASE_MS = 10 * 60 * 1000


def purge_round(store: Store, owner: str, *, retention_ms: int, now: int) -> int:
    """The purge job: delete the tasks finished before ``now - retention_ms``; how many.

    At most one process purges a store at a time: ``owner`` takes the purge lease
    first, and a round that cannot take it deletes nothing (0). Freed space is
    given back to the file system afterwards. Raises StoreError.
    """
    if not store.take_lease(PURGE_LEASE, owner, now=now, ttl_ms=PURGE_LEASE_MS):
        return 0
    try:
        count = store.purge(now - retention_ms, lease=(owner, PURGE_LEASE_MS))
        if count:
            store.reclaim()
        return count
    finally:
        store.drop_lease(PURGE_LEASE, owner)


class _Rounds:
    """Lets stop() wait for a round already running, and keeps later ones from starting.

    A host's scheduler runs a round in its own thread; removing the job does not
    wait for it, and the store must not be closed under it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False

    def guarded(self, what: str, job: Callable[[], object]) -> Callable[[], None]:
        # A failing round (database locked too long, disk full) is logged and the next
        # round tries again; it must never take the scheduler or the host down.
        def run() -> None:
            with self._lock:
                if self._stopped:
                    return
                try:
                    job()
                except Exception:
                    log(logging.ERROR, "%s failed; it runs again next round", what, exc_info=True)

        run.__name__ = run.__qualname__ = f"tasklib_{what}"
        return run

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


class Maintenance:
    """Schedules a tracker's purge and heartbeat jobs, and removes them again."""

    def __init__(
        self,
        *,
        name: str,
        purge: Callable[[], object],
        heartbeat: Callable[[], object],
        purge_interval: timedelta,
        heartbeat_interval: timedelta,
        scheduler: BaseScheduler | None = None,
    ) -> None:
        self._owned = scheduler is None
        self.scheduler: BaseScheduler | None = scheduler
        self.job_ids = (f"{name}:purge", f"{name}:heartbeat")
        self._rounds = _Rounds()
        self._jobs = (
            (self.job_ids[0], self._rounds.guarded("purge", purge), purge_interval),
            (self.job_ids[1], self._rounds.guarded("heartbeat", heartbeat), heartbeat_interval),
        )

    def check_free(self) -> None:
        """Raise ValueError if the host's scheduler already has this tracker's jobs.

        Those jobs belong to another open tracker on the same store (or of the same
        ``name``); replacing them would leave that tracker without maintenance.
        """
        if self.scheduler is None or self._owned:
            return
        for job_id in self.job_ids:
            if self.scheduler.get_job(job_id) is not None:
                raise ValueError(
                    f"the scheduler already has the job {job_id!r} of another open tracker; "
                    "close that tracker first, or give this one another name"
                )

    def start(self) -> None:
        """Add the jobs, and start the scheduler if tasklib makes its own."""
        if self.scheduler is None:
            # Imported here: APScheduler takes a while to import, and a tracker that is
            # never opened (a CLI reading one task) should not pay for it.
            from apscheduler.schedulers.background import BackgroundScheduler

            self.scheduler = BackgroundScheduler(daemon=True)
        for job_id, func, interval in self._jobs:
            self.scheduler.add_job(
                func,
                "interval",
                seconds=interval.total_seconds(),
                id=job_id,
                name=job_id,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=max(1, int(interval.total_seconds())),
            )
        if self._owned:
            self.scheduler.start()

    def stop(self) -> None:
        """Remove the jobs (a host's scheduler keeps running), or shut down tasklib's own scheduler.

        Returns once a round that was running has ended; no round starts after.
        """
        from apscheduler.jobstores.base import JobLookupError

        if self.scheduler is None:
            return
        if self._owned:
            if self.scheduler.running:
                self.scheduler.shutdown(wait=True)
            self._rounds.stop()
            return
        for job_id in self.job_ids:
            with contextlib.suppress(JobLookupError):  # the host removed it already
                self.scheduler.remove_job(job_id)
        self._rounds.stop()
