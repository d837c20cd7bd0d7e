"""A retention policy applied to backup times, as ``restic forget`` applies it to snapshots: for backups kept
outside restic (Proxmox vzdump archives), so that one policy in the registry means the same for every kind.

Going from the newest backup to the oldest, ``keep_last`` keeps the first n; ``keep_hourly`` (daily, weekly, monthly,
yearly) keeps a backup when its hour (day, ISO week, month, year) differs from that of the last backup it kept, until
it has kept n. Periods are calendar periods in UTC. A backup kept by any rule is kept. (restic >= 0.15 also keeps
the oldest backup while a rule has counts left; the restic of the lab, 0.14, and this function do not.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from tasks.backup.registry import Retention

_PERIODS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "keep_hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "keep_daily": lambda t: (t.year, t.month, t.day),
    "keep_weekly": lambda t: tuple(t.isocalendar())[:2],
    "keep_monthly": lambda t: (t.year, t.month),
    "keep_yearly": lambda t: (t.year,),
}


def kept(times: Sequence[datetime], policy: Retention) -> set[int]:
    """The indices of ``times`` (timezone-aware, any order) that ``policy`` keeps."""
    order = sorted(range(len(times)), key=lambda i: times[i], reverse=True)
    keep: set[int] = set(order[:policy.keep_last or 0])
    for name, period in _PERIODS.items():
        left = getattr(policy, name) or 0
        last: tuple[int, ...] | None = None
        for i in order:
            if left == 0:
                break
            value = period(times[i].astimezone(UTC))
            if value != last:
                keep.add(i)
                last = value
                left -= 1
    return keep
