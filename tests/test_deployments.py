"""prefect.yaml for real: a Prefect server, a process worker, `prefect deploy --all`, `prefect deployment run`.

The ingest deployment and the four science deployments run against PostgreSQL and the S3 server, with parameters
given on the command line, as an admin would.
"""

import json
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from astrolab.resources import build_lake
from astrolab.settings import load_settings
from tests.prefect_cli import deploy_all, flow_run_id, prefect, process_worker, wait_for_run


def test_deploy_all_and_run_against_postgres_and_s3(prefect_env, pg_database, s3_lake_env, tmp_path):
    out = deploy_all(prefect_env)
    for name in ("desi-ingest/daily", "desi-ingest/rke2", "desi-ingest/synthetic", "desi-sample/synthetic",
                 "desi-clustering/default", "desi-clustering/gpu-node", "desi-crossmatch/default",
                 "desi-agn/default", "desi-voids/default", "desi-voids/synthetic", "compliance-scan/nightly",
                 "notify/compliance-regression", "notify/ingest-quarantine"):
        assert name in out

    with process_worker(prefect_env):
        sample = tmp_path / "desi"
        config = tmp_path / "astrolab.yaml"
        lake = {"url": s3_lake_env["ASTROLAB_LAKE_URL"], "s3_endpoint": s3_lake_env["ASTROLAB_LAKE_S3_ENDPOINT"],
                "s3_access_key": s3_lake_env["ASTROLAB_LAKE_S3_ACCESS_KEY"],
                "s3_secret_key": s3_lake_env["ASTROLAB_LAKE_S3_SECRET_KEY"]}
        config.write_text(json.dumps({"home": str(tmp_path / "home"), "catalog": {"url": pg_database}, "lake": lake,
                                      "dask": {"n_workers": 1, "threads_per_worker": 2}}))  # JSON is YAML
        prefect(prefect_env, "deployment", "run", "desi-sample/synthetic", "--watch", "--watch-timeout", "240",
                "--param", f"out_dir={json.dumps(str(sample))}", "--param", "n_rows=3000",
                "--param", "spectra=false", "--param", f"config={json.dumps(str(config))}")
        # the sample's event starts desi-ingest/synthetic on it (with its settings), whose publish events start the
        # science deployments: the chain, with nobody running the ingest by hand
        wait_for_run(prefect_env, "desi-ingest")
        wait_for_run(prefect_env, "desi-agn")
        # the science flows, over what the ingest deployment loaded (their run ids: the triggered runs of the same
        # deployments write files of the same names under their own run directories)
        run_ids = {}
        for name, params in [("desi-clustering/default", {"z_min": 0.02, "z_max": 0.5, "n_s": 4, "n_mu": 4,
                                                           "randoms_factor": 2.0}),
                             ("desi-crossmatch/default", {}), ("desi-agn/default", {}),
                             # nside 4: the sample's ~60 BGS galaxies in this shell make one connected mask,
                             # where VoidFinder finds a few voids in seconds (at nside 16 each galaxy is its own
                             # pixel and no hole fits inside)
                             ("desi-voids/default", {"z_min": 0.03, "z_max": 0.1, "mask_nside": 4})]:
            values = {**params, "config": str(config)}
            args = [a for k, v in values.items() for a in ("--param", f"{k}={json.dumps(v)}")]
            out = prefect(prefect_env, "deployment", "run", name, "--watch", "--watch-timeout", "240", *args)
            assert "Completed" in out, name
            run_ids[name] = flow_run_id(out)

    with psycopg.connect(pg_database) as con:
        assert con.execute("SELECT count(*) FROM redshifts").fetchone()[0] == 3000
        assert con.execute("SELECT count(*) FROM ingest_lineage WHERE status = 'published'").fetchone()[0] > 0
        version = con.execute("SELECT version FROM hats_versions WHERE product = 'redshifts'").fetchone()[0]
    lake = build_lake(load_settings(config, env={}))
    assert lake.url.startswith("s3://") and lake.published_version("redshifts") == version

    def products(deployment: str) -> dict[str, str]:
        """file name -> key of what the run of ``deployment`` above wrote to the lake's reports."""
        runs = f"{lake.prefix}/reports/runs/{run_ids[deployment]}/"
        return {Path(obj.key).name: obj.key for obj in lake.store.list(lake.bucket, runs)}

    assert "xi_BGS.ecsv" in products("desi-clustering/default")
    assert "crossmatch.parquet" in products("desi-crossmatch/default")
    assert "DESI_AGN_BPT_WISE.fits" in products("desi-agn/default")
    assert "DESIVAST_BGS_VOLLIM_VoidFinder.fits" in products("desi-voids/default")
    matches = tmp_path / "matches.parquet"
    lake.store.download(lake.bucket, products("desi-crossmatch/default")["crossmatch.parquet"], matches)
    voids_file = tmp_path / "voids.fits"  # the tables hold the last voids run's (the deployment runs one at a time)
    lake.store.download(lake.bucket, products("desi-voids/default")["DESIVAST_BGS_VOLLIM_VoidFinder.fits"],
                        voids_file)
    with fits.open(voids_file) as hdus:
        file_voids = {ext: sorted(zip(*(hdus[ext].data[c].tolist() for c in ("VOID", "X", "Y", "Z", "RADIUS")),
                                      strict=True))
                      for ext in ("MAXIMALS", "HOLES")}
    assert 0 < len(file_voids["MAXIMALS"]) <= len(file_voids["HOLES"])
    with psycopg.connect(pg_database) as con:
        n_fastspec = con.execute("SELECT count(*) FROM fastspec").fetchone()[0]
        assert len(pq.read_table(matches)) == n_fastspec
        assert con.execute("SELECT count(*) FROM agn").fetchone()[0] == n_fastspec
        for ext, table in (("MAXIMALS", "voids_maximals"), ("HOLES", "voids_holes")):  # table = file, row by row
            assert sorted(con.execute(f"SELECT void, x, y, z, radius FROM {table}").fetchall()) == file_voids[ext]


@pytest.mark.slow
def test_nightly_compliance_scan_and_its_regression_alert(prefect_env, pg_database, tmp_path):
    """compliance-scan/nightly run twice on the real server (PostgreSQL results); a regression between the runs
    emits astrolab.compliance.regression, whose trigger runs notify/compliance-regression on the worker."""
    deploy_all(prefect_env)
    root = tmp_path / "node1"
    for rel, text in {"etc/os-release": "ID=debian\n", "etc/ssh/sshd_config": "PermitRootLogin no\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    policy = tmp_path / "policies" / "lab.yml"
    policy.parent.mkdir()
    policy.write_text(json.dumps({
        "policy": {"id": "lab_ssh", "name": "SSH"},
        "checks": [{"id": 7, "title": "root login off", "condition": "all", "compliance": [{"cis_csc_v8": ["5.4"]}],
                    "rules": ["f:/etc/ssh/sshd_config -> r:^PermitRootLogin\\s+no"]}]}))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(json.dumps({"nodes": [{"name": "node1", "connection": "mounted", "root": str(root)}]}))
    config = tmp_path / "astrolab.yaml"
    config.write_text(json.dumps({"home": str(tmp_path / "home"), "catalog": {"url": pg_database},
                                  "compliance": {"inventory": str(inventory), "policy_dirs": [str(policy.parent)]}}))
    with process_worker(prefect_env):
        run = ("deployment", "run", "compliance-scan/nightly", "--watch", "--watch-timeout", "240",
               "--param", f"config={json.dumps(str(config))}")
        assert "Completed" in prefect(prefect_env, *run)
        (root / "etc/ssh/sshd_config").write_text("PermitRootLogin yes\n")
        assert "Completed" in prefect(prefect_env, *run)
        wait_for_run(prefect_env, "notify")  # notify/compliance-regression, started by the regression's event
    with psycopg.connect(pg_database) as con:
        assert con.execute("SELECT host, check_id, change FROM compliance_drift").fetchall() == \
            [("node1", 7, "regression")]
        assert con.execute("SELECT count(*) FROM compliance_scans WHERE status = 'scanned'").fetchone()[0] == 2


@pytest.mark.slow
def test_backups_from_prefect_deployment_run(prefect_env, tmp_path):
    """backup/asset and rpo-check/every-15-min run by a process worker, configured as the README says
    (ASTROLAB_BACKUP_ASSETS, RESTIC_PASSWORD); an asset whose last backup is 3 h old breaches its 1 h RPO and the
    breach's event runs notify/backup-rpo-breach."""
    import secrets
    from datetime import UTC, datetime, timedelta

    import yaml

    from tasks.backup.records import latest_drills, latest_verifications
    from tasks.backup.restic import Repository
    from tasks.catalog.duckdb_store import DuckDBCatalog
    from tests.tasks.backup.conftest import make_tree

    deploy_all(prefect_env)
    password = secrets.token_urlsafe(16)
    repo = Repository(str(tmp_path / "repo"), password, cache_dir=tmp_path / "cache")
    repo.init()
    docs, stale = make_tree(tmp_path / "docs"), make_tree(tmp_path / "stale")
    repo.backup_path([stale], tags=["asset=stale"], at=datetime.now(UTC) - timedelta(hours=3))
    assets = tmp_path / "assets.yaml"
    assets.write_text(yaml.safe_dump({"repositories": [{"name": "local", "url": str(tmp_path / "repo")}], "assets": [
        {"name": n, "class": "documentation", "kind": "path", "paths": [str(p)], "repository": "local"}
        for n, p in (("docs", docs), ("stale", stale))]}))
    env = dict(prefect_env, RESTIC_PASSWORD=password, ASTROLAB_BACKUP_ASSETS=str(assets),
               ASTROLAB_HOME=str(tmp_path / "home"))
    with process_worker(env):
        assert "Completed" in prefect(env, "deployment", "run", "backup/asset", "--param", 'asset="docs"',
                                      "--watch", "--watch-timeout", "240")
        assert "Completed" in prefect(env, "deployment", "run", "rpo-check/every-15-min", "--watch",
                                      "--watch-timeout", "240")
        wait_for_run(env, "notify")  # notify/backup-rpo-breach, started by stale's rpo-breach event
        for deployment in ("backup/scheduled", "backup-verify/nightly", "restore-drill/weekly", "prune/weekly"):
            assert "Completed" in prefect(env, "deployment", "run", deployment, "--watch", "--watch-timeout", "240")
    assert len(repo.snapshots(tags=["asset=docs"])) in (1, 2)  # backup/scheduled: due again if its cron fired since
    assert len(repo.snapshots(tags=["asset=stale"])) == 2  # 3 h since its last backup: hourly schedule fired
    with DuckDBCatalog(tmp_path / "home" / "catalog.duckdb", read_only=True) as catalog:
        (verified,) = latest_verifications(catalog).values()
        (drilled,) = latest_drills(catalog).values()
    assert verified["ok"] and drilled["result"] == "passed"
