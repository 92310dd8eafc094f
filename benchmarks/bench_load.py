"""Load: several processes on one store at once.

SQLite: 4 processes x 2,000 tasks each (submit, 10 progress reports, complete) on
one file at once, against the same 8,000 tasks done by one process. Every task is
then checked: zero errors, zero lost updates (all COMPLETE at progress 100).

PostgreSQL (with --postgres URL, or TASKLIB_TEST_POSTGRES_URL): the same 4 x 2,000
through tasklib, against plain psycopg2 running the same statements (tasklib's own
rendered SQL) in 4 processes. Target: tasklib >= 0.7x the baseline's throughput.

    python benchmarks/bench_load.py [--tasks 2000] [--procs 4] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from tasklib import TaskStatus, TaskTracker  # noqa: E402
from tasklib.clock import now_ms  # noqa: E402
from tasklib.status import Event  # noqa: E402

REPORTS = 10


def work_tasklib(store: str, n: int, start: float) -> dict[str, object]:
    tracker = TaskTracker(store)
    time.sleep(max(0.0, start - time.time()))
    began = time.perf_counter()
    ids, errors = [], 0
    for _ in range(n):
        try:
            task = tracker.submit(description="load", submitted_by=1)
            for p in range(1, REPORTS + 1):
                tracker.update_progress(task.id, p * 9, message=f"report {p}")
            tracker.complete(task.id, result={"ok": True})
            ids.append(task.id)
        except Exception as exc:  # counted, not hidden: the target is zero
            errors += 1
            print(f"error: {exc!r}", file=sys.stderr)
    took = time.perf_counter() - began
    tracker.close()
    return {"seconds": took, "ids": ids, "errors": errors}


def work_psycopg2(store: str, n: int, start: float) -> dict[str, object]:
    import psycopg2

    probe = TaskTracker(store)  # only to take tasklib's own rendered statements
    s = probe._store
    insert, progress, complete = s._insert, s._events[Event.PROGRESS], s._events[Event.COMPLETE]
    probe.close()
    conn = psycopg2.connect(store)
    conn.autocommit = True
    cur = conn.cursor()
    time.sleep(max(0.0, start - time.time()))
    began = time.perf_counter()
    ids, errors = [], 0
    for _ in range(n):
        try:
            cur.execute(
                insert.sql, insert.bind({"description": "load", "submitted_by": 1, "now": now_ms(), "runner": None})
            )
            task_id = cur.fetchall()[0][0]
            for p in range(1, REPORTS + 1):
                cur.execute(
                    progress.sql,
                    progress.bind(
                        {
                            "id": task_id,
                            "now": now_ms(),
                            "progress": p * 9,
                            "message": f"report {p}",
                            "result": None,
                            "runner": None,
                        }
                    ),
                )
                cur.fetchall()
            cur.execute(
                complete.sql,
                complete.bind(
                    {
                        "id": task_id,
                        "now": now_ms(),
                        "progress": None,
                        "message": None,
                        "result": '{"ok":true}',
                        "runner": None,
                    }
                ),
            )
            cur.fetchall()
            ids.append(str(task_id))
        except Exception as exc:
            errors += 1
            print(f"error: {exc!r}", file=sys.stderr)
    took = time.perf_counter() - began
    conn.close()
    return {"seconds": took, "ids": ids, "errors": errors}


WORKERS = {"tasklib": work_tasklib, "psycopg2": work_psycopg2}


def run(side: str, store: str, procs: int, n: int) -> dict[str, float]:
    TaskTracker(store).close()  # the schema exists before the race
    start = time.time() + 1.5  # every process imported and connected before the clock starts
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", side, store, str(n), str(start)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(procs)
    ]
    results = [json.loads(c.communicate()[0]) for c in children]
    assert all(c.returncode == 0 for c in children)
    wall = max(r["seconds"] for r in results)
    errors = sum(r["errors"] for r in results)
    ids = [i for r in results for i in r["ids"]]
    reader = TaskTracker(store)
    lost = sum(1 for i in ids if (t := reader.get(i)).status is not TaskStatus.COMPLETE or t.progress != 100)
    reader.close()
    lost += procs * n - len(ids)
    return {"tasks_per_s": procs * n / wall, "errors": errors, "lost": lost}


def reset_postgres(url: str) -> None:
    from playhouse.db_url import connect

    db = connect(url)
    for table in ("tasklib_task", "tasklib_meta", "tasklib_runner", "tasklib_lease"):
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per process")
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TASKLIB_TEST_POSTGRES_URL"),
        help="PostgreSQL URL (its tasklib_* tables are dropped)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, store, n, start = args.child
        print(json.dumps(WORKERS[side](store, int(n), float(start))))
        return
    ops = 2 + REPORTS
    with tempfile.TemporaryDirectory() as tmp:
        many = run("tasklib", os.path.join(tmp, "many.db"), args.procs, args.tasks)
        one = run("tasklib", os.path.join(tmp, "one.db"), 1, args.procs * args.tasks)
    print(
        f"SQLite, one file: {args.procs} processes x {args.tasks} tasks (submit, {REPORTS} progress reports, complete)"
    )
    print(
        f"  {args.procs} processes at once: {many['tasks_per_s']:8,.0f} tasks/s ({many['tasks_per_s'] * ops:,.0f} writes/s), "
        f"errors {many['errors']}, lost updates {many['lost']}"
    )
    print(
        f"  1 process, same work:   {one['tasks_per_s']:8,.0f} tasks/s ({one['tasks_per_s'] * ops:,.0f} writes/s), "
        f"errors {one['errors']}, lost updates {one['lost']}"
    )
    print(
        f"  aggregate throughput ratio {many['tasks_per_s'] / one['tasks_per_s']:.2f} (SQLite has one writer at a time); "
        f"{'PASS' if many['errors'] == many['lost'] == 0 else 'FAIL'}: zero errors, zero lost updates"
    )
    if not args.postgres:
        print("PostgreSQL: skipped (give --postgres URL or set TASKLIB_TEST_POSTGRES_URL)")
        return
    reset_postgres(args.postgres)
    raw = run("psycopg2", args.postgres, args.procs, args.tasks)
    reset_postgres(args.postgres)
    lib = run("tasklib", args.postgres, args.procs, args.tasks)
    ratio = lib["tasks_per_s"] / raw["tasks_per_s"]
    print(f"PostgreSQL: {args.procs} processes x {args.tasks} tasks")
    print(
        f"  psycopg2, same statements: {raw['tasks_per_s']:8,.0f} tasks/s, errors {raw['errors']}, lost {raw['lost']}"
    )
    print(
        f"  tasklib:                   {lib['tasks_per_s']:8,.0f} tasks/s, errors {lib['errors']}, lost {lib['lost']}"
    )
    print(
        f"  ratio {ratio:.2f} (target >= 0.70): {'PASS' if ratio >= 0.7 and lib['errors'] == lib['lost'] == 0 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
