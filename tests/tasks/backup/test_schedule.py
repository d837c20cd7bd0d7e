"""tasks.backup.schedule: an asset is due when its cron schedule has fired since its last backup (UTC)."""

from datetime import UTC, datetime, timedelta

import pytest

from tasks.backup.registry import derived_schedule
from tasks.backup.schedule import ScheduleError, is_due, next_run

T = datetime(2026, 3, 2, 12, 5, tzinfo=UTC)


def test_next_run_is_strictly_after():
    assert next_run("5-59/30 * * * *", T) == T + timedelta(minutes=30)
    assert next_run("5-59/30 * * * *", T + timedelta(seconds=1)) == T + timedelta(minutes=30)
    assert next_run("0 3 * * *", T) == datetime(2026, 3, 3, 3, 0, tzinfo=UTC)


def test_due_when_the_schedule_fired_since_the_last_backup_or_never_backed_up():
    hourly = "0 * * * *"
    assert is_due(hourly, None, T)
    assert not is_due(hourly, T, T + timedelta(minutes=54))  # 13:00 not yet
    assert is_due(hourly, T, T + timedelta(minutes=55))  # 13:00 has come
    assert is_due(hourly, T - timedelta(hours=5), T)


def test_every_derived_schedule_is_due_within_half_the_rpo():
    for hours in (1, 4, 8, 12, 24):
        schedule = derived_schedule(timedelta(hours=hours), "catalog-db")
        assert is_due(schedule, T, T + timedelta(hours=hours) / 2), schedule


def test_a_bad_schedule_is_one_line():
    with pytest.raises(ScheduleError, match=r"schedule '61 \* \* \* \*': "):
        next_run("61 * * * *", T)
