"""When Prefect retries a task: only after a transient failure, with exponential back-off."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from tasks.errors import is_transient

BACKOFF = exponential_backoff(backoff_factor=5)  # 5 s, 10 s, 20 s, ... (with Prefect's jitter)


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task run only if its exception is transient (network, S3,
    a PostgreSQL connection); a missing path, a bad setting or a bug fails at once with its message."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - only classified here
        return is_transient(exc)
    return False


def retrying(retries: int) -> dict[str, Any]:
    """Task options for ``retries`` retries of transient failures only, with exponential back-off."""
    return {"retries": retries, "retry_delay_seconds": BACKOFF, "retry_condition_fn": transient_only}
