"""Settings: defaults, YAML, environment, and the errors a misspelt key gets."""

import subprocess
import sys
from pathlib import Path

import pytest

from astrolab.resources import build_catalog, build_lake
from astrolab.settings import SettingsError, load_settings


def test_defaults_are_embedded():
    s = load_settings(env={})
    assert s.lake_url == str(Path("astrolab-data") / "lake")
    assert s.catalog_url == "duckdb:///astrolab-data/catalog.duckdb"
    assert s.dask.address is None and s.dask.n_workers == 2 and not s.dask.gpu
    assert s.ingest.chunk_rows == 120_000


def test_yaml_then_env_override(tmp_path):
    cfg = tmp_path / "astrolab.yaml"
    cfg.write_text("home: /data/astro\ningest:\n  chunk_rows: 1000\ndask:\n  address: tcp://sched:8786\n")
    s = load_settings(env={"ASTROLAB_CONFIG": str(cfg), "ASTROLAB_INGEST_CHUNK_ROWS": "500"})
    assert s.home == Path("/data/astro")
    assert s.ingest.chunk_rows == 500
    assert s.dask.address == "tcp://sched:8786"
    assert s.catalog_url == "duckdb:////data/astro/catalog.duckdb"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("ingest:\n  chunk_row: 5\n", r"unknown key ingest.chunk_row \(did you mean 'chunk_rows'\?\)"),
        ("lakes:\n  url: /x\n", r"unknown section 'lakes' \(did you mean 'lake'\?\)"),
        ("ingest: 5\n", r"section 'ingest' must be a mapping"),
        ("ingest:\n  chunk_rows: -3\n", r"ingest.chunk_rows: Input should be greater than or equal to 1"),
        ("- a\n- b\n", r"must be a mapping at the top level"),
    ],
)
def test_bad_yaml_is_an_error(tmp_path, yaml_text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(SettingsError, match=message):
        load_settings(cfg, env={})


def test_misspelt_env_var_is_an_error():
    with pytest.raises(SettingsError, match=r"ASTROLAB_LAKE_UR[L]? .*did you mean 'ASTROLAB_LAKE_URL'"):
        load_settings(env={"ASTROLAB_LAKE_UR": "/x"})


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(SettingsError, match="nope.yaml: cannot read settings"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_builders_follow_settings(tmp_path):
    s = load_settings(env={"ASTROLAB_HOME": str(tmp_path)})
    assert build_lake(s).root == tmp_path / "lake"
    with build_catalog(s) as catalog:
        assert catalog.path == tmp_path / "catalog.duckdb"
    with pytest.raises(SettingsError, match="unsupported scheme 'mysql'"):
        build_catalog(load_settings(env={"ASTROLAB_CATALOG_URL": "mysql://x"}))
    with pytest.raises(SettingsError, match="use a directory, file:///path or s3://bucket/prefix"):
        build_lake(load_settings(env={"ASTROLAB_LAKE_URL": "gs://bucket/lake"}))


def test_s3_lake_settings_from_env_and_secret_key_hidden(tmp_path):
    s = load_settings(env={"ASTROLAB_HOME": str(tmp_path), "ASTROLAB_LAKE_URL": "s3://lab/lake",
                           "ASTROLAB_LAKE_S3_ENDPOINT": "http://minio.lab:9000", "ASTROLAB_LAKE_S3_PATH_STYLE": "false",
                           "ASTROLAB_LAKE_S3_SECRET_KEY": "hunter2", "ASTROLAB_LAKE_S3_RETRIES": "5"})
    assert (s.lake.s3_endpoint, s.lake.s3_path_style, s.lake.s3_retries) == ("http://minio.lab:9000", False, 5)
    assert s.lake.s3_secret_key.get_secret_value() == "hunter2"
    assert "hunter2" not in s.model_dump_json() + repr(s)
    assert s.lake_work_dir == tmp_path / "lake-work"


def test_example_config_is_valid():
    example = Path(__file__).resolve().parents[2] / "config" / "astrolab.example.yaml"
    assert load_settings(example, env={}).ingest.hats_max_rows == 500_000


def test_test_suite_variables_are_not_settings():
    assert load_settings(env={"ASTROLAB_TEST_PG_URL": "postgresql://x/y"}).catalog_url.startswith("duckdb")


def test_bad_values_name_their_source_and_value(tmp_path):
    with pytest.raises(SettingsError, match=r"^environment variable ASTROLAB_DASK_N_WORKERS: dask.n_workers: Input "
                                            r"should be a valid integer.* \(got 'two'\)$"):
        load_settings(env={"ASTROLAB_DASK_N_WORKERS": "two"})
    with pytest.raises(SettingsError, match=r"^nope.yaml \(named by ASTROLAB_CONFIG\): cannot read settings"):
        load_settings(env={"ASTROLAB_CONFIG": "nope.yaml"})
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("catalog:\n  url: [postgresql://u:pw@h/db]\n")
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, env={})
    assert str(err.value).startswith(f"{cfg}: catalog.url: Input should be a valid string (got ['postgresql://u:***@")
    cfg.write_text("ingest: {chunk_rows: 5\n")  # a YAML syntax error: one line naming the file
    with pytest.raises(SettingsError, match=rf"^{cfg}: cannot read settings \(while parsing") as err:
        load_settings(cfg, env={})
    assert "\n" not in str(err.value)


def test_new_settings_defaults():
    s = load_settings(env={})
    assert (s.catalog.lock_timeout, s.prefect.ephemeral_timeout) == (10.0, 90.0)
    assert load_settings(env={"ASTROLAB_PREFECT_EPHEMERAL_TIMEOUT": "120"}).prefect.ephemeral_timeout == 120


def test_a_flows_log_lines_never_show_the_settings_secrets(caplog):
    import logging

    load_settings(env={"ASTROLAB_CATALOG_URL": "postgresql://astrolab:pa55-Word-9@db.lab:5432/astrolab",
                       "ASTROLAB_LAKE_S3_SECRET_KEY": "minio-Secret-42"})
    with caplog.at_level(logging.INFO):
        logging.getLogger("astrolab.test").info("connecting with pa55-Word-9 and minio-Secret-42")
    assert caplog.records[-1].getMessage() == "connecting with *** and ***"


def test_proxmox_settings_are_checked_and_the_token_never_shown(caplog):
    import logging

    caplog.set_level(logging.INFO)
    token = "7d3f0c1e-5b2a-4c9d-8e6f-0a1b2c3d4e5f"
    s = load_settings(env={"ASTROLAB_BACKUP_PROXMOX_URL": "https://pve1.lab:8006",
                           "ASTROLAB_BACKUP_PROXMOX_TOKEN_ID": "astrolab@pve!backup",
                           "ASTROLAB_BACKUP_PROXMOX_TOKEN": token, "ASTROLAB_BACKUP_PROXMOX_VERIFY": "false",
                           "ASTROLAB_BACKUP_PROXMOX_SCRATCH_VMIDS": "9900-9999"})
    assert (s.backup.proxmox_tls_verify, s.backup.proxmox_scratch_range) == (False, (9900, 9999))
    assert s.backup.proxmox_task_timeout == 3600 and token in s.secret_values()
    assert token not in repr(s) + str(s.effective()) + s.model_dump_json()
    logging.getLogger("astrolab.test").info("the proxmox token is %s", token)
    assert caplog.records[-1].getMessage() == "the proxmox token is ***"  # masked from load_settings on
    for variable, value, message in (
            ("URL", "http://pve1.lab:8006", "must be https://host[:port]"),
            ("TOKEN_ID", "astrolab@pve", "must be user@realm!tokenname"),
            ("SCRATCH_VMIDS", "9999-9900", "must be low-high"),
            ("TASK_TIMEOUT", "0", "greater than 0")):
        with pytest.raises(SettingsError) as err:
            load_settings(env={f"ASTROLAB_BACKUP_PROXMOX_{variable}": value, "ASTROLAB_BACKUP_PROXMOX_TOKEN": token})
        assert str(err.value).startswith(f"environment variable ASTROLAB_BACKUP_PROXMOX_{variable}: "
                                         f"backup.proxmox_{variable.lower()}: ")
        assert message in str(err.value) and f"(got '{value}')" in str(err.value) and token not in str(err.value)


def test_the_proxmox_api_is_built_only_when_its_settings_are_complete(tmp_path):
    from astrolab.resources import build_proxmox

    assert build_proxmox(load_settings(env={})) is None
    url = {"ASTROLAB_BACKUP_PROXMOX_URL": "https://pve1.lab:8006"}
    with pytest.raises(SettingsError, match="^backup.proxmox_url is set but neither backup.proxmox_token nor "
                                            "backup.proxmox_token_secret is$"):
        build_proxmox(load_settings(env=url))
    with pytest.raises(SettingsError, match=r"^backup.proxmox_url is set but backup.proxmox_token_id"):
        build_proxmox(load_settings(env={**url, "ASTROLAB_BACKUP_PROXMOX_TOKEN": "s3cr3t-token"}))
    full = {**url, "ASTROLAB_BACKUP_PROXMOX_TOKEN": "s3cr3t-token", "ASTROLAB_BACKUP_PROXMOX_TOKEN_ID": "a@pve!b"}
    with pytest.raises(SettingsError, match=r"^backup.proxmox_verify: '/nowhere/ca.pem' is not true, false or a CA"):
        build_proxmox(load_settings(env={**full, "ASTROLAB_BACKUP_PROXMOX_VERIFY": "/nowhere/ca.pem"}))
    api = build_proxmox(load_settings(env={**full, "ASTROLAB_BACKUP_PROXMOX_POLL_INTERVAL": "0.5"}))
    assert api is not None and (api.task_timeout, api.poll_interval, api.scratch_vmids) == (3600, 0.5, None)


def test_rpo_check_says_what_to_set_for_a_vm_when_the_proxmox_api_is_not_configured():
    from datetime import UTC, datetime

    from astrolab.resources import build_freshness_readers
    from tasks.backup.registry import parse_assets
    from tasks.backup.rpo import check_rpo

    registry = parse_assets({"repositories": [{"name": "nfs", "url": "/srv/restic"}],
                             "assets": [{"name": "wazuh-vm", "class": "security", "kind": "proxmox-vm",
                                         "vm": "wazuh1", "storage": "pbs-lab"}]}, "assets.yaml")
    [status] = check_rpo(registry, datetime.now(UTC), readers=build_freshness_readers(load_settings(env={})))
    assert (status.state, status.reason) == ("unknown", "the Proxmox API is not configured: set backup.proxmox_url, "
                                             "backup.proxmox_token_id and backup.proxmox_token or "
                                             "backup.proxmox_token_secret")
    half = load_settings(env={"ASTROLAB_BACKUP_PROXMOX_URL": "https://pve1.lab:8006"})
    [status] = check_rpo(registry, datetime.now(UTC), readers=build_freshness_readers(half))
    assert (status.state, status.reason) == ("unknown", "backup.proxmox_url is set but neither "
                                                        "backup.proxmox_token nor backup.proxmox_token_secret is")


def test_a_margin_too_wide_for_the_highest_order_is_refused_at_load():
    with pytest.raises(SettingsError, match=r"margin threshold 3600 arcsec is too wide for partitions of order 8"):
        load_settings(env={"ASTROLAB_INGEST_HATS_MARGIN_ARCSEC": "3600", "ASTROLAB_INGEST_HATS_HIGHEST_ORDER": "8"})
    assert load_settings(env={"ASTROLAB_INGEST_HATS_MARGIN_ARCSEC": "0",
                              "ASTROLAB_INGEST_HATS_HIGHEST_ORDER": "19"}).ingest.hats_highest_order == 19


def test_settings_load_without_importing_hats():
    # every command line call loads settings; importing hats for the margin check cost it ~2 s
    code = ("import sys; from astrolab.settings import load_settings; load_settings(env={}); "
            "print(sorted(m for m in ('hats', 'healpy', 'lsdb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "[]"
