"""tasks.backup.status: the status table's cells and the problem lines, from RPO states and catalog records."""

from datetime import UTC, datetime, timedelta

from tasks.backup.registry import parse_assets
from tasks.backup.rpo import Unreadable, assess
from tasks.backup.status import STATUS_COLUMNS, problems, status_rows

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
REG = parse_assets({"repositories": [{"name": "nfs", "url": "/srv/r"}, {"name": "minio", "url": "/srv/m"}],
                    "assets": [{"name": n, "class": c, "kind": "path", "paths": ["/x"], "repository": r}
                               for n, c, r in (("docs", "documentation", "nfs"), ("cfg", "infrastructure", "nfs"),
                                               ("lake", "research-data", "minio"))]}, "assets.yaml")


def test_rows_and_problems():
    statuses = [assess(REG.asset("docs"), NOW - timedelta(minutes=20, seconds=20), NOW),
                assess(REG.asset("cfg"), NOW - 5 * H, NOW),
                assess(REG.asset("lake"), Unreadable("repository minio: wrong password"), NOW)]
    verifications = {"nfs": {"ok": False, "checked_at": NOW - H, "errors": ["pack 1a2b3c4d: damaged"]},
                     "minio": {"ok": True, "checked_at": NOW - 2 * H, "errors": []},
                     "retired": {"ok": False, "checked_at": NOW, "errors": []}}  # no asset uses it: not a problem
    drills = {"docs": {"result": "passed", "restore_s": 61.0, "rto_s": 3600.0, "started_at": NOW - 24 * H,
                       "detail": "ok"},
              "cfg": {"result": "failed", "restore_s": 9000.0, "rto_s": 7200.0, "started_at": NOW - 48 * H,
                      "detail": "restore 9000.0 s, OVER the RTO of 7200 s"}}
    prunes = {"docs": {"status": "ok", "snapshots_kept": 7, "snapshots_removed": 2, "finished_at": NOW - 3 * H,
                       "error": None},
              "lake": {"status": "failed", "snapshots_kept": None, "snapshots_removed": None,
                       "finished_at": NOW - 2 * H, "error": "restic forget /srv/m: the repository is locked"}}
    rows = status_rows(statuses, verifications, drills, prunes)
    assert [tuple(r) for r in rows] == [STATUS_COLUMNS] * 3
    docs, cfg, lake = rows
    assert docs["age_vs_rpo"] == "20m20s of 1h (34%)" and docs["state"] == "ok"
    assert docs["last_backup"] == "2026-03-02 11:39 UTC"
    assert docs["last_verification"] == "FAILED 2026-03-02 11:00 UTC"
    assert docs["last_drill_vs_rto"] == "passed 1m1s of 1h (2026-03-01 12:00 UTC)"
    assert cfg["age_vs_rpo"] == "5h of 4h (125%)" and cfg["state"] == "breach"
    assert cfg["last_drill_vs_rto"] == "failed 2h30m of 2h (2026-02-28 12:00 UTC)"
    assert (lake["state"], lake["last_backup"], lake["age_vs_rpo"]) == ("unknown", "never", "-")
    assert lake["last_verification"].startswith("ok ") and lake["last_drill_vs_rto"] == "never"
    assert docs["last_prune"] == "kept 7, removed 2 (2026-03-02 09:00 UTC)" and cfg["last_prune"] == "never"
    assert lake["last_prune"] == "FAILED 2026-03-02 10:00 UTC"
    assert problems(statuses, verifications, drills) == [
        "cfg: breach, last backup 5h ago, RPO 4h",
        "lake: unknown, repository minio: wrong password",
        "repository nfs: last verification failed (2026-03-02 11:00 UTC): pack 1a2b3c4d: damaged",
        "cfg: last restore drill failed (2026-02-28 12:00 UTC): restore 9000.0 s, OVER the RTO of 7200 s",
    ]
    assert problems(statuses, verifications, drills, prunes)[-1] == \
        "lake: last prune failed (2026-03-02 10:00 UTC): restic forget /srv/m: the repository is locked"
    assert problems(statuses[:1], {}, {}) == []
    unknown = status_rows(statuses, verifications, drills, None)  # a catalog without prune records (schema < 6)
    assert [r["last_prune"] for r in unknown] == ["unknown"] * 3 and unknown[0]["last_verification"] == \
        docs["last_verification"]
    assert {r["last_verification"] for r in status_rows(statuses, None, None, None)} == {"unknown"}
    assert problems(statuses, None, None, None) == problems(statuses, {}, {}, {})[:2]
