"""The :class:`Task` snapshot and its Jira JSON form."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from .jsonvalue import decode, dumps_acyclic
from .status import STATUS_BY_VALUE, TaskStatus

if TYPE_CHECKING:
    from .storage import Record

__all__ = ["API_PREFIX", "DEFAULT_BASE_PATH", "Task"]

#: Where Jira serves its REST API v3; a task's path is ``{API_PREFIX}/task/{id}``.
API_PREFIX = "/rest/api/3"
#: The ``self`` prefix of a task when its tracker has no ``base_url``: Jira's own path, relative.
DEFAULT_BASE_PATH = f"{API_PREFIX}/task/"


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """An immutable snapshot of one task, as it was when read from the store.

    The attributes are the snake_case names of the keys of Jira's
    TaskProgressBeanObject; ``url`` is its ``self``. Times are epoch milliseconds.
    ``description``, ``message``, ``result``, ``started`` and ``finished`` are None
    when absent, and then left out of the JSON (a ``result`` of JSON null is absent).
    """

    id: str
    url: str
    status: TaskStatus
    submitted_by: int
    progress: int
    elapsed_runtime: int
    submitted: int
    last_update: int
    description: str | None = None
    message: str | None = None
    result: Any = None
    started: int | None = None
    finished: int | None = None

    @classmethod
    def from_record(cls, record: Record | tuple[Any, ...], *, url_prefix: str, now: int) -> Task:
        """The snapshot of a stored row read at ``now``; its url is ``url_prefix`` and its id.

        ``record`` is a Record, or a row whose first columns are a Record's (the
        driver's row, read by position: the read path makes no intermediate
        object). The elapsed runtime of an unfinished task runs to ``now``; a
        clock that stepped back never makes it negative.
        """
        # By position, in Record's order: id, status, description, message, result,
        # submitted_by, progress, submitted, started, finished, last_update.
        started, finished, result = record[8], record[9], record[4]
        if started is None:
            elapsed = 0
        elif finished is not None:
            elapsed = max(0, finished - started)
        else:
            elapsed = max(0, now - started)
        task_id = str(record[0])
        # A frozen dataclass's __init__ sets each field through object.__setattr__,
        # which costs more than the read that produced the values. The fields are
        # set on a twin of the same layout that is not frozen, which then becomes
        # the Task: plain slot stores, at half the cost of calling each slot's setter.
        task: Any = _Unfrozen()
        task.id = task_id
        task.url = url_prefix + task_id
        task.status = STATUS_BY_VALUE[record[1]]
        task.submitted_by = record[5]
        task.progress = record[6]
        task.elapsed_runtime = elapsed
        task.submitted = record[7]
        task.last_update = record[10]
        task.description = record[2]
        task.message = record[3]
        task.result = None if result is None else decode(result)
        task.started = started
        task.finished = finished
        if cls is not Task:  # a subclass may lay its instances out otherwise
            return cls(**{name: getattr(task, name) for name in Task.__slots__})
        task.__class__ = Task
        built: Task = task
        return built

    @property
    def cancel_requested(self) -> bool:
        """True once a cancel was requested and the task's code has not yet stopped."""
        return self.status is TaskStatus.CANCEL_REQUESTED

    def to_dict(self) -> dict[str, Any]:
        """The task as a JSON-ready dict, exactly Jira's TaskProgressBeanObject.

        Keys are in the order of Jira's documented example; optional keys are
        omitted when absent, never null.
        """
        d: dict[str, Any] = {"self": self.url, "id": self.id}
        if self.description is not None:
            d["description"] = self.description
        d["status"] = self.status.value
        if self.message is not None:
            d["message"] = self.message
        if self.result is not None:
            d["result"] = self.result
        d["submittedBy"] = self.submitted_by
        d["progress"] = self.progress
        d["elapsedRuntime"] = self.elapsed_runtime
        d["submitted"] = self.submitted
        if self.started is not None:
            d["started"] = self.started
        if self.finished is not None:
            d["finished"] = self.finished
        d["lastUpdate"] = self.last_update
        return d

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON text (UTF-8 safe, non-ASCII kept as is)."""
        # The same text as dumps(to_dict()), written out: Jira's keys and their order
        # are fixed, so only the values need encoding, and no dict is built and walked
        # (on a get, the encoder's walk costs more than the read). Texts go through
        # the encoder's own string escaping, the result through the encoder itself.
        submitted_by, progress, elapsed, submitted = (
            self.submitted_by,
            self.progress,
            self.elapsed_runtime,
            self.submitted,
        )
        started, finished, last_update = self.started, self.finished, self.last_update
        if not (
            type(submitted_by) is int
            and type(progress) is int
            and type(elapsed) is int
            and type(submitted) is int
            and type(last_update) is int
            and (started is None or type(started) is int)
            and (finished is None or type(finished) is int)
        ):
            # A Task built by hand with a bool or a float where an int belongs: the
            # encoder spells those (true, 1.5), which formatting an int would not.
            return dumps_acyclic(self.to_dict())
        description, message, result = self.description, self.message, self.result
        parts = ['{"self":', _json_text(self.url), ',"id":', _json_text(self.id)]
        if description is not None:
            parts += (',"description":', _json_text(description))
        parts += (',"status":', _STATUS_JSON[self.status])
        if message is not None:
            parts += (',"message":', _json_text(message))
        if result is not None:
            # A Task's result was read back from JSON, or checked before it was stored.
            parts += (',"result":', dumps_acyclic(result))
        parts.append(f',"submittedBy":{submitted_by},"progress":{progress},"elapsedRuntime":{elapsed}')
        parts.append(f',"submitted":{submitted}')
        if started is not None:
            parts.append(f',"started":{started}')
        if finished is not None:
            parts.append(f',"finished":{finished}')
        parts.append(f',"lastUpdate":{last_update}}}')
        return "".join(parts)


# The string escaping of json's encoder with ensure_ascii=False, as dumps uses it.
_json_text = json.encoder.encode_basestring
_STATUS_JSON = {status: _json_text(status.value) for status in TaskStatus}
assert tuple(field.name for field in dataclasses.fields(Task)) == Task.__slots__


class _Unfrozen:
    """A Task's slots without its frozen __setattr__ (see :meth:`Task.from_record`)."""

    __slots__ = Task.__slots__
