"""tasks.backup.rpo: states at exact boundaries with a clock the test controls; freshness read from real restic
repositories (local and S3), one listing per repository; unreadable repositories are "unknown", never ok or never."""

from datetime import UTC, datetime, timedelta

import pytest

from tasks.backup.registry import parse_assets
from tasks.backup.restic import Repository, open_repository
from tasks.backup.rpo import Unreadable, assess, check_rpo, last_backups

H = timedelta(hours=1)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def _registry(repos: dict[str, str], assets: list[tuple[str, str, str]], password_env: str = "ASTROLAB_TEST_PW"):
    """repos: name -> url; assets: (name, class, repository), all of kind path."""
    return parse_assets({
        "repositories": [{"name": n, "url": u, "password_env": password_env} for n, u in repos.items()],
        "assets": [{"name": n, "class": c, "kind": "path", "paths": [f"/srv/{n}"], "repository": r}
                   for n, c, r in assets]}, "assets.yaml")


@pytest.fixture
def opener(tmp_path):
    """open_repository as a flow calls it, with a private cache; counts the repositories opened."""
    opened: list[str] = []

    def open_repo(spec):
        opened.append(spec.name)
        return open_repository(spec, cache_dir=tmp_path / "cache")
    open_repo.opened = opened
    return open_repo


@pytest.mark.parametrize("age, state", [
    (None, "never"),
    (timedelta(0), "ok"),
    (3 * H, "ok"),             # exactly 75% of the 4h RPO
    (3 * H + US, "warning"),
    (4 * H, "warning"),        # exactly at the RPO
    (4 * H + US, "breach"),
    (30 * 24 * H, "breach"),
])
def test_assess_boundaries(age, state):
    asset = _registry({"r": "/srv/restic"}, [("cfg", "infrastructure", "r")]).asset("cfg")
    status = assess(asset, None if age is None else NOW - age, NOW)
    assert status.state == state and status.age == age and status.rpo == 4 * H
    assert status.asset == "cfg" and status.asset_class == "infrastructure" and status.kind == "path"
    assert status.fraction == (None if age is None else age / (4 * H))
    assert status.problem == (state != "ok")


def test_assess_unreadable_and_naive_time():
    asset = _registry({"r": "/srv/restic"}, [("cfg", "infrastructure", "r")]).asset("cfg")
    status = assess(asset, Unreadable("repository r: wrong password"), NOW)
    assert (status.state, status.reason, status.age, status.last_backup) == (
        "unknown", "repository r: wrong password", None, None)
    with pytest.raises(ValueError, match="timezone-aware"):
        assess(asset, NOW, NOW.replace(tzinfo=None))


def test_freshness_comes_from_the_repository_one_listing_per_repository(make_repo, monkeypatch, opener, tmp_path):
    monkeypatch.setenv("ASTROLAB_TEST_PW", "pw-rpo-test")
    repo = make_repo(password="pw-rpo-test")
    repo.init()
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    docs_times = [NOW - 5 * H, NOW - timedelta(minutes=30), NOW - 2 * H]  # newest: 30 min ago
    for t in docs_times:
        repo.backup_path([src], tags=["asset=docs"], at=t)
    repo.backup_path([src], tags=["asset=infra"], at=NOW - 3 * H - timedelta(minutes=1))  # 3h01 of 4h: warning
    repo.backup_path([src], tags=["asset=sec"], at=NOW - 9 * H)  # 9h of 8h: breach
    repo.backup_path([src], tags=["asset=retired"], at=NOW)  # not in the registry: ignored
    repo.backup_path([src], tags=["daily"], at=NOW)  # no asset tag: ignored

    reg = _registry({"local": repo.url},
                    [("docs", "documentation", "local"), ("infra", "infrastructure", "local"),
                     ("sec", "security", "local"), ("dev", "development", "local")])
    fresh = last_backups(reg, opener)
    assert fresh == {"docs": NOW - timedelta(minutes=30), "infra": NOW - 3 * H - timedelta(minutes=1),
                     "sec": NOW - 9 * H, "dev": None}
    assert opener.opened == ["local"]

    states = {s.asset: s.state for s in check_rpo(reg, NOW, opener)}
    assert states == {"docs": "ok", "infra": "warning", "sec": "breach", "dev": "never"}
    assert opener.opened == ["local", "local"]


def test_unreadable_repositories_are_unknown_never_ok(make_repo, monkeypatch, opener, tmp_path, s3_env, s3_repo_url):
    monkeypatch.setenv("ASTROLAB_TEST_PW", "pw-good-one")
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    good = make_repo(s3_repo_url, password="pw-good-one", env=s3_env)  # a readable S3 repository
    good.init()
    good.backup_path([src], tags=["asset=lake"], at=NOW - H)
    other = make_repo(password="a-different-password")  # ours cannot open it
    other.init()
    other.backup_path([src], tags=["asset=docs"], at=NOW - timedelta(minutes=10))

    reg = _registry({"s3ok": s3_repo_url, "wrongpw": other.url, "down": "s3:http://127.0.0.1:9/restic/lab",
                     "missing": str(tmp_path / "no-repo-here")},
                    [("lake", "research-data", "s3ok"), ("docs", "documentation", "wrongpw"),
                     ("offsite", "research-data", "down"), ("new", "development", "missing")])
    result = {s.asset: s for s in check_rpo(reg, NOW, opener)}
    assert result["lake"].state == "ok" and result["lake"].last_backup == NOW - H
    for name, words in (("docs", "wrong password"), ("offsite", "cannot be reached"),
                        ("new", "no restic repository there")):
        status = result[name]
        assert status.state == "unknown" and status.last_backup is None and status.problem
        assert words in status.reason and status.reason.startswith(f"repository {status.repository}: ")
        assert "\n" not in status.reason and "pw-good-one" not in status.reason
        assert "astrolab-test-secret" not in status.reason


def test_no_password_is_unknown_too(monkeypatch, opener, tmp_path):
    monkeypatch.delenv("ASTROLAB_TEST_PW", raising=False)
    reg = _registry({"r": str(tmp_path / "r")}, [("docs", "documentation", "r")])
    [status] = check_rpo(reg, NOW, opener)
    assert status.state == "unknown" and "no password (set ASTROLAB_TEST_PW" in status.reason


def test_a_kind_with_its_own_reader_is_not_read_from_restic(restic_bin, monkeypatch, tmp_path):
    reg = parse_assets({
        "repositories": [{"name": "r", "url": str(tmp_path / "r"), "password_env": "ASTROLAB_TEST_PW"}],
        "assets": [{"name": "vm1", "class": "development", "kind": "proxmox-vm", "vm": "vm1", "storage": "pbs"}]},
        "assets.yaml")

    def refuse(spec) -> Repository:
        raise AssertionError("restic must not be read for a proxmox-vm")
    seen = []

    def reader(assets):
        seen.extend(a.name for a in assets)
        return {"vm1": NOW - 20 * H}
    [status] = check_rpo(reg, NOW, refuse, readers={"proxmox-vm": reader})
    assert seen == ["vm1"] and status.state == "warning" and status.kind == "proxmox-vm"
    [status] = check_rpo(reg, NOW, refuse)  # no reader: unknown, not "never" from an unrelated restic repository
    assert status.state == "unknown" and "no freshness reader for kind proxmox-vm" in status.reason
