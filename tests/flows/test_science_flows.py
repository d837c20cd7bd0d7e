"""desi-voids and desi-agn end to end on ingested synthetic samples (DuckDB and PostgreSQL), with their artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from prefect.artifacts import Artifact

from astrolab.resources import build_catalog, build_lake, build_validator
from astrolab.settings import load_settings
from flows.agn import desi_agn
from flows.voids import desi_voids
from kernels.agn import BPT
from tasks.ingest.pipeline import ingest_file
from tasks.ingest.sources import discover
from tasks.science.agn import classify as agn
from tasks.science.voids.desivast import read_spheres
from tasks.synthetic import SampleConfig, generate_sample
from tests.flows.test_artifacts import embedded_png

# Bright time only, so BGS is dense enough (n ~ 4e-4 h^3 Mpc^-3 at 0.03 < z < 0.1) for the planted voids
# (radii 15-35 h^-1 Mpc) to stand out; 150 planted voids put about 15 wholly inside that shell.
VOID_SAMPLE = SampleConfig(n_rows=300_000, seed=5, n_voids=150, programs=(("main", "bright"),), write_zall=False,
                           write_fastspec=False, write_spectra=False)
AGN_SAMPLE = SampleConfig(n_rows=3000, seed=7, programs=(("main", "dark"),), write_zall=False, write_spectra=False)
VOID_RUN = {"z_min": 0.03, "z_max": 0.1, "mask_nside": 16}


@pytest.fixture(scope="module")
def void_sample(tmp_path_factory) -> Path:
    return generate_sample(tmp_path_factory.mktemp("voids"), VOID_SAMPLE).root


@pytest.fixture(scope="module")
def agn_sample(tmp_path_factory) -> Path:
    return generate_sample(tmp_path_factory.mktemp("agn"), AGN_SAMPLE).root


@pytest.fixture(params=["duckdb", "postgresql"])
def env(request, tmp_path, monkeypatch):
    """Settings variables for a fresh lake and catalog of each backend (set in the environment the flows read)."""
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    if request.param == "postgresql":
        monkeypatch.setenv("ASTROLAB_CATALOG_URL", request.getfixturevalue("pg_database"))
    return request.param


def ingest(root: Path, kinds: set[str]) -> None:
    """Load the sample's files of these kinds into the catalog (no HATS publish: the flows read the catalog)."""
    settings = load_settings()
    lake = build_lake(settings)
    validator = build_validator(settings, lake)
    with build_catalog(settings) as catalog:
        for src in discover(root, kinds=kinds):
            result = ingest_file(src, lake, catalog, validator, settings.ingest.chunk_rows, "science-test")
            assert result.status == "ingested", result.error


def _path(url: str) -> Path:
    assert url.startswith("file://"), url
    return Path(url[len("file://"):])


def _rows(table, columns: list[str]) -> np.ndarray:
    """Rows of these columns, as a float array sorted row-wise (catalog row order is not defined)."""
    a = np.stack([np.asarray(table[c], dtype=float) for c in columns], axis=1)
    return a[np.lexsort(a.T[::-1])]


def test_voids_flow(void_sample, env, monkeypatch):
    ingest(void_sample, {"zpix"})
    truth = void_sample / "truth" / "planted_voids.fits"
    assert truth.exists()
    out = desi_voids(truth_path=str(truth), **VOID_RUN)

    fits_path = _path(out["fits"])
    assert fits_path.name == "DESIVAST_BGS_VOLLIM_VoidFinder.fits"
    with fits.open(fits_path) as hdus, build_catalog(load_settings()) as catalog:
        assert [h.name for h in hdus] == ["PRIMARY", "MAXIMALS", "HOLES", "WALL", "FIELD", "MASK", "HPXMASK"]
        head = hdus[0].header
        assert head["ZLIMU"] == 0.1 and head["GALAXY"] == out["galaxies"] > 5000
        assert head["WALLNUM"] + head["FIELDNUM"] == head["GALAXY"] == len(hdus["WALL"].data) + len(hdus["FIELD"].data)
        assert head["COSMO"] == "Planck18" and head["NSIDE"] == 16 and head["THINDENS"] == "none"
        assert head["GODEF"] and len(hdus["HPXMASK"].data) > 0
        for ext, table in (("MAXIMALS", "voids_maximals"), ("HOLES", "voids_holes")):
            data = hdus[ext].data
            rows = catalog.query(f"SELECT * FROM {table}")
            assert rows.num_rows == len(data) == out["tables"][table] > 0
            assert [c.upper() for c in rows.column_names] == data.columns.names
            columns = data.columns.names
            np.testing.assert_array_equal(_rows(rows.rename_columns(columns), columns), _rows(data, columns))
        assert out["voids"] == len(hdus["MAXIMALS"].data) and out["holes"] == len(hdus["HOLES"].data)
    holes = read_spheres(fits_path, "HOLES")

    # Planted voids wholly inside the shell are found: a void centre inside each, radii a little larger
    # (holes grow until they touch the galaxies just outside the empty sphere).
    score = out["score"]
    assert score["n_truth"] >= 8
    assert score["completeness"] >= 0.9
    assert score["median_center_error"] < 5.0 and 0.0 <= score["median_radius_error"] < 4.0

    summary = Artifact.get("desi-voids-summary")
    assert out["fits"] in summary.data and f"| completeness | {score['completeness']:.4g} |" in summary.data
    assert f"| voids | {out['voids']} |" in summary.data
    for key, url in zip(("desi-voids-size-function", "desi-voids-slice-map"), out["images"], strict=True):
        assert embedded_png(Artifact.get(key).data) == _path(url).read_bytes()

    # an explicit grid origin half a cell off VAST's default reaches the finder (not the persisted result) and the
    # file; once, since the catalog backend plays no part in it
    if env == "duckdb":
        origin = [head["GOX"] - 2.5, head["GOY"] - 2.5, head["GOZ"] - 2.5]
        shifted = desi_voids(grid_origin=origin, **VOID_RUN)
        with fits.open(_path(shifted["fits"])) as hdus:
            assert [hdus[0].header[k] for k in ("GOX", "GOY", "GOZ")] == pytest.approx(origin, abs=1e-9)
            assert not hdus[0].header["GODEF"]
            assert not np.array_equal(read_spheres(_path(shifted["fits"]), "HOLES"), holes)

    # the same run again reads the void finder's persisted result instead of finding the voids again
    import flows.voids as voids_flow

    monkeypatch.setattr(voids_flow, "find_voids", lambda *a, **k: pytest.fail("find_voids ran again"))
    again = desi_voids(truth_path=str(truth), **VOID_RUN)
    assert (again["voids"], again["holes"], again["score"]) == (out["voids"], out["holes"], out["score"])


def test_voids_flow_rejects_a_misspelt_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match="did you mean 'grid_edge'"):
        desi_voids(void_params={"grid_egde": 4.0})


def test_voids_flow_rejects_a_bad_grid_origin(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match=r"grid_origin must be 3 finite numbers \[Mpc/h\] or None, got \(1\.0, 2\.0\)"):
        desi_voids(grid_origin=[1.0, 2.0])
    assert not (tmp_path / "home" / "lake").exists()


def test_voids_flow_checks_its_truth_file_first_below_home(tmp_path, monkeypatch):
    """A relative truth_path is below the settings' home; a missing or wrong one fails before anything is read or
    written (here the catalog is empty: selecting galaxies would fail otherwise)."""
    home = tmp_path / "home"
    monkeypatch.setenv("ASTROLAB_HOME", str(home))
    with pytest.raises(ValueError) as err:
        desi_voids(truth_path="desi-sample/truth/planted_voids.fits", **VOID_RUN)
    assert str(err.value) == (f"truth_path {home}/desi-sample/truth/planted_voids.fits: no such file (desi-sample "
                              "writes <out_dir>/truth/planted_voids.fits)")
    wrong = home / "not-truth.fits"
    home.mkdir()
    fits.HDUList([fits.PrimaryHDU()]).writeto(wrong)
    with pytest.raises(ValueError, match=f"^truth_path {wrong}: not a planted-void file with a VOIDS table"):
        desi_voids(truth_path="not-truth.fits", **VOID_RUN)
    assert not (home / "lake").exists() and not (home / "catalog.duckdb").exists()


def test_agn_flow(agn_sample, env):
    ingest(agn_sample, {"zpix", "fastspec"})
    out = desi_agn(chunk_rows=1500)

    with build_catalog(load_settings()) as catalog:
        fastspec = catalog.query("SELECT count(*) FROM fastspec").column(0)[0].as_py()
        table = catalog.query("SELECT * FROM agn")
        expected = agn.summarize(agn.agn_catalog(catalog))
    assert table.num_rows == fastspec == out["counts"]["rows"] > 1000
    assert out["counts"] == expected
    assert expected["SY"] + expected["LINER"] + expected["SF"] > 0  # the sample has classified rows

    with fits.open(_path(out["fits"])) as hdus:
        data = hdus["AGN"].data
        assert len(data) == fastspec
        per_class = np.bincount(data["BPT_NII"], minlength=len(BPT))
        assert {c.name: int(per_class[c]) for c in BPT} == {c.name: expected[c.name] for c in BPT}
        assert int((data["AGN_MASKBITS"] != 0).sum()) == int(
            (np.asarray(table["agn_maskbits"], dtype=np.int64) != 0).sum())

    counts = Artifact.get("desi-agn-counts")
    rows = json.loads(counts.data) if isinstance(counts.data, str) else counts.data
    assert {r["count"]: r["rows"] for r in rows} == expected
    assert embedded_png(Artifact.get("desi-agn-bpt").data) == _path(out["image"]).read_bytes()
