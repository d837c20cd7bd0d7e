"""desi-clustering and desi-crossmatch as Prefect flows on an ingested synthetic sample (embedded defaults)."""

from __future__ import annotations

import json
import re

import lsdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from prefect.artifacts import Artifact

from astrolab.resources import build_catalog
from astrolab.settings import load_settings
from flows.clustering import desi_clustering
from flows.crossmatch import desi_crossmatch
from flows.ingest import desi_ingest
from tasks.science.selection import DESI_TARGET_BITS
from tasks.synthetic import SampleConfig, generate_sample
from tests.flows.test_artifacts import embedded_png


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A lake and DuckDB catalog holding an ingested 6000-row sample."""
    home = tmp_path_factory.mktemp("home")
    source = tmp_path_factory.mktemp("desi")
    generate_sample(source, SampleConfig(n_rows=6000, seed=5, n_coadd_pixels=1, coadd_nspec=5, write_spectra=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTROLAB_HOME", str(home))
        assert desi_ingest(str(source))["quarantined"] == {}
    return home


@pytest.fixture
def env(home, monkeypatch):
    monkeypatch.setenv("ASTROLAB_HOME", str(home))
    monkeypatch.setenv("ASTROLAB_DASK_N_WORKERS", "1")
    monkeypatch.setenv("ASTROLAB_DASK_THREADS_PER_WORKER", "2")
    return home


def test_clustering_flow(env):
    out = desi_clustering(tracer="BGS", z_min=0.02, z_max=0.5, s_min=5.0, s_max=45.0, n_s=4, n_mu=5,
                          randoms_factor=2.0)
    with build_catalog(load_settings(), read_only=True) as catalog:
        n_bgs = catalog.query(f"SELECT count(*) AS n FROM zcat_primary WHERE zwarn = 0 AND z >= 0.02 AND z < 0.5 "
                              f"AND (desi_target & {1 << DESI_TARGET_BITS['BGS_ANY']}) <> 0")["n"][0].as_py()
    assert out["n_data"] == n_bgs > 100 and out["n_randoms"] == 2 * n_bgs
    assert out["s_mid"] == [10.0, 20.0, 30.0, 40.0] and np.isfinite(out["xi0"]).all()
    rows = Artifact.get("desi-xi-bgs").data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert [r["S_MID"] for r in rows] == out["s_mid"] and sum(r["DD"] for r in rows) > 0
    plot = Artifact.get("desi-xi-plot-bgs").data
    [run] = re.findall(r"File: \[http://localhost:8765/runs/([^/]+)/xi_BGS.png\]", plot)
    assert embedded_png(plot) == (env / "lake" / "reports" / "runs" / run / "xi_BGS.png").read_bytes()
    assert f"{n_bgs} galaxies" in Artifact.get("desi-clustering-bgs").data
    assert list((env / "lake" / "reports" / "runs").glob("*/xi_BGS.ecsv"))


def test_clustering_reuses_its_cached_pair_counts(env, monkeypatch):
    import flows.clustering as clustering

    counted = []
    real = clustering.measure_xi
    monkeypatch.setattr(clustering, "measure_xi", lambda *a, **k: counted.append(1) or real(*a, **k))
    args = {"tracer": "BGS", "z_min": 0.03, "z_max": 0.4, "s_min": 5.0, "s_max": 25.0, "n_s": 2, "n_mu": 2,
            "randoms_factor": 1.0, "seed": 3}
    first, second = desi_clustering(**args), desi_clustering(**args)
    assert len(counted) == 1 and first == second  # the second run read the persisted result
    assert list((env / "lake" / "results").iterdir())
    desi_clustering(**{**args, "seed": 4})  # other randoms: counted again
    assert len(counted) == 2


def test_clustering_flow_refuses_an_unknown_tracer(env):
    with pytest.raises(ValueError, match="unknown tracer 'LAE'"):
        desi_clustering(tracer="LAE")


def test_crossmatch_flow_matches_each_fastspec_target_to_itself(env):
    out = desi_crossmatch(left="fastspec", right="redshifts", radius_arcsec=1.0, left_columns=["TARGETID"],
                          right_columns=["TARGETID"])
    matches = pq.read_table(out["matches"].removeprefix("file://"))
    assert out["left_rows"] == len(pq.read_table(env / "lake" / "hats" / "fastspec" / "dataset"))
    assert out["matched"] == len(matches) == out["left_rows"]  # every FastSpecFit row has its redshift row
    assert matches["left_TARGETID"].to_pylist() == matches["right_TARGETID"].to_pylist()
    assert max(matches["separation_arcsec"].to_pylist()) < 1e-6
    stats = Artifact.get("desi-crossmatch-stats").data
    stats = json.loads(stats) if isinstance(stats, str) else stats
    assert stats[0]["matched"] == out["matched"]
    assert "fastspec x redshifts" in Artifact.get("desi-crossmatch-summary").data


def test_crossmatch_flow_names_a_missing_catalog(env, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing published for nowhere"):
        desi_crossmatch(left="nowhere", right="redshifts")
    with pytest.raises(FileNotFoundError, match="not a HATS catalog: hats.properties is missing"):
        desi_crossmatch(left=str(tmp_path), right="redshifts")


def test_crossmatch_flow_gives_lsdb_pairs_on_the_lake_products(env):
    out = desi_crossmatch(left="redshifts", right="fastspec", radius_arcsec=10.0, left_columns=["TARGETID"],
                          right_columns=["TARGETID"])
    ours = pq.read_table(out["matches"].removeprefix("file://")).to_pandas()
    hats_dir = env / "lake" / "hats"
    margin = hats_dir / "fastspec" / "fastspec_10arcs"  # published with the product (ingest.hats_margin_arcsec)
    theirs = lsdb.open_catalog(hats_dir / "redshifts").crossmatch(
        lsdb.open_catalog(hats_dir / "fastspec", margin_cache=margin), n_neighbors=1, radius_arcsec=10.0,
        suffixes=("_l", "_r"), suffix_method="all_columns").compute()
    assert len(ours) == len(theirs) == out["matched"] > 0
    ours = ours.sort_values(["left_TARGETID", "separation_arcsec"])
    theirs = theirs.sort_values(["TARGETID_l", "_dist_arcsec"])
    assert ours["left_TARGETID"].tolist() == theirs["TARGETID_l"].tolist()
    assert ours["right_TARGETID"].tolist() == theirs["TARGETID_r"].tolist()
    assert np.allclose(ours["separation_arcsec"], theirs["_dist_arcsec"], rtol=0, atol=1e-9)
