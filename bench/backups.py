"""Backup benchmark, part one: the RPO check over 500 assets in one local restic repository.

    python bench/backups.py [--assets 500] [--per-asset 1] [--repeats 5]

Set-up (not timed): a fresh local restic repository; for each generated asset (classes cycled through the five of the
roadmap), ``--per-asset`` snapshots of a tiny directory made by real ``restic backup --tag asset=<name> --time ...``
(two at a time), at ages spread over 0..30 h, so every state occurs. Timed: ``tasks.backup.rpo.check_rpo`` on the
registry of those assets, exactly as the rpo-check flow calls it (one ``restic snapshots --json`` for the repository,
grouped by the asset tag, then the states); one cold call (restic's cache empty) and the median of ``--repeats``
warm calls, wall time. The states found are checked against the ages the snapshots were given. Target from the
issue: under 2 s; printed MET or MISSED (the exit status stays 0). Writes bench/out/backups.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.backup.registry import CLASSES, RepositorySpec, parse_assets  # noqa: E402
from tasks.backup.restic import Repository, restic_version  # noqa: E402
from tasks.backup.rpo import assess, check_rpo  # noqa: E402

OUT = ROOT / "bench" / "out"
TARGET_S = 2.0
PASSWORD_ENV = "ASTROLAB_BENCH_RESTIC_PASSWORD"


def rpo_check(work: Path, n_assets: int, per_asset: int, repeats: int) -> dict[str, object]:
    """Part one: check_rpo over n_assets assets with per_asset snapshots each in one local repository."""
    password = secrets.token_urlsafe(16)
    repo = Repository(str(work / "repo"), password, cache_dir=work / "setup-cache")
    repo.init()
    src = work / "src"
    src.mkdir()
    (src / "file").write_text("tiny\n")
    now = datetime.now(UTC).replace(microsecond=0)
    names = [f"asset-{i:04d}" for i in range(n_assets)]
    classes = list(CLASSES)
    ages = {name: timedelta(minutes=(i * 37) % (30 * 60)) for i, name in enumerate(names)}  # 0..30 h, spread

    def backup(job: tuple[str, int]) -> None:
        name, k = job
        repo.backup_path([src], tags=[f"asset={name}"], at=now - ages[name] - timedelta(hours=k))

    jobs = [(name, k) for name in names for k in range(per_asset)]
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(backup, jobs))
    setup_s = time.monotonic() - started
    print(f"set-up: {len(jobs)} snapshots by restic backup in {setup_s:.0f} s", flush=True)

    registry = parse_assets({
        "repositories": [{"name": "bench", "url": repo.url, "password_env": PASSWORD_ENV}],
        "assets": [{"name": name, "class": classes[i % len(classes)], "kind": "path", "paths": ["/srv/data"],
                    "repository": "bench"} for i, name in enumerate(names)]}, "bench-assets.yaml")
    expected = {a.name: assess(a, now - ages[a.name], now).state for a in registry.assets}

    def open_repo(spec: RepositorySpec, cache: Path = work / "check-cache") -> Repository:
        return Repository(spec.url, password, cache_dir=cache)  # the password as open_repository would read it

    def timed() -> float:
        t = time.monotonic()
        statuses = check_rpo(registry, now, open_repo)
        elapsed = time.monotonic() - t
        found = {s.asset: s.state for s in statuses}
        if found != expected:
            wrong = [n for n in names if found.get(n) != expected[n]]
            raise SystemExit(f"rpo check disagrees with the given ages for {len(wrong)} assets, e.g. {wrong[:3]}")
        return elapsed

    cold = timed()
    warm = [timed() for _ in range(repeats)]
    counts: dict[str, int] = {}
    for state in expected.values():
        counts[state] = counts.get(state, 0) + 1
    median = statistics.median(warm)
    return {"assets": n_assets, "snapshots": len(jobs), "setup_s": round(setup_s, 1), "cold_s": round(cold, 3),
            "warm_s": [round(w, 3) for w in warm], "median_s": round(median, 3), "states": counts,
            "target_s": TARGET_S, "met": median < TARGET_S and cold < TARGET_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=500, help="assets in the repository (default: 500)")
    parser.add_argument("--per-asset", type=int, default=1, help="snapshots per asset (default: 1)")
    parser.add_argument("--repeats", type=int, default=5, help="warm repeats for the median (default: 5)")
    args = parser.parse_args()
    version = ".".join(map(str, restic_version()))
    with tempfile.TemporaryDirectory(prefix="astrolab-bench-backups-") as tmp:
        result = rpo_check(Path(tmp), args.assets, args.per_asset, args.repeats)
    result["restic"] = version
    print(f"rpo-check over {result['assets']} assets ({result['snapshots']} snapshots, restic {version}): "
          f"cold {result['cold_s']} s, median of {args.repeats} warm {result['median_s']} s "
          f"(target < {TARGET_S} s: {'MET' if result['met'] else 'MISSED'}); states {result['states']}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "backups.json").write_text(json.dumps({"rpo_check": result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
