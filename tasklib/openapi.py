"""Jira's OpenAPI description of the task resource's two operations, for :func:`tasklib.web.fastapi_router`.

Response models and status codes as in Jira Cloud's REST API v3 document:
``getTask`` (``GET /rest/api/3/task/{taskId}``: 200 TaskProgressBeanObject, 401,
403, 404) and ``cancelTask`` (``POST /rest/api/3/task/{taskId}/cancel``: 202,
400, 401, 403, 404). Jira declares no body for getTask's errors; tasklib answers
them with Jira's ErrorCollection and says so. cancelTask's errors are a JSON
array of strings, as Jira declares; its 202 carries the task, which Jira
declares as any JSON. Imported only by the FastAPI adapter: it needs pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, WithJsonSchema
from typing_extensions import NotRequired, TypedDict  # pydantic needs this one before Python 3.12

__all__ = ["ErrorCollection", "TaskProgressBeanObject", "operations"]

_Int64 = Annotated[int, WithJsonSchema({"type": "integer", "format": "int64"})]
_Int32 = Annotated[int, WithJsonSchema({"type": "integer", "format": "int32"})]
_Uri = Annotated[str, WithJsonSchema({"type": "string", "format": "uri"})]
_Status = Literal["ENQUEUED", "RUNNING", "COMPLETE", "FAILED", "CANCEL_REQUESTED", "CANCELLED", "DEAD"]


class TaskProgressBeanObject(TypedDict):
    """Details about a task."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    self: Annotated[_Uri, Field(description="The URL of the task.")]
    id: Annotated[str, Field(description="The ID of the task.")]
    description: NotRequired[Annotated[str, Field(description="The description of the task.")]]
    status: Annotated[_Status, Field(description="The status of the task.")]
    message: NotRequired[Annotated[str, Field(description="Information about the progress of the task.")]]
    result: NotRequired[Annotated[Any, Field(description="The result of the task execution.")]]
    submittedBy: Annotated[_Int64, Field(description="The ID of the user who submitted the task.")]
    progress: Annotated[_Int64, Field(description="The progress of the task, as a percentage complete.")]
    elapsedRuntime: Annotated[_Int64, Field(description="The execution time of the task, in milliseconds.")]
    submitted: Annotated[_Int64, Field(description="A timestamp recording when the task was submitted.")]
    started: NotRequired[Annotated[_Int64, Field(description="A timestamp recording when the task was started.")]]
    finished: NotRequired[Annotated[_Int64, Field(description="A timestamp recording when the task was finished.")]]
    lastUpdate: Annotated[_Int64, Field(description="A timestamp recording when the task progress was last updated.")]


class ErrorCollection(TypedDict, total=False):
    """Error messages from an operation."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    errorMessages: Annotated[list[str], Field(description="The list of error messages produced by this operation.")]
    errors: Annotated[dict[str, str], Field(description="The list of errors by parameter returned by the operation.")]
    status: _Int32


_TASK_ID = {
    "name": "taskId",
    "in": "path",
    "required": True,
    "description": "The ID of the task.",
    "schema": {"type": "string"},
}
_UNAUTHENTICATED = "Returned if the authentication credentials are incorrect or missing."
_FORBIDDEN = "Returned if the user does not have the necessary permission."
_NOT_FOUND = "Returned if the task is not found."
_OK = "Returned if the request is successful."


def operations() -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments of FastAPI's ``APIRoute`` for getTask and for cancelTask. Raises nothing."""
    errors = ErrorCollection
    array = list[str]
    get_task: dict[str, Any] = {
        "operation_id": "getTask",
        "summary": "Get task",
        "description": "Returns the status of a long-running asynchronous task: its submitter or an administrator.",
        "tags": ["Tasks"],
        "status_code": 200,
        "response_model": TaskProgressBeanObject,
        "response_description": _OK,
        "responses": {
            401: {"model": errors, "description": _UNAUTHENTICATED},
            403: {"model": errors, "description": _FORBIDDEN},
            404: {"model": errors, "description": _NOT_FOUND},
        },
        "openapi_extra": {"parameters": [_TASK_ID]},
    }
    cancel_task: dict[str, Any] = {
        "operation_id": "cancelTask",
        "summary": "Cancel task",
        "description": "Cancels a task: its submitter or an administrator.",
        "tags": ["Tasks"],
        "status_code": 202,
        "response_model": TaskProgressBeanObject,
        "response_description": _OK,
        "responses": {
            400: {"model": array, "description": "Returned if cancellation of the task is not possible."},
            401: {"model": array, "description": _UNAUTHENTICATED},
            403: {"model": array, "description": _FORBIDDEN},
            404: {"model": array, "description": _NOT_FOUND},
        },
        "openapi_extra": {"parameters": [_TASK_ID]},
    }
    return get_task, cancel_task
