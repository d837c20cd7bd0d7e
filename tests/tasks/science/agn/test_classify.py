"""tasks/agn on an ingested synthetic sample: the catalog read in chunks, the kernel's classes, FITS, table, plot."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.table import Table

from astrolab.resources import build_catalog, build_lake, build_validator
from astrolab.settings import load_settings
from kernels import agn
from tasks.ingest.pipeline import ingest_file
from tasks.ingest.sources import discover
from tasks.science.agn import classify as agn_task
from tasks.science.agn.plots import bpt_diagram_png
from tasks.synthetic import SampleConfig, generate_sample

N_ROWS = 8000


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("desi")
    generate_sample(root, SampleConfig(n_rows=N_ROWS, seed=7, n_coadd_pixels=1, coadd_nspec=5,
                                       write_spectra=False))
    return root


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def catalog(request, sample, tmp_path_factory):
    """The sample's redshift and FastSpecFit files ingested into a catalog of each backend."""
    values = {"ASTROLAB_HOME": str(tmp_path_factory.mktemp("home"))}
    if request.param == "postgresql":
        values["ASTROLAB_CATALOG_URL"] = request.getfixturevalue("pg_module_database")
    settings = load_settings(env=values)
    lake = build_lake(settings)
    cat = build_catalog(settings)
    validator = build_validator(settings, lake)
    for src in discover(sample, kinds={"zpix", "fastspec"}):
        result = ingest_file(src, lake, cat, validator, settings.ingest.chunk_rows, "agn-test")
        assert result.status == "ingested", result.error
    yield cat
    cat.close()


def count(catalog, sql):
    return catalog.query(sql).column(0)[0].as_py()


def direct(catalog) -> dict[str, np.ndarray]:
    """The kernel applied to every fastspec row at once (one query), keyed like the catalog rows."""
    cols = ", ".join(f"{'r' if c.startswith('FLUX') else 'f'}.{c.lower()}" for c in agn.INPUT_COLUMNS)
    t = catalog.query(f"SELECT f.targetid, f.survey, f.program, {cols} FROM fastspec f JOIN redshifts r "
                      "ON r.targetid = f.targetid AND r.survey = f.survey AND r.program = f.program "
                      "ORDER BY f.targetid, f.survey, f.program")
    out = agn.classify({c: t[c.lower()].cast(pa.float64()).to_numpy(zero_copy_only=False)
                        for c in agn.INPUT_COLUMNS})
    out["TARGETID"] = t["targetid"].to_numpy()
    return out


@pytest.fixture(scope="module")
def result(catalog):
    return agn_task.agn_catalog(catalog, chunk_rows=700)


def test_catalog_matches_the_kernel_applied_directly(catalog, result):
    assert result.schema == agn_task.AGN_SCHEMA
    n = count(catalog, "SELECT count(*) FROM fastspec")
    assert result.num_rows == n
    keys = {(r["TARGETID"], r["SURVEY"], r["PROGRAM"]) for r in result.select(["TARGETID", "SURVEY", "PROGRAM"])
            .to_pylist()}
    assert len(keys) == n
    want = direct(catalog)
    assert np.array_equal(result["TARGETID"].to_numpy(), want["TARGETID"])
    for name in ("BPT_NII", "AGN_MASKBITS", "OPT_UV_TYPE", "IR_TYPE"):
        assert np.array_equal(result[name].to_numpy(), want[name]), name
    for name in ("LOG_NII_HA", "LOG_OIII_HB", "W1_W2_VEGA"):  # NaN in the kernel is NULL in the table
        np.testing.assert_array_equal(result[name].to_numpy(zero_copy_only=False), want[name], err_msg=name)


def test_every_class_and_flag_is_found(result):
    counts = agn_task.summarize(result)
    assert counts["rows"] == result.num_rows
    assert sum(counts[c.name] for c in agn.BPT) == result.num_rows
    for name in ("SF", "COMP", "SY", "LINER", "NONE", "BROAD_LINE", "WISE_ANY_AGN", "AGN_ANY"):
        assert counts[name] > 0, (name, counts)
    labels = dict(zip(result["BPT_NII"].to_pylist(), result["BPT_NII_CLASS"].to_pylist()))
    assert labels == {int(c): c.name for c in agn.BPT}


def test_chunk_size_does_not_change_the_result(catalog, result):
    # small chunks split the survey/program rows of repeated TARGETIDs only at whole targets
    targets = count(catalog, "SELECT count(DISTINCT targetid) FROM fastspec")
    assert count(catalog, "SELECT count(*) FROM fastspec") > targets
    small = agn_task.agn_catalog(catalog, chunk_rows=97)
    assert small.equals(result)
    sizes = [c.num_rows for c in agn_task.read_agn_inputs(catalog, chunk_rows=97)]
    assert max(sizes) <= 97 + 5 and sum(sizes) == result.num_rows
    with pytest.raises(ValueError, match="chunk_rows"):
        next(agn_task.read_agn_inputs(catalog, chunk_rows=0))


def test_chunks_classified_on_a_dask_cluster_equal_the_local_result(catalog, result):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cluster, Client(cluster) as client:
        chunks = list(agn_task.iter_agn_catalog(catalog, chunk_rows=300, client=client))
    assert len(chunks) > 4  # more chunks than are kept in flight: the order must hold
    assert pa.concat_tables(chunks).equals(result)


def test_table_written_in_one_transaction_and_replaced(catalog, result):
    assert agn_task.write_agn_table(catalog, result) == result.num_rows
    assert agn_task.write_agn_table(catalog, agn_task.iter_agn_catalog(catalog, 1000)) == result.num_rows
    assert count(catalog, "SELECT count(*) FROM agn") == result.num_rows
    by_class = {r["bpt_nii_class"]: r["n"] for r in
                catalog.query("SELECT bpt_nii_class, count(*) AS n FROM agn GROUP BY bpt_nii_class").to_pylist()}
    assert by_class == {c.name: int((result["BPT_NII"].to_numpy() == c).sum()) for c in agn.BPT}
    assert count(catalog, "SELECT count(*) FROM agn WHERE log_nii_ha IS NULL") == result["LOG_NII_HA"].null_count

    def failing():
        yield result.slice(0, 10)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        agn_task.write_agn_table(catalog, failing())
    assert count(catalog, "SELECT count(*) FROM agn") == result.num_rows  # the previous table is intact


def test_fits_round_trip(result, tmp_path):
    path = tmp_path / "agn.fits"
    assert agn_task.write_agn_fits(result, path) == result.num_rows
    back = Table.read(path, hdu="AGN")
    for name in ("TARGETID", "BPT_NII", "AGN_MASKBITS", "OPT_UV_TYPE", "IR_TYPE"):
        assert np.array_equal(back[name], result[name].to_numpy()), name
    np.testing.assert_array_equal(back["LOG_NII_HA"], result["LOG_NII_HA"].to_numpy(zero_copy_only=False))
    assert list(back["BPT_NII_CLASS"]) == result["BPT_NII_CLASS"].to_pylist()
    header = fits.getheader(path, "AGN")
    assert header["AGNB12"] == "BROAD_LINE" and header["OPTB03"] == "NII_SY" and header["IRB04"] == "WISE_AGN_S12"
    assert header["SNRMIN"] == 3.0 and header["FWHMMIN"] == 1200.0 and header["WISECUT"] == 0.8
    assert not path.with_name("agn.fits.part").exists()


def test_bpt_diagram_png(result):
    png = bpt_diagram_png(result, max_points=500)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert bpt_diagram_png(result.slice(0, 0))[:4] == b"\x89PNG"


def test_empty_catalog(tmp_path):
    cat = build_catalog(load_settings(env={"ASTROLAB_HOME": str(tmp_path / "home")}))
    try:
        empty = agn_task.agn_catalog(cat)
        assert empty.num_rows == 0 and empty.schema == agn_task.AGN_SCHEMA
        assert agn_task.write_agn_table(cat, empty) == 0 and count(cat, "SELECT count(*) FROM agn") == 0
        assert agn_task.write_agn_fits(empty, tmp_path / "empty.fits") == 0
        assert len(Table.read(tmp_path / "empty.fits", hdu="AGN")) == 0
    finally:
        cat.close()
