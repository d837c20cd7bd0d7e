"""tasks.backup.retention keeps what real ``restic forget`` keeps (the same snapshot times, the same policies), so a
retention in the registry means the same for a Proxmox VM's archives as for a restic asset's snapshots."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from tasks.backup.registry import Retention
from tasks.backup.retention import kept

# every count below is used up by these times (more periods than kept), so restic >= 0.15's "keep the oldest while
# counts are left" does not apply and any restic of the lab agrees
POLICIES = [Retention(keep_last=2, keep_hourly=2), Retention(keep_daily=3, keep_weekly=2),
            Retention(keep_last=1, keep_monthly=2, keep_yearly=1)]


def test_retention_keeps_what_restic_forget_keeps(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")  # restic buckets by the snapshot's own (local) time
    rng = random.Random(11)
    start = datetime(2026, 1, 26, tzinfo=UTC)
    times = sorted({start + timedelta(hours=rng.randrange(0, 24 * 70)) for _ in range(10)})
    times[-2] = times[-1] - timedelta(minutes=20)  # two within one hour
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("x")
    by_id = {repo.backup_path([source], tags=["asset=t"], at=t).snapshot_id[:8]: t for t in times}
    for policy in POLICIES:
        restic_kept = {by_id[i[:8]] for i in repo.forget_prune(policy, tags=["asset=t"], dry_run=True).keep}
        assert {times[i] for i in kept(times, policy)} == restic_kept, policy


def test_retention_by_hand():
    t = [datetime(2026, 3, d, h, tzinfo=UTC) for d, h in ((1, 10), (1, 12), (2, 10), (3, 9), (3, 11))]
    assert kept(t, Retention(keep_daily=2, keep_last=1)) == {2, 4}  # the newest of each of the last two days
    assert kept(list(reversed(t)), Retention(keep_daily=2)) == {0, 2}  # any order in
    assert kept(t, Retention(keep_weekly=5)) == {1, 4}  # ISO weeks: Sunday 1 March 2026 ends the week before
    assert kept([], Retention(keep_last=3)) == set()
    with pytest.raises(ValueError, match="must keep something"):
        Retention()
