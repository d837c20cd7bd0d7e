"""The bad-input corpus (issue #13 item 6): every bad or odd DR1 file in tests/tasks/ingest/corpus.py is ingested
into a fresh lake and catalog that already hold one good file; the outcome, the message's parts, and for every
rejection the catalog and the lake exactly as they were, are checked."""

import os
import re
import shutil
from pathlib import Path

import pytest

from astrolab.resources import build_catalog, build_lake
from astrolab.settings import load_settings
from tasks.ingest.products import PRODUCTS
from tasks.ingest.sources import discover_all
from tasks.ingest.validate import BatchValidator
from tests.tasks.ingest.corpus import BASELINE, Case, cases, make_case, nrows, sample_file
from tests.tasks.ingest.test_pipeline import count, run

CASES = {c.name: c for c in cases()}
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN positions, enriched


def _settings(home: Path):
    return load_settings(env={"ASTROLAB_HOME": str(home), "ASTROLAB_INGEST_CHUNK_ROWS": "700",
                              "ASTROLAB_INGEST_HATS_MAX_ROWS": "1500"})


@pytest.fixture(scope="module")
def baseline(sample, tmp_path_factory):
    """A home whose catalog and lake hold the good file, ingested and published once; and one validator for all
    cases, without Data Docs (they are no part of the outcome, and keeping results costs a slower validation)."""
    home = tmp_path_factory.mktemp("baseline") / "home"
    settings = _settings(home)
    lake = build_lake(settings)
    validator = BatchValidator(settings.ingest.expectations_dir)
    with build_catalog(settings) as catalog:
        results, published = run(sample_file(sample, BASELINE), settings, lake, catalog, validator, run_id="base")
    assert [r.status for r in results.values()] == ["ingested"] and [p.product for p in published] == ["redshifts"]
    return home, validator


def _lake_state(root: Path) -> dict[str, object]:
    """Every file and link of the lake (Data Docs left out): size and mtime, or the link's target."""
    state: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if "reports" in path.parts:
            continue
        if path.is_symlink():
            state[rel] = os.readlink(path)
        elif path.is_file():
            st = path.stat()
            state[rel] = (st.st_size, st.st_mtime_ns)
    return state


def _state(lake, catalog) -> dict[str, object]:
    return {
        "rows": {p: count(catalog, f"SELECT count(*) FROM {p}") for p in PRODUCTS},
        "lineage": catalog.query("SELECT * FROM ingest_lineage ORDER BY path").to_pylist(),
        "versions": catalog.query("SELECT * FROM hats_versions ORDER BY product").to_pylist(),
        "published": {p: lake.published_version(p) for p in PRODUCTS},
        "staged": {p: lake.staged_files(p) for p in PRODUCTS},
        "lake": _lake_state(Path(lake.root)),
    }


def _matches(text: str, parts: tuple[str, ...]) -> None:
    for part in parts:
        assert re.search(part, text), f"{part!r} not in {text!r}"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(sample, baseline, tmp_path, name):
    case: Case = CASES[name]
    home, validator = baseline
    shutil.copytree(home, tmp_path / "home", symlinks=True)
    settings = _settings(tmp_path / "home")
    lake = build_lake(settings)
    source = tmp_path / "src"
    bad = make_case(case, sample, source)
    with build_catalog(settings) as catalog:
        before = _state(lake, catalog)
        found = discover_all(source)
        results, published = run(source, settings, lake, catalog, validator, run_id=name)
        after = _state(lake, catalog)

    if case.outcome in ("not-recognised", "ignored"):
        assert found.files == [] and results == {} and published == []
        assert found.not_recognised == ([str(bad)] if case.outcome == "not-recognised" else [])
        assert after == before
        return
    location = str(bad / case.source) if bad.is_dir() else str(bad)
    assert list(results) == [location]
    result = results[location]
    assert result.status == case.outcome, result.error
    others = [r for r in after["lineage"] if r["path"] != location]
    if case.outcome == "quarantined":
        (row,) = [r for r in after["lineage"] if r["path"] == location]
        assert (row["status"], row["error"], row["n_rows"]) == ("quarantined", result.error, None)
        # nothing of the file anywhere: rows, other files' lineage, versions, the published version, the lake files
        assert others == before["lineage"] and published == []
        assert {k: v for k, v in after.items() if k != "lineage"} == {k: v for k, v in before.items()
                                                                      if k != "lineage"}
        # one line: the file first, then the HDU, column and value the case's regexes name
        assert result.error.startswith(f"{location}: ") or result.error.startswith(f"{location}, HDU ")
        assert "\n" not in result.error
        _matches(result.error, case.parts)
    elif case.outcome == "skipped":
        _matches(result.notes or "", case.parts)
        assert after == before
    else:
        rows = nrows(sample_file(sample, case.source)) if case.rows is None else case.rows
        assert result.rows == rows
        _matches(result.notes or "", case.parts)
        assert others == before["lineage"]
        assert after["rows"][case.product] == before["rows"][case.product] + rows
        changed = after["published"][case.product] != before["published"][case.product]
        assert changed == (rows > 0)
