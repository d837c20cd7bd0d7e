"""tasks.cluster.state: the input hash of a role on a host (role files, the host's inventory slice, variables) and
the role applies in the catalog on both backends (DuckDB, PostgreSQL): what a resume skips; a version-4 catalog
upgraded to 5 with its data kept."""

from datetime import UTC, datetime, timedelta

import pytest

from astrolab.resources import open_catalog
from tasks.catalog.schema import SCHEMA_VERSION
from tasks.cluster.state import Apply, input_hash, last_applies, record_applies, role_files_hash, up_to_date
from tasks.inventory.model import Host, Inventory, Ssh

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
M = timedelta(minutes=1)
COUNTS = {"ok": 3, "changed": 1, "failed": 0, "skipped": 0, "unreachable": 0}


def _inventory(port: int = 22, roles: tuple[str, ...] = ("db",)) -> Inventory:
    return Inventory(nodes=(Host(name="db1", address="10.0.0.5", roles=roles, ssh=Ssh(port=port)),
                            Host(name="web1", address="10.0.0.6")))


def test_role_hash_follows_file_contents_and_names(tmp_path):
    role = tmp_path / "base"
    (role / "tasks").mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text("- ansible.builtin.ping:\n")
    first = role_files_hash(role)
    assert role_files_hash(role) == first and len(first) == 64
    (role / "tasks" / "main.yml").write_text("- ansible.builtin.ping: {}\n")
    second = role_files_hash(role)
    assert second != first
    (role / "tasks" / "main.yml").rename(role / "tasks" / "other.yml")
    assert role_files_hash(role) not in (first, second)


def test_input_hash_follows_the_host_slice_and_variables():
    base = input_hash("r", _inventory(), "db1")
    assert input_hash("r", _inventory(), "db1") == base
    assert input_hash("r2", _inventory(), "db1") != base                          # role files
    assert input_hash("r", _inventory(port=2222), "db1") != base                  # how the host is reached
    assert input_hash("r", _inventory(roles=("db", "minio")), "db1") != base      # its groups
    assert input_hash("r", _inventory(), "db1", {"x": 1}) != base                 # variables
    assert input_hash("r", _inventory(port=2222), "web1") == input_hash("r", _inventory(), "web1")  # not another's


@pytest.fixture
def catalog(catalog_url):
    with open_catalog(catalog_url) as cat:
        yield cat


def _apply(host, digest, status="ok", run="r1", at=T0, error=""):
    return Apply(run, "core", "base", host, digest, status, COUNTS if status == "ok" else {**COUNTS, "failed": 1},
                 at, at + M, error)


def test_applies_recorded_and_what_a_resume_skips(catalog):
    record_applies(catalog, [_apply("db1", "h1"), _apply("web1", "h2"),
                             _apply("gpu1", "h3", "failed", error="gpu1: task 'x' failed: password=hunter22 wrong")],
                   secrets=["hunter22"])
    last = last_applies(catalog, "base")
    assert sorted(last) == ["db1", "gpu1", "web1"]
    assert last["gpu1"]["error"] == "gpu1: task 'x' failed: password=*** wrong" and last["gpu1"]["failed"] == 1
    assert last["db1"]["finished_at"] == T0 + M and last["db1"]["changed"] == 1
    now = {"db1": "h1", "web1": "h2-changed", "gpu1": "h3", "new1": "h4"}
    assert up_to_date(catalog, "base", now) == ["db1"]  # web1's inputs changed, gpu1 failed, new1 never applied
    assert up_to_date(catalog, "other", now) == []
    record_applies(catalog, [_apply("db1", "h1", "failed", run="r2", at=T0 + 5 * M, error="unreachable"),
                             _apply("gpu1", "h3", run="r2", at=T0 + 5 * M)])
    assert up_to_date(catalog, "base", now) == ["gpu1"]  # the newest apply counts: db1's last one failed
    record_applies(catalog, [_apply("db1", "h1", run="r2", at=T0 + 6 * M)])  # same run, role, host: replaced
    assert up_to_date(catalog, "base", now) == ["db1", "gpu1"]
    assert catalog._rows("SELECT count(*) FROM cluster_role_applies")[0][0] == 5
    with pytest.raises(ValueError, match="status must be ok or failed"):
        record_applies(catalog, [_apply("db1", "h1", "skipped")])


def test_a_version_4_catalog_is_upgraded_with_its_data_kept(catalog_url):
    with open_catalog(catalog_url) as cat:
        cat._execute("DROP TABLE cluster_role_applies")
        cat._execute("UPDATE schema_version SET version = 4")
        cat._execute("INSERT INTO compliance_scans (scan_id, host, policy_id, source, status, score) "
                     "VALUES ('s1', 'db1', 'astrolab_linux_baseline', 'astrolab', 'scanned', 91.0)")
    with open_catalog(catalog_url) as cat:
        assert cat._rows("SELECT max(version) FROM schema_version")[0][0] == SCHEMA_VERSION
        assert cat._rows("SELECT scan_id, score FROM compliance_scans") == [("s1", 91.0)]
        assert last_applies(cat, "base") == {}
        record_applies(cat, [_apply("db1", "h1")])
        assert up_to_date(cat, "base", {"db1": "h1"}) == ["db1"]
        assert cat.ensure_schema() == []
