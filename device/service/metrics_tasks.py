"""Warehouse tasks seen through tool calls: which ones finish, and how often the agent re-asks.

A task is one thing the worker wants done: locate an item, move stock, count a bin, pick a line.
It starts with the first tool call of its type in a session and ends when that work is done
(a read answered, a write committed), cancelled, failed, handed to a human, or left open when
the session ends. A *re-ask* is a further attempt after a failed one: the tool said the
arguments, the stock or the check digit were wrong (the model has to ask the worker again), or
the worker took back a read-back. Re-asks per task is the recovery rate the seed asks for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Tool name -> task type. Tools not listed here (confirm_pending_action, end_session) belong to
# whatever task they act on, and are followed through ConfirmationResolved instead.
TASK_TYPES: dict[str, str] = {
    "find_item": "locate",
    "get_stock": "lookup",
    "move_stock": "move",
    "record_count": "count",
    "report_damage": "damage",
    "get_next_pick": "pick",
    "verify_location": "pick",
    "confirm_pick": "pick",
    "handoff_to_human": "handoff",
    "scan_barcode": "scan",
    "look": "look",
}
# Task types whose first successful answer completes them (nothing is written).
ANSWER_TASKS = frozenset({"locate", "lookup", "scan", "look", "handoff"})
# Results after which the model has to ask the worker again.
FAILED_STATUSES = frozenset({"error", "refused"})
# How a write's confirmation ends its task; outcomes not listed (confirmed) change nothing.
CONFIRMATION_OUTCOMES = {
    "committed": "completed",
    "cancelled": "cancelled",
    "expired": "failed",
    "failed": "failed",
}
# The worker said no to a read-back, or the model proposed a different change: ask again.
REASK_OUTCOMES = frozenset({"revoked", "replaced"})

OUTCOMES = ("completed", "cancelled", "failed", "handed_off", "abandoned")


@dataclass(frozen=True)
class TaskResult:
    session_id: str
    type: str
    outcome: str  # one of OUTCOMES
    reasks: int
    duration_s: float


@dataclass
class _Task:
    type: str
    started: float = field(default_factory=time.monotonic)
    reasks: int = 0
    retry_due: bool = False  # the last attempt failed: the next one is a re-ask


class TaskTracker:
    """Feed it tool results, confirmation outcomes and session ends; it reports finished tasks
    to `on_finished`."""

    def __init__(self, on_finished: Callable[[TaskResult], None]) -> None:
        self._on_finished = on_finished
        self._open: dict[str, dict[str, _Task]] = {}  # session id -> task type -> task

    @property
    def open_tasks(self) -> int:
        return sum(len(tasks) for tasks in self._open.values())

    def tool_finished(self, session_id: str, tool: str, status: str) -> None:
        task_type = TASK_TYPES.get(tool)
        if task_type is None:
            return
        task = self._attempt(session_id, task_type)
        if status in FAILED_STATUSES:
            task.retry_due = True
        elif status == "ok" and task_type in ANSWER_TASKS:
            self._finish(session_id, task, "completed")
            if task_type == "handoff":
                for other in list(self._open.get(session_id, {}).values()):
                    self._finish(session_id, other, "handed_off")

    def confirmation_resolved(self, session_id: str, tool: str, outcome: str) -> None:
        task_type = TASK_TYPES.get(tool)
        task = self._open.get(session_id, {}).get(task_type or "")
        if task is None:
            return
        if outcome in REASK_OUTCOMES:
            task.retry_due = True
        elif outcome in CONFIRMATION_OUTCOMES:
            self._finish(session_id, task, CONFIRMATION_OUTCOMES[outcome])

    def session_ended(self, session_id: str) -> None:
        for task in list(self._open.get(session_id, {}).values()):
            self._finish(session_id, task, "abandoned")
        self._open.pop(session_id, None)

    def _attempt(self, session_id: str, task_type: str) -> _Task:
        tasks = self._open.setdefault(session_id, {})
        task = tasks.get(task_type)
        if task is None:
            task = tasks[task_type] = _Task(task_type)
        elif task.retry_due:
            task.reasks += 1
            task.retry_due = False
        return task

    def _finish(self, session_id: str, task: _Task, outcome: str) -> None:
        tasks = self._open.get(session_id, {})
        if tasks.get(task.type) is not task:
            return
        del tasks[task.type]
        self._on_finished(
            TaskResult(
                session_id=session_id,
                type=task.type,
                outcome=outcome,
                reasks=task.reasks,
                duration_s=time.monotonic() - task.started,
            )
        )
