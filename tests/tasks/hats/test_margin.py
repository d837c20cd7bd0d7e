"""Margin catalogs written with a HATS build: every row within the threshold of a partition, and none farther."""

import hats
import healpy as hp
import lsdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hats.pixel_math.healpix_shim import margin2order

from kernels.crossmatch import unit_vectors
from kernels.healpix import healpix_29
from tasks.hats.margin import margin_name, write_margin_catalog
from tasks.hats.margin_order import hats_margin_order, margin_pixel_order
from tasks.hats.reader import partition_path
from tasks.hats.writer import HEALPIX_COLUMN, SEQ_COLUMN, pixel_range, write_hats_catalog
from tests.tasks.hats.test_writer import KEY, SCHEMA, fragment

THRESHOLD = 60.0  # arcsec: wide enough that a small catalog has many rows that close to partition edges
SPACING = 4.0  # arcsec between the brute force's boundary samples: its distances are long by at most half that


def band_fragment(path, ids, seed, ra_range, dec_range):
    """Rows spread uniformly over the sky between ``ra_range`` and ``dec_range`` (degrees)."""
    out = fragment(path, ids, np.zeros(len(ids)), seed, 1)
    rng = np.random.default_rng(seed)
    sin_dec = np.sin(np.radians(dec_range))
    ra, dec = rng.uniform(*ra_range, len(ids)), np.degrees(np.arcsin(rng.uniform(*sin_dec, len(ids))))
    t = pq.read_table(out)
    t = t.set_column(t.schema.get_field_index("RA"), "RA", pa.array(ra))
    t = t.set_column(t.schema.get_field_index("DEC"), "DEC", pa.array(dec))
    t = t.set_column(t.schema.get_field_index(HEALPIX_COLUMN), HEALPIX_COLUMN, pa.array(healpix_29(ra, dec)))
    pq.write_table(t.sort_by(HEALPIX_COLUMN), out)
    return out


PATCHES = {  # (ra range, dec range) of the wide rows; a dense cluster in the first degree of each
    "equator": ((40, 50), (-5, 5)),
    "pole": ((0, 360), (80, 90)),  # the polar caps' narrow pixels
    "base-pixel-vertex": ((85, 95), (37, 47)),  # where equatorial and polar base pixels meet (dec 41.8, ra 90)
}


def patch_catalog(tmp_path, threshold=THRESHOLD, patch="equator"):
    """A catalog over a patch of sky with a dense cluster: partitions of mixed orders (4 to 6 on the equator)."""
    (ra0, ra1), (dec0, dec1) = PATCHES[patch]
    parts = [band_fragment(tmp_path / "wide.parquet", range(60_000), 1, (ra0, ra1), (dec0, dec1)),
             band_fragment(tmp_path / "dense.parquet", range(60_000, 90_000), 2, (ra0 + 4, ra0 + 5),
                           (dec0 + 4, dec0 + 5))]
    out = tmp_path / "cat"
    return out, write_hats_catalog(out, "redshifts", SCHEMA, KEY, "RA", "DEC", parts, max_rows=250,
                                   highest_order=6, margin_arcsec=threshold)


def brute_distance_arcsec(vectors, partition):
    """Distance from each point to a pixel's boundary, sampled every SPACING arcsec (angles from chords)."""
    order, pixel = partition
    edge = np.degrees(hp.nside2resol(2**order)) * 3600 * 1.5
    boundary = hp.boundaries(2**order, pixel, step=int(edge / SPACING) + 1, nest=True).T
    chord = np.array([np.min(np.linalg.norm(v[None, :] - boundary, axis=1)) for v in vectors])
    return np.degrees(2 * np.arcsin(chord / 2)) * 3600


def assert_margin_exact(out, summary):
    """Every row within THRESHOLD of each partition is in its margin file, and none farther (brute force)."""
    margin = summary.margin
    everything = pa.concat_tables(pq.read_table(partition_path(out, p)) for p in summary.partitions)
    ids, h = everything["TARGETID"].to_numpy(), everything[HEALPIX_COLUMN].to_numpy()
    vectors = unit_vectors(everything["RA"].to_numpy(), everything["DEC"].to_numpy())
    checked = 0
    for part in summary.partitions:
        lo, hi = pixel_range(*part)
        outside = (h < lo) | (h >= hi)
        centre = np.asarray(hp.pix2vec(2**part[0], part[1], nest=True))
        cone = np.radians(np.degrees(hp.max_pixrad(2**part[0])) + THRESHOLD / 3600)
        near = np.flatnonzero(outside & (vectors @ centre > np.cos(cone)))
        distance = brute_distance_arcsec(vectors[near], part)
        path = partition_path(margin.path, part)
        in_margin = pq.read_table(path)["TARGETID"].to_pylist() if path.exists() else []
        assert len(set(in_margin)) == len(in_margin)
        assert set(ids[near[distance <= THRESHOLD]]) <= set(in_margin)  # every row that close (true distance <=)
        assert set(in_margin) <= set(ids[near[distance <= THRESHOLD + SPACING / 2]])  # and none farther
        checked += len(in_margin)
    assert checked == margin.nrows


@pytest.mark.parametrize("patch", list(PATCHES))
def test_margin_holds_rows_within_threshold_and_none_farther(tmp_path, patch):
    out, summary = patch_catalog(tmp_path, patch=patch)
    assert len({o for o, _ in summary.partitions}) >= 2  # mixed orders
    margin = summary.margin
    assert margin is not None and margin.path == out / "redshifts_60arcs" and margin.nrows > 100
    assert (margin.linked, margin.rewritten) == (0, len(margin.partitions))
    assert_margin_exact(out, summary)


def margin_tables(margin_dir, partitions):
    """Each margin file's rows, sorted by TARGETID."""
    return {p: pq.read_table(partition_path(margin_dir, p)).sort_by("TARGETID") for p in partitions}


def test_second_publish_reuses_the_margins_of_unchanged_rings(tmp_path):
    first, v1 = patch_catalog(tmp_path)
    # a few new rows in a 0.2-degree box, and a newer copy of row 0 (its old position elsewhere drops out)
    small = band_fragment(tmp_path / "small.parquet", range(100_000, 100_020), 3, (46.0, 46.2), (-1.0, -0.8))
    moved = band_fragment(tmp_path / "moved.parquet", [0], 4, (48.0, 48.01), (2.0, 2.01))
    t = pa.concat_tables([pq.read_table(small), pq.read_table(moved)])
    t = t.set_column(t.schema.get_field_index(SEQ_COLUMN), SEQ_COLUMN, pa.array(np.full(t.num_rows, 2)))
    pq.write_table(t.sort_by(HEALPIX_COLUMN), small)
    second = tmp_path / "v2"
    v2 = write_hats_catalog(second, "redshifts", SCHEMA, KEY, "RA", "DEC", [small], previous=first, max_rows=250,
                            highest_order=6, margin_arcsec=THRESHOLD)
    assert v2.nrows == v1.nrows + 20
    # the same margin as one built from scratch over version 2's partitions (exact: the tests above)
    scratch = write_margin_catalog(second, tmp_path / "scratch", "redshifts", "RA", "DEC", v2.partitions,
                                   SCHEMA.remove(SCHEMA.get_field_index(SEQ_COLUMN)), THRESHOLD)
    assert v2.margin.partitions == scratch.partitions and v2.margin.nrows == scratch.nrows
    ours, theirs = margin_tables(v2.margin.path, v2.margin.partitions), margin_tables(scratch.path, scratch.partitions)
    assert all(ours[p].equals(theirs[p]) for p in ours)
    # most margin files are links of version 1's; every one whose rows changed was rewritten
    old = margin_tables(v1.margin.path, v1.margin.partitions)
    same_file = {p for p in v2.margin.partitions
                 if partition_path(v1.margin.path, p).exists()
                 and partition_path(v1.margin.path, p).stat().st_ino == partition_path(v2.margin.path, p).stat().st_ino}
    changed = {p for p in v2.margin.partitions if p not in old or not old[p].equals(ours[p])}
    assert changed and not changed & same_file
    assert v2.margin.linked == len(same_file) >= 0.8 * len(v2.margin.partitions)
    assert v2.margin.rewritten == len(v2.margin.partitions) - len(same_file) < 0.2 * len(v2.margin.partitions)


def test_a_partition_whose_rows_all_moved_away_keeps_no_margin(tmp_path):
    first, v1 = patch_catalog(tmp_path)
    # every row of one wide-area partition gets a newer copy far from it and from its ring: the partition is planned
    # (its old rows still count) but comes out empty, and its unchanged ring would let the old margin file be linked
    emptied = next(p for p in v1.partitions if p[0] == 4 and partition_path(v1.margin.path, p).exists())
    ids = pq.read_table(partition_path(first, emptied))["TARGETID"].to_numpy()
    moved = band_fragment(tmp_path / "moved.parquet", ids, 5, (44.0, 44.3), (4.0, 4.3))
    t = pq.read_table(moved)
    t = t.set_column(t.schema.get_field_index(SEQ_COLUMN), SEQ_COLUMN, pa.array(np.full(t.num_rows, 2)))
    pq.write_table(t, moved)
    second = tmp_path / "v2"
    v2 = write_hats_catalog(second, "redshifts", SCHEMA, KEY, "RA", "DEC", [moved], previous=first, max_rows=250,
                            highest_order=6, margin_arcsec=THRESHOLD)
    assert v2.nrows == v1.nrows and emptied not in v2.partitions
    assert emptied not in v2.margin.partitions and not partition_path(v2.margin.path, emptied).exists()
    assert set(v2.margin.partitions) <= set(v2.partitions)
    assert v2.margin.nrows == pq.ParquetDataset(v2.margin.path / "dataset").read().num_rows


def test_no_margin_reuse_across_thresholds(tmp_path):
    first, _ = patch_catalog(tmp_path)
    small = band_fragment(tmp_path / "small.parquet", range(100_000, 100_005), 3, (46.0, 46.2), (-1.0, -0.8))
    v2 = write_hats_catalog(tmp_path / "v2", "redshifts", SCHEMA, KEY, "RA", "DEC", [small], previous=first,
                            max_rows=250, highest_order=6, margin_arcsec=30.0)
    assert v2.margin is not None and v2.margin.linked == 0 and v2.margin.path.name == "redshifts_30arcs"


def test_margin_catalog_is_hats_and_opens_in_lsdb(tmp_path):
    out, summary = patch_catalog(tmp_path)
    margin_dir = out / margin_name("redshifts", THRESHOLD)
    props = hats.catalog.TableProperties.read_from_dir(margin_dir)
    assert (props.catalog_type, props.primary_catalog, props.margin_threshold) == ("margin", "redshifts", 60.0)
    assert props.total_rows == summary.margin.nrows
    cat = lsdb.open_catalog(out, margin_cache=margin_dir)
    assert cat.margin is not None and cat.margin.hc_structure.catalog_info.margin_threshold == 60.0
    assert len(cat.margin.compute()) == summary.margin.nrows
    assert SEQ_COLUMN not in cat.margin.columns
    # the margin is written before the primary's hats.properties, which stays the last file of the build
    newest = max((p for p in out.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    assert newest == out / "hats.properties"


def test_threshold_too_wide_for_the_partitions_is_refused():
    assert margin_pixel_order(10.0, [(8, 1)]) == 12  # one coarser than hats.pixel_math.margin2order(10 arcsec) = 13
    with pytest.raises(ValueError, match="too wide for partitions of order 8"):
        margin_pixel_order(3600.0, [(8, 1)])


@pytest.mark.parametrize("arcsec", [0.01, 1.0, 10.0, 60.0, 599.0, 3600.0, 1e6])
def test_margin_order_without_hats_is_hats_own(arcsec):
    assert hats_margin_order(arcsec) == int(margin2order(np.asarray(arcsec / 60.0)))
