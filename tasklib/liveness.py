"""Who runs a task, and how a tracker tells that its runner is gone.

A runner is one tracker's worker pool in one process: a host name, a process id
and a random token (a pid alone is reused by the operating system). It renews a
heartbeat in the store; a task whose runner stopped renewing it becomes DEAD.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

__all__ = ["Runner", "process_exists"]


@dataclass(frozen=True)
class Runner:
    """This process's identity in the store."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"


def process_exists(pid: int) -> bool:
    """Whether a process with this id exists on this host (POSIX)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    except OSError:
        return True  # cannot tell: assume alive, the heartbeat age decides
    return True


def gone_message(label: str) -> str:
    return f"runner {label} stopped responding"
