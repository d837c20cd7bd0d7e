"""HATS catalogs written by tasks.hats.writer, opened by the hats and lsdb packages."""

import csv

import hats
import lsdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kernels.healpix import healpix_29
from tasks.hats.writer import HEALPIX_COLUMN, SEQ_COLUMN, partition_pixels, pixel_range, write_hats_catalog

SCHEMA = pa.schema([("TARGETID", pa.int64()), ("SURVEY", pa.string()), ("PROGRAM", pa.string()),
                    ("RA", pa.float64()), ("DEC", pa.float64()), ("Z", pa.float64()),
                    (HEALPIX_COLUMN, pa.int64()), (SEQ_COLUMN, pa.int64())])
KEY = ("TARGETID", "SURVEY", "PROGRAM")


def fragment(path, ids, z, seed, seq, ra_range=(0, 360)):
    rng = np.random.default_rng(seed)
    n = len(ids)
    ra = rng.uniform(*ra_range, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    t = pa.table({"TARGETID": np.asarray(ids, dtype=np.int64), "SURVEY": ["main"] * n, "PROGRAM": ["dark"] * n,
                  "RA": ra, "DEC": dec, "Z": np.asarray(z, dtype=float), HEALPIX_COLUMN: healpix_29(ra, dec),
                  SEQ_COLUMN: np.full(n, seq, dtype=np.int64)}, schema=SCHEMA).sort_by(HEALPIX_COLUMN)
    pq.write_table(t, path)
    return path


def test_partition_pixels_top_down():
    counts = np.zeros(12 * 4**2, dtype=np.int64)
    counts[0:16] = 10          # all of order-0 pixel 0: 160 rows
    counts[16:20] = [50, 0, 0, 0]  # order-1 pixel 4 (inside order-0 pixel 1): 50 rows
    counts[47] = 7             # order-0 pixel 2, one order-2 pixel
    assert partition_pixels(counts, 2, max_rows=100) == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert partition_pixels(counts, 2, max_rows=1000) == [(0, 0), (0, 1), (0, 2)]
    # at the highest order a pixel is kept even when it is over the limit
    assert partition_pixels(counts, 2, max_rows=5) == [(2, p) for p in range(17)] + [(2, 47)]


def test_pixel_range():
    assert pixel_range(0, 1) == (1 << 58, 2 << 58)
    assert pixel_range(29, 5) == (5, 6)


def test_build_opens_in_hats_and_lsdb(tmp_path):
    parts = [fragment(tmp_path / f"p{i}.parquet", range(i * 1000, (i + 1) * 1000), np.full(1000, 0.1 * i), i, 1)
             for i in range(3)]
    out = tmp_path / "cat"
    summary = write_hats_catalog(out, "redshifts", SCHEMA, KEY, "RA", "DEC", parts, max_rows=400, highest_order=4)
    assert summary.nrows == 3000 and summary.rewritten == len(summary.partitions) > 1

    cat = hats.read_hats(out)
    assert cat.catalog_info.total_rows == 3000
    assert cat.catalog_info.ra_column == "RA"
    assert sorted(cat.get_healpix_pixels()) == sorted(hats.pixel_math.HealpixPixel(o, p) for o, p in summary.partitions)

    df = lsdb.open_catalog(out).compute()
    assert len(df) == 3000 and set(df["TARGETID"]) == set(range(3000))
    assert SEQ_COLUMN not in df.columns
    # every row sits in the partition its _healpix_29 says
    for order, pixel in summary.partitions:
        part = out / "dataset" / f"Norder={order}" / f"Dir={pixel // 10000 * 10000}" / f"Npix={pixel}.parquet"
        t = pq.read_table(part)
        lo, hi = pixel_range(order, pixel)
        h = t[HEALPIX_COLUMN].to_numpy()
        assert ((h >= lo) & (h < hi)).all() and t.num_rows <= 400
    with open(out / "partition_info.csv") as fh:
        assert [(int(r["Norder"]), int(r["Npix"])) for r in csv.DictReader(fh)] == summary.partitions
    assert pq.read_metadata(out / "dataset" / "_metadata").num_rows == 3000


def test_properties_and_skymap_are_hats_own(tmp_path):
    parts = [fragment(tmp_path / "p.parquet", range(2000), np.zeros(2000), 7, 1)]
    out = tmp_path / "cat"
    write_hats_catalog(out, "redshifts", SCHEMA, KEY, "RA", "DEC", parts, max_rows=300, highest_order=3)
    props = hats.catalog.TableProperties.read_from_dir(out)  # validated: an object catalog's required keys
    assert (props.catalog_name, props.catalog_type, props.total_rows) == ("redshifts", "object", 2000)
    assert (props.healpix_column, props.healpix_order, props.skymap_order) == (HEALPIX_COLUMN, 29, 3)
    assert props.hats_max_rows == 300 and props.hats_estsize > 0
    # the row-count skymap: hats reads it back with the rows per order-3 pixel
    cat = hats.read_hats(out)
    skymap = hats.io.skymap.read_skymap(cat, None)
    t = pq.read_table(parts[0])
    expected = np.bincount(t[HEALPIX_COLUMN].to_numpy() >> 2 * (29 - 3), minlength=12 * 4**3)
    assert np.array_equal(skymap, expected)
    # hats.properties is written last: no file of the build is newer
    newest = max((p for p in out.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    assert newest.stat().st_mtime_ns == (out / "hats.properties").stat().st_mtime_ns


def two_versions(tmp_path, old: dict, new: dict, max_rows: int):
    """Build version 1 from fragment(**old), then version 2 from it plus fragment(**new)."""
    first, second = tmp_path / "v1", tmp_path / "v2"
    write_hats_catalog(first, "r", SCHEMA, KEY, "RA", "DEC", [fragment(tmp_path / "a.parquet", **old)],
                  max_rows=max_rows, highest_order=3)
    summary = write_hats_catalog(second, "r", SCHEMA, KEY, "RA", "DEC", [fragment(tmp_path / "b.parquet", **new)],
                            previous=first, max_rows=max_rows, highest_order=3)
    return summary, lsdb.open_catalog(second).compute()


def test_rebuild_merges_and_newest_copy_wins(tmp_path):
    # a newer file repeats ids 1500-2499 (1500-1999 replace old rows, at other positions) with z = 1
    summary, df = two_versions(tmp_path, dict(ids=range(2000), z=np.zeros(2000), seed=1, seq=1),
                               dict(ids=range(1500, 2500), z=np.ones(1000), seed=2, seq=2), max_rows=10_000)
    df = df.set_index("TARGETID").sort_index()
    assert summary.nrows == len(df) == 2500
    assert (df.loc[1500:2499, "Z"] == 1).all() and (df.loc[0:1499, "Z"] == 0).all()


def test_untouched_partitions_are_linked(tmp_path):
    # new rows only in RA 0-10 (a couple of partitions); the rest must be hard links of version 1
    summary, df = two_versions(tmp_path, dict(ids=range(4000), z=np.zeros(4000), seed=1, seq=1),
                               dict(ids=range(10_000, 10_050), z=np.ones(50), seed=2, seq=2, ra_range=(0, 10)),
                               max_rows=1500)
    assert summary.linked > 0 and summary.rewritten > 0
    assert summary.nrows == 4050 == len(df)


def test_a_failed_build_leaves_no_open_file_or_thread(tmp_path, monkeypatch):
    import os
    import threading

    import pytest

    import tasks.hats.writer as writer

    part = fragment(tmp_path / "a.parquet", range(3000), np.zeros(3000), 1, 1)
    route, calls = writer._route, []

    def route_then_fail(*args):  # the disk fills after 20 batches have been routed
        calls.append(1)
        if len(calls) > 20:
            raise OSError("No space left on device")
        route(*args)

    monkeypatch.setattr(writer, "_route", route_then_fail)
    monkeypatch.setattr(writer.PartitionWriters, "ROW_GROUP_ROWS", 100)  # batches of 100: files opened before
    threads = threading.active_count()
    out = tmp_path / "cat"
    with pytest.raises(OSError, match="No space left"):
        write_hats_catalog(out, "redshifts", SCHEMA, KEY, "RA", "DEC", [part], max_rows=100_000,
                           highest_order=2, margin_arcsec=60.0)
    assert len(calls) == 21 and any(out.rglob("*.parquet"))  # files had been opened
    fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
           if os.path.exists(f"/proc/self/fd/{fd}")]
    assert [f for f in fds if f.startswith(str(out))] == []
    assert threading.active_count() == threads
    assert not (out / "hats.properties").exists()
