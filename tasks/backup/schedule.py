"""When an asset's backup is due: its cron schedule (derived from the RPO or set in the registry, in UTC) has fired
since its last backup. The cron arithmetic is cronsim's, the engine Prefect's own stack ships (through pydocket)."""

from __future__ import annotations

from datetime import UTC, datetime

from cronsim import CronSim, CronSimError


class ScheduleError(ValueError):
    """A cron schedule that cannot be evaluated."""


def next_run(schedule: str, after: datetime) -> datetime:
    """The first time ``schedule`` fires strictly after ``after`` (UTC)."""
    try:
        return next(iter(CronSim(schedule, after.astimezone(UTC).replace(microsecond=0))))
    except (CronSimError, StopIteration) as exc:
        raise ScheduleError(f"schedule {schedule!r}: {exc or 'never fires'}") from None


def is_due(schedule: str, last_backup: datetime | None, now: datetime) -> bool:
    """True when the asset was never backed up or its schedule has fired since ``last_backup`` (at or before now)."""
    return last_backup is None or next_run(schedule, last_backup) <= now
