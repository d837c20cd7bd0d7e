"""tasks.science.crossmatch on small HATS catalogs built here: partitions of different orders, matches across edges."""

from __future__ import annotations

import dataclasses

import lsdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tasks.science.crossmatch as xm
from kernels.crossmatch import chord, unit_vectors
from kernels.healpix import ang2pix_nest, healpix_29
from tasks.hats.reader import HatsCatalog, open_hats
from tasks.hats.writer import HEALPIX_COLUMN, SEQ_COLUMN, pixel_range, write_hats_catalog
from tasks.science.crossmatch import candidate_partitions, crossmatch, match_stats
from tests.tasks.hats.test_writer import KEY, SCHEMA


def write_hats(root, ra, dec, order, ra_col="RA", dec_col="DEC"):
    """A minimal HATS catalog: every row in its pixel of one order, with an ID column."""
    pixel = ang2pix_nest(order, ra, dec)
    parts = sorted(set(pixel.tolist()))
    cat = HatsCatalog(root, ra_col, dec_col, tuple((order, p) for p in parts))
    for p in parts:
        rows = pixel == p
        path = cat.partition_file((order, p))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({ra_col: ra[rows], dec_col: dec[rows], "ID": np.flatnonzero(rows)}), path)
    (root / "partition_info.csv").write_text("Norder,Npix\n" + "".join(f"{order},{p}\n" for p in parts))
    (root / "hats.properties").write_text(f"obs_collection=t\nhats_col_ra={ra_col}\nhats_col_dec={dec_col}\n")
    return open_hats(root)


def brute_force(ra1, dec1, ra2, dec2, radius_deg):
    v1, v2 = unit_vectors(ra1, dec1), unit_vectors(ra2, dec2)
    d2 = ((v1[:, None, :] - v2[None, :, :]) ** 2).sum(axis=-1)
    best = d2.argmin(axis=1)
    return np.where(d2[np.arange(len(v1)), best] <= chord(radius_deg) ** 2, best, -1)


@pytest.fixture
def skies():
    """Left points clustered around partition corners (order-2 pixel 0's vertices, the pole, RA = 0), right points
    a few arcsec away from them, so many matches straddle partition edges."""
    rng = np.random.default_rng(4)
    centres_ra = np.array([45.0, 0.0, 90.0, 0.0, 359.99, 135.0])
    centres_dec = np.array([41.81, 0.0, 0.0, 89.99, 20.0, -41.81])
    k = rng.integers(0, centres_ra.size, 3000)
    ra1 = (centres_ra[k] + rng.normal(0, 0.02, k.size)) % 360
    dec1 = np.clip(centres_dec[k] + rng.normal(0, 0.02, k.size), -90, 90)
    ra2 = (ra1 + rng.normal(0, 3 / 3600, k.size)) % 360
    dec2 = np.clip(dec1 + rng.normal(0, 3 / 3600, k.size), -90, 90)
    return ra1, dec1, ra2[:2500], dec2[:2500]


@pytest.mark.parametrize("orders", [(2, 2), (3, 1), (0, 4)])
def test_partitioned_match_equals_brute_force(tmp_path, skies, orders):
    ra1, dec1, ra2, dec2 = skies
    left = write_hats(tmp_path / "left", ra1, dec1, orders[0])
    right = write_hats(tmp_path / "right", ra2, dec2, orders[1], ra_col="TARGET_RA", dec_col="TARGET_DEC")
    radius = 8.0
    got = crossmatch(left, right, radius, ["ID"], ["ID"])
    want = brute_force(ra1, dec1, ra2, dec2, radius / 3600)
    pairs = dict(zip(got["left_ID"].to_pylist(), got["right_ID"].to_pylist()))
    assert pairs == {i: int(j) for i, j in enumerate(want) if j >= 0}
    crossing = sum(ang2pix_nest(orders[0], ra1[i], dec1[i]) != ang2pix_nest(orders[0], ra2[j], dec2[j])
                   for i, j in pairs.items())
    assert crossing > 10  # the margins are what found these
    assert np.all(got["separation_arcsec"].to_numpy() <= radius)
    stats = match_stats(got, len(ra1), len(ra2), radius)
    assert stats["matched"] == len(pairs) and 0 < stats["matched_fraction"] < 1


def test_dask_split_equals_serial(tmp_path, skies):
    from distributed import Client, LocalCluster

    ra1, dec1, ra2, dec2 = skies
    left, right = write_hats(tmp_path / "l", ra1, dec1, 3), write_hats(tmp_path / "r", ra2, dec2, 2)
    serial = crossmatch(left, right, 5.0, ["ID"], ["ID"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster, Client(cluster) as client:
        split = crossmatch(left, right, 5.0, ["ID"], ["ID"], client=client)
    assert sorted(zip(split["left_ID"].to_pylist(), split["right_ID"].to_pylist())) == \
        sorted(zip(serial["left_ID"].to_pylist(), serial["right_ID"].to_pylist()))


def test_far_apart_catalogs_match_nothing(tmp_path):
    left = write_hats(tmp_path / "l", np.array([10.0, 11.0]), np.array([0.0, 0.5]), 2)
    right = write_hats(tmp_path / "r", np.array([200.0]), np.array([-60.0]), 2)
    assert candidate_partitions(left, right, 1 / 3600) == {p: [] for p in left.partitions}
    got = crossmatch(left, right, 1.0, ["ID"], ["ID"])
    assert len(got) == 0 and "separation_arcsec" in got.column_names


def test_not_a_hats_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a HATS catalog: hats.properties is missing"):
        open_hats(tmp_path)
    with pytest.raises(ValueError, match="positive"):
        crossmatch(HatsCatalog(tmp_path, "RA", "DEC", ()), HatsCatalog(tmp_path, "RA", "DEC", ()), 0.0)


def test_rows_without_a_position_match_nothing(tmp_path):
    ra1, dec1 = np.array([10.0, np.nan, 10.5]), np.array([0.0, 0.0, 0.5])
    left = write_hats(tmp_path / "l", np.nan_to_num(ra1), dec1, 2)
    pq.write_table(pa.table({"RA": ra1, "DEC": dec1, "ID": [0, 1, 2]}), left.partition_file(left.partitions[0]))
    right = write_hats(tmp_path / "r", np.array([10.0001, 10.5]), np.array([0.0, 0.5]), 2)
    got = crossmatch(left, right, 2.0, ["ID"], ["ID"])
    assert sorted(zip(got["left_ID"].to_pylist(), got["right_ID"].to_pylist())) == [(0, 0), (2, 1)]


def test_a_dense_patch_matches_brute_force(tmp_path):
    """All points in a small patch (one partition): the grid follows their extent, not the whole sky's."""
    rng = np.random.default_rng(9)
    ra1, dec1 = 40 + rng.uniform(0, 0.05, 3000), rng.uniform(0, 0.05, 3000)
    ra2, dec2 = ra1 + rng.normal(0, 1 / 3600, 3000), dec1 + rng.normal(0, 1 / 3600, 3000)
    got = crossmatch(write_hats(tmp_path / "l", ra1, dec1, 3), write_hats(tmp_path / "r", ra2, dec2, 3), 3.0,
                     ["ID"], ["ID"])
    want = brute_force(ra1, dec1, ra2, dec2, 3 / 3600)
    assert dict(zip(got["left_ID"].to_pylist(), got["right_ID"].to_pylist())) == \
        {i: int(j) for i, j in enumerate(want) if j >= 0}


def jittered_products(tmp_path, threshold_arcsec=60.0):
    """Two products as the lake builds them (margins included) over a 10x10 degree patch: the right one holds
    each left position moved by up to ~30 arcsec plus as many unrelated rows, partitioned differently."""

    rng = np.random.default_rng(5)
    n = 6000
    ra, dec = rng.uniform(40, 50, n), rng.uniform(-5, 5, n)
    ra2 = np.r_[ra + rng.normal(0, 10, n) / 3600 / np.cos(np.radians(dec)), rng.uniform(40, 50, n)]
    dec2 = np.r_[dec + rng.normal(0, 10, n) / 3600, rng.uniform(-5, 5, n)]
    out = []
    for name, (r, d, max_rows) in {"left": (ra, dec, 400), "right": (ra2, dec2, 1500)}.items():
        t = pa.table({"TARGETID": np.arange(len(r)), "SURVEY": ["main"] * len(r), "PROGRAM": ["dark"] * len(r),
                      "RA": r, "DEC": d, "Z": np.zeros(len(r)), HEALPIX_COLUMN: healpix_29(r, d),
                      SEQ_COLUMN: np.ones(len(r), dtype=np.int64)}, schema=SCHEMA).sort_by(HEALPIX_COLUMN)
        pq.write_table(t, tmp_path / f"{name}.parquet")
        write_hats_catalog(tmp_path / name, name, SCHEMA, KEY, "RA", "DEC", [tmp_path / f"{name}.parquet"],
                           max_rows=max_rows, highest_order=7, margin_arcsec=threshold_arcsec)
        out.append(open_hats(tmp_path / name))
    return out


def test_crossmatch_with_margins_gives_lsdb_pairs(tmp_path):
    left, right = jittered_products(tmp_path)
    assert right.margin is not None and right.margin_arcsec == 60.0
    assert set(left.partitions) - set(right.partitions) and len(left.partitions) > len(right.partitions)
    ours = crossmatch(left, right, 30.0, ["TARGETID"], ["TARGETID"]).to_pandas()
    assert len(right.margin.partitions) > 5
    theirs = lsdb.open_catalog(left.root).crossmatch(
        lsdb.open_catalog(right.root, margin_cache=right.margin.root), n_neighbors=1, radius_arcsec=30.0,
        suffixes=("_l", "_r"), suffix_method="all_columns").compute()
    assert len(ours) == len(theirs) > 5000
    ours = ours.set_index("left_TARGETID").sort_index()
    theirs = theirs.set_index("TARGETID_l").sort_index()
    assert (ours.index == theirs.index).all()
    assert (ours["right_TARGETID"].to_numpy() == theirs["TARGETID_r"].to_numpy()).all()
    assert np.allclose(ours["separation_arcsec"], theirs["_dist_arcsec"], rtol=0, atol=1e-9)
    # many pairs cross a right partition's edge: those right rows came from its margin
    starts = np.array(sorted(pixel_range(*p)[0] for p in right.partitions))
    side = [np.searchsorted(starts, healpix_29(ours[f"{s}_RA"].to_numpy(), ours[f"{s}_DEC"].to_numpy()), "right")
            for s in ("left", "right")]
    assert (side[0] != side[1]).sum() > 5
    # matches across partition edges came from the margin: the same pairs without it (neighbours re-read)
    plain = crossmatch(left, dataclasses.replace(right, margin=None), 30.0, ["TARGETID"], ["TARGETID"])
    plain = plain.to_pandas().set_index("left_TARGETID").sort_index()
    assert (plain["right_TARGETID"] == ours["right_TARGETID"]).all()


def test_margin_narrower_than_the_radius_is_not_used(tmp_path, monkeypatch):
    left, right = jittered_products(tmp_path, threshold_arcsec=5.0)
    used = []
    real = xm.match_partition
    monkeypatch.setattr(xm, "match_partition", lambda *a: used.append(a[-1]) or real(*a))
    xm.crossmatch(left, right, 30.0)
    assert used and all(o is None for o in used)
    used.clear()
    xm.crossmatch(left, right, 5.0)
    assert used and all(o is not None for o in used)
