"""The chunked FITS reader against astropy's own reading of the same files."""

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.table import Table

from tasks.ingest.fits_reader import FitsFormatError, iter_table, read_table, table_layout


@pytest.fixture
def table_file(tmp_path):
    rng = np.random.default_rng(1)
    n = 1001
    t = Table()
    t["TARGETID"] = rng.integers(0, 2**62, n, dtype=np.int64)
    t["Z"] = rng.random(n)
    t["FLUX_G"] = rng.random(n).astype(np.float32)
    t["SPECTYPE"] = rng.choice(["GALAXY", "QSO", "STAR"], n).astype("S6")
    t["PRIMARY"] = rng.random(n) < 0.5
    t["COEFF"] = rng.random((n, 10))
    t["ID_U64"] = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
    t["ID_U32"] = rng.integers(0, 2**32 - 1, n, dtype=np.uint32)
    t["SMALL"] = rng.integers(-32768, 32767, n).astype(np.int16)
    t["FA_TYPE"] = rng.integers(0, 255, n).astype(np.uint8)
    hdu = fits.table_to_hdu(t)
    hdu.name = "ZCATALOG"
    path = tmp_path / "zpix-main-dark.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu, fits.BinTableHDU(Table({"X": [1, 2]}), name="EXP_FIBERMAP")]).writeto(path)
    return path, t


def test_chunks_match_astropy(table_file):
    path, expected = table_file
    layout = table_layout(path, "ZCATALOG")
    assert layout.nrows == 1001
    batches = list(iter_table(layout, chunk_rows=300))
    assert [b.num_rows for b in batches] == [300, 300, 300, 101]
    got = pa.concat_tables(batches)
    for name in ("TARGETID", "Z", "FLUX_G", "SMALL", "FA_TYPE", "ID_U64", "ID_U32"):
        np.testing.assert_array_equal(got[name].to_numpy(), np.asarray(expected[name]), err_msg=name)
    assert got["ID_U64"].type == pa.uint64() and got["ID_U32"].type == pa.uint32()
    assert got["SPECTYPE"].to_pylist() == [str(s) for s in expected["SPECTYPE"]]
    assert got["PRIMARY"].to_pylist() == list(expected["PRIMARY"])
    assert got["COEFF"].type == pa.list_(pa.float64(), 10)
    np.testing.assert_array_equal(np.stack(got["COEFF"].to_numpy(zero_copy_only=False)), expected["COEFF"])


def test_selected_columns_and_hdu_by_name(table_file):
    path, expected = table_file
    got = read_table(path, "ZCATALOG", ["Z", "TARGETID"])
    assert got.schema.names == ["Z", "TARGETID"]
    assert read_table(path, "EXP_FIBERMAP")["X"].to_pylist() == [1, 2]


def test_missing_hdu_names_file_and_extname(table_file):
    path, _ = table_file
    with pytest.raises(FitsFormatError, match=r"zpix-main-dark.fits: no HDU with EXTNAME 'REDSHIFTS'"):
        table_layout(path, "REDSHIFTS")


def test_missing_and_wrong_kind_columns(table_file):
    path, _ = table_file
    layout = table_layout(path, "ZCATALOG")
    with pytest.raises(FitsFormatError, match="HDU ZCATALOG, column TARGET_RA: required column is missing"):
        layout.require("TARGET_RA", "float")
    with pytest.raises(FitsFormatError, match=r"column SPECTYPE: expected a float column \(D/E\), found TFORM 6A"):
        layout.require("SPECTYPE", "float")
    assert layout.require("Z", "float").letter == "D"


def test_truncated_file(table_file):
    path, _ = table_file
    data = path.read_bytes()
    cut = path.with_name("zpix-main-bright.fits")
    cut.write_bytes(data[: 2880 * 3 + 500])
    with pytest.raises(FitsFormatError, match="truncated"):
        table_layout(cut, "ZCATALOG")


@pytest.mark.parametrize("content", [b"", b"SIMPLE  = this is not fits\n" * 10, b"\x00\x01binary junk" * 500])
def test_not_fits(tmp_path, content):
    path = tmp_path / "zpix-main-dark.fits"
    path.write_bytes(content)
    with pytest.raises(FitsFormatError, match="zpix-main-dark.fits: not a readable FITS file"):
        table_layout(path, "ZCATALOG")


def test_bounded_chunks_do_not_read_whole_file(table_file, monkeypatch):
    path, _ = table_file
    layout = table_layout(path, "ZCATALOG")
    reads = []
    import builtins

    real_open = builtins.open

    class Spy:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            reads.append(n)
            return self.fh.read(n)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

    monkeypatch.setattr(builtins, "open", lambda *a, **k: Spy(real_open(*a, **k)))
    list(iter_table(layout, ["Z"], chunk_rows=100))
    assert max(reads) == 100 * layout.row_bytes
    reads.clear()
    monkeypatch.setattr("tasks.ingest.fits_reader.DECODE_BLOCK_BYTES", 40 * layout.row_bytes)
    chunks = list(iter_table(layout, ["Z"], chunk_rows=100))
    assert max(reads) == 40 * layout.row_bytes and [c.num_rows for c in chunks[:2]] == [100, 100]
