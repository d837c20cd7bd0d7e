"""Backup benchmark. Part one: the RPO check over 500 assets in one local restic repository. Part two: a backup of a
generated 1 GB directory through the backup flow against plain ``restic backup`` of the same directory.

    python bench/backups.py [--assets 500] [--per-asset 1] [--repeats 5] [--only rpo-check|flow]
                            [--flow-gb 1.0] [--flow-repeats 3]

Set-up (not timed): a fresh local restic repository; for each generated asset (classes cycled through the five of the
roadmap), ``--per-asset`` snapshots of a tiny directory made by real ``restic backup --tag asset=<name> --time ...``
(two at a time), at ages spread over 0..30 h, so every state occurs. Timed: ``tasks.backup.rpo.check_rpo`` on the
registry of those assets, exactly as the rpo-check flow calls it (one ``restic snapshots --json`` for the repository,
grouped by the asset tag, then the states); one cold call (restic's cache empty) and the median of ``--repeats``
warm calls, wall time. The states found are checked against the ages the snapshots were given. Target from the
issue: under 2 s; printed MET or MISSED (the exit status stays 0).

Part two, set-up (not timed): a directory of ``--flow-gb`` GB of random bytes (64 MiB files) under /tmp, a temporary
Prefect server (prefect_test_harness), a registry with that directory as a path asset. Timed, ``--flow-repeats``
times, alternating which goes first: plain ``restic backup`` of the directory into a fresh repository (wall time of
the command), and the ``backup`` flow (``infra_flows.backup.backup(asset=...)``: flow run, registry, task run,
restic, event, catalog record, artifact) into another fresh repository (wall time of the flow call). Both are first
backups of the same data, with their own empty cache. Printed: both medians and the flow's overhead against the
target of at most 10%. Writes bench/out/backups.json (the parts that ran).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
OVERHEAD_TARGET = 0.10  # the flow may take at most 10% longer than plain restic
FILE_BYTES = 64 << 20
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


def generate(root: Path, total_bytes: int) -> int:
    """Random (incompressible, not deduplicable) files of FILE_BYTES under root; returns the bytes written."""
    root.mkdir(parents=True)
    written = 0
    i = 0
    while written < total_bytes:
        size = min(FILE_BYTES, total_bytes - written)
        (root / f"part-{i:04d}.bin").write_bytes(os.urandom(size))
        written += size
        i += 1
    return written


def flow_vs_restic(work: Path, gigabytes: float, repeats: int) -> dict[str, object]:
    """Part two: the backup flow against plain restic backup of the same generated directory."""
    import yaml
    from prefect.testing.utilities import prefect_test_harness

    data = work / "data"
    size = generate(data, int(gigabytes * (1 << 30)))
    password = secrets.token_urlsafe(16)
    os.environ.update(RESTIC_PASSWORD=password, ASTROLAB_HOME=str(work / "home"),
                      PREFECT_SERVER_ANALYTICS_ENABLED="false")
    restic = shutil.which("restic") or "restic"

    def fresh(name: str) -> Path:
        path = work / name
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(work / f"{name}-cache", ignore_errors=True)
        Repository(str(path), password, cache_dir=work / f"{name}-cache").init()
        return path

    def plain() -> float:
        repo = fresh("plain")
        env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_CACHE_DIR": str(work / "plain-cache")}
        t = time.monotonic()
        subprocess.run([restic, "backup", "--json", "--quiet", str(data)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        return time.monotonic() - t

    assets = work / "assets.yaml"

    def through_flow(run: Callable[..., object]) -> float:
        repo = fresh("flow")
        shutil.rmtree(work / "home" / "restic-cache", ignore_errors=True)
        assets.write_text(yaml.safe_dump({"repositories": [{"name": "bench", "url": str(repo)}],
                                          "assets": [{"name": "bench-data", "class": "research-data",
                                                      "kind": "path", "paths": [str(data)],
                                                      "repository": "bench"}]}))
        t = time.monotonic()
        run(assets_file=str(assets), asset="bench-data")
        return time.monotonic() - t

    with prefect_test_harness(server_startup_timeout=120):
        from infra_flows.backup import backup

        through_flow(backup)  # warm-up (imports, first flow run, catalog creation), not counted
        plain_s: list[float] = []
        flow_s: list[float] = []
        for i in range(repeats):
            order = [("plain", plain), ("flow", lambda: through_flow(backup))]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                elapsed = fn()
                (plain_s if name == "plain" else flow_s).append(elapsed)
                print(f"  {name}: {elapsed:.2f} s", flush=True)
    for name in ("plain", "flow", "data"):
        shutil.rmtree(work / name, ignore_errors=True)
    median_plain, median_flow = statistics.median(plain_s), statistics.median(flow_s)
    overhead = median_flow / median_plain - 1
    return {"bytes": size, "repeats": repeats, "plain_s": [round(x, 2) for x in plain_s],
            "flow_s": [round(x, 2) for x in flow_s], "median_plain_s": round(median_plain, 2),
            "median_flow_s": round(median_flow, 2), "ratio": round(median_flow / median_plain, 3),
            "overhead": round(overhead, 3), "target_overhead": OVERHEAD_TARGET, "met": overhead <= OVERHEAD_TARGET}


def size_gb(result: dict[str, object]) -> float:
    return int(str(result["bytes"])) / (1 << 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=500, help="assets in the repository (default: 500)")
    parser.add_argument("--per-asset", type=int, default=1, help="snapshots per asset (default: 1)")
    parser.add_argument("--repeats", type=int, default=5, help="warm repeats for the median (default: 5)")
    parser.add_argument("--only", choices=("rpo-check", "flow"), help="run one part (default: both)")
    parser.add_argument("--flow-gb", type=float, default=1.0, help="size of the generated directory, GB (default: 1)")
    parser.add_argument("--flow-repeats", type=int, default=3, help="timed backups of each kind (default: 3)")
    args = parser.parse_args()
    version = ".".join(map(str, restic_version()))
    previous = OUT / "backups.json"
    out: dict[str, object] = json.loads(previous.read_text()) if previous.exists() else {}  # keep the other part's
    if args.only in (None, "rpo-check"):
        with tempfile.TemporaryDirectory(prefix="astrolab-bench-backups-") as tmp:
            result = rpo_check(Path(tmp), args.assets, args.per_asset, args.repeats)
        result["restic"] = version
        print(f"rpo-check over {result['assets']} assets ({result['snapshots']} snapshots, restic {version}): "
              f"cold {result['cold_s']} s, median of {args.repeats} warm {result['median_s']} s "
              f"(target < {TARGET_S} s: {'MET' if result['met'] else 'MISSED'}); states {result['states']}")
        out["rpo_check"] = result
    if args.only in (None, "flow"):
        with tempfile.TemporaryDirectory(prefix="astrolab-bench-backups-", dir="/tmp") as tmp:
            flow = flow_vs_restic(Path(tmp), args.flow_gb, args.flow_repeats)
        flow["restic"] = version
        print(f"backup of {size_gb(flow):.2f} GB: plain restic median {flow['median_plain_s']} s, "
              f"through the flow median {flow['median_flow_s']} s, ratio {flow['ratio']} (overhead "
              f"{flow['overhead']:+.1%}, target <= {OVERHEAD_TARGET:.0%}: {'MET' if flow['met'] else 'MISSED'})")
        out["flow_vs_restic"] = flow
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "backups.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
