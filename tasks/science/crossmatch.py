"""Crossmatch of two HATS catalogs, partition by partition with margins.

When the right catalog has a margin catalog at least as wide as the match radius (each published lake product
does, see ``tasks.hats.margin``), the left rows inside each right partition are matched against that partition's
rows plus its margin, as lsdb's crossmatch does: nothing else is read. Left rows where the right catalog has no
partition, and every left row when the right catalog has no margin that wide, are matched against the right
partitions whose bounding cones come within the radius of the left partition, cut to the left partition's cone
widened by the radius. Either way `kernels.crossmatch` finds each left row's nearest right row within the radius,
a match across a partition edge is never lost, and the result equals a brute-force nearest-neighbour match over
the whole catalogs. Partitions may be of any order in either catalog. Each left partition is one unit of work (a
Dask task when a client is given).
"""

from __future__ import annotations

from typing import Any

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hats.pixel_math import compute_spatial_index

from kernels.crossmatch import nearest_within_xyz, unit_vectors
from kernels.xp import to_device, to_host
from tasks.hats.reader import HatsCatalog, Partition
from tasks.hats.writer import pixel_range
from tasks.plots import figure, png


def bounding_cone(partition: Partition) -> tuple[np.ndarray, float]:
    """Unit vector of a pixel's centre and an angle (degrees) from it that encloses the whole pixel."""
    order, pixel = partition
    nside = 2**order
    centre = np.asarray(hp.pix2vec(nside, pixel, nest=True))
    edge = hp.boundaries(nside, pixel, step=8, nest=True)  # (3, 32) points along the pixel's boundary
    cos = np.clip(centre @ edge, -1.0, 1.0)
    # The boundary is sampled, and pixel edges bulge slightly between samples: pad generously (only cost:
    # a few more candidate rows, never a lost match).
    return centre, float(np.degrees(np.arccos(cos.min())) * 1.1 + 1e-6)


def candidate_partitions(left: HatsCatalog, right: HatsCatalog, radius_deg: float) -> dict[Partition, list[Partition]]:
    """For each left partition, the right partitions that can hold a match within `radius_deg`."""
    right_cones = [bounding_cone(p) for p in right.partitions]
    centres = np.array([c for c, _ in right_cones]).reshape(-1, 3)
    radii = np.array([r for _, r in right_cones])
    out = {}
    for part in left.partitions:
        centre, radius = bounding_cone(part)
        angle = np.degrees(np.arccos(np.clip(centres @ centre, -1.0, 1.0)))
        out[part] = [right.partitions[k] for k in np.flatnonzero(angle <= radius + radii + radius_deg)]
    return out


def overlapping_partitions(left: HatsCatalog, right: HatsCatalog) -> dict[Partition, list[Partition]]:
    """For each left partition, the right partitions that overlap it (the same pixel, or inside it, or around it)."""
    bounds = np.array([pixel_range(*p) for p in right.partitions], dtype=np.int64).reshape(-1, 2)
    out = {}
    for part in left.partitions:
        lo, hi = pixel_range(*part)
        out[part] = [right.partitions[k] for k in np.flatnonzero((bounds[:, 0] < hi) & (bounds[:, 1] > lo))]
    return out


def _read(catalog: HatsCatalog, parts: list[Partition], columns: list[str]) -> pa.Table | None:
    tables = [_finite(pq.read_table(catalog.partition_file(p), columns=columns), catalog) for p in parts]
    return pa.concat_tables(tables) if tables else None


def _cone_candidates(right: HatsCatalog, right_parts: list[Partition], part: Partition, radius_deg: float,
                     columns: list[str]) -> pa.Table | None:
    """Rows of ``right_parts`` within ``radius_deg`` of the left partition's bounding cone."""
    cand = _read(right, right_parts, columns)
    if cand is None or len(cand) == 0:
        return cand
    centre, cone = bounding_cone(part)
    v2 = unit_vectors(cand[right.ra].to_numpy(), cand[right.dec].to_numpy())
    return cand.filter(pa.array(v2 @ centre >= np.cos(np.radians(min(cone + radius_deg, 180.0)))))


def _spatial_index(rows: pa.Table, catalog: HatsCatalog) -> np.ndarray:
    """Order-29 pixel of each row: the catalog's own column (as lsdb aligns on it), else from the position."""
    if catalog.healpix in rows.column_names:
        return rows[catalog.healpix].to_numpy()
    ra, dec = rows[catalog.ra].to_numpy(), rows[catalog.dec].to_numpy()
    return np.asarray(compute_spatial_index(ra, dec), dtype=np.int64)


def match_partition(left: HatsCatalog, part: Partition, right: HatsCatalog, right_parts: list[Partition],
                    radius_deg: float, left_columns: list[str], right_columns: list[str],
                    gpu: bool = False, overlapping: list[Partition] | None = None) -> pa.Table:
    """Nearest right row within the radius of each row of one left partition (matched rows only). With
    ``overlapping`` (the right partitions overlapping it; the right catalog has a wide enough margin), left rows
    inside each of those are matched against it plus its margin; the rest against ``right_parts`` cut to the
    partition's cone. With `gpu` the match runs on the worker's GPU (cupy, imported only then)."""
    lcols = list(dict.fromkeys([left.ra, left.dec, *left_columns]))
    file_columns = pq.read_schema(left.partition_file(part)).names
    rows = _finite(pq.read_table(left.partition_file(part),
                                 columns=lcols + [left.healpix] * (left.healpix in file_columns
                                                                   and left.healpix not in lcols)), left)
    rcols = list(dict.fromkeys([right.ra, right.dec, *right_columns]))
    groups: list[tuple[np.ndarray, pa.Table | None]] = []
    rest = np.ones(len(rows), dtype=bool)
    if overlapping is not None and len(rows):
        if right.margin is None:  # the caller passes overlapping partitions only with a wide enough margin
            raise ValueError(f"{right.root}: matching against its partitions needs its margin catalog")
        h = _spatial_index(rows, left)
        in_margin = set(right.margin.partitions)
        for rpart in overlapping:
            lo, hi = pixel_range(*rpart)
            inside = rest & (h >= lo) & (h < hi)
            if inside.any():
                cand = _read(right, [rpart], rcols)
                if rpart in in_margin:
                    cand = pa.concat_tables([cand, _read(right.margin, [rpart], rcols)])
                groups.append((inside, cand))
                rest &= ~inside
    if rest.any():
        groups.append((rest, _cone_candidates(right, right_parts, part, radius_deg, rcols)))
    results = []
    for mask, cand in groups:
        if cand is None or len(cand) == 0:
            continue
        sub = rows.filter(pa.array(mask))
        v1 = unit_vectors(sub[left.ra].to_numpy(), sub[left.dec].to_numpy())
        v2 = unit_vectors(cand[right.ra].to_numpy(), cand[right.dec].to_numpy())
        found = nearest_within_xyz(to_device(v1, gpu), to_device(v2, gpu), radius_deg)
        index, separation = to_host(found.index), to_host(found.separation_deg)
        hit = np.flatnonzero(index >= 0)
        results.append(_result(left, right, sub.take(pa.array(hit)), cand.take(pa.array(index[hit])),
                               left_columns, right_columns, separation[hit]))
    if not results:
        return _empty_result(left, right, rows.schema, left_columns, right_columns)
    return pa.concat_tables(results)


def _finite(rows: pa.Table, catalog: HatsCatalog) -> pa.Table:
    """Rows with a finite position (a row without one cannot match anything)."""
    ra, dec = rows[catalog.ra].to_numpy(zero_copy_only=False), rows[catalog.dec].to_numpy(zero_copy_only=False)
    ok = np.isfinite(ra.astype(np.float64)) & np.isfinite(dec.astype(np.float64))
    return rows if ok.all() else rows.filter(pa.array(ok))


def _result(left: HatsCatalog, right: HatsCatalog, lrows: pa.Table, rrows: pa.Table, left_columns: list[str],
            right_columns: list[str], sep_deg: np.ndarray) -> pa.Table:
    cols = {f"left_{c}": lrows[c] for c in [left.ra, left.dec, *left_columns]}
    cols.update({f"right_{c}": rrows[c] for c in [right.ra, right.dec, *right_columns]})
    cols["separation_arcsec"] = pa.array(sep_deg * 3600.0, type=pa.float64())
    return pa.table(cols)


def _empty_result(left: HatsCatalog, right: HatsCatalog, left_schema: pa.Schema, left_columns: list[str],
                  right_columns: list[str]) -> pa.Table:
    rschema = pq.read_schema(right.partition_file(right.partitions[0])) if right.partitions else None
    fields = [pa.field(f"left_{c}", left_schema.field(c).type) for c in [left.ra, left.dec, *left_columns]]
    if rschema is not None:
        fields += [pa.field(f"right_{c}", rschema.field(c).type) for c in [right.ra, right.dec, *right_columns]]
    fields.append(pa.field("separation_arcsec", pa.float64()))
    return pa.schema(fields).empty_table()


def crossmatch(left: HatsCatalog, right: HatsCatalog, radius_arcsec: float, left_columns: list[str] | None = None,
               right_columns: list[str] | None = None, client: Any | None = None, gpu: bool = False) -> pa.Table:
    """Every left row's nearest right row within `radius_arcsec`; one unit of work per left partition (on the
    workers' GPUs with `gpu`). The right catalog's margin is used when it is at least `radius_arcsec` wide."""
    if radius_arcsec <= 0:
        raise ValueError(f"match radius must be positive, got {radius_arcsec} arcsec")
    radius = radius_arcsec / 3600.0
    lcols, rcols = list(left_columns or []), list(right_columns or [])
    plan = candidate_partitions(left, right, radius)
    with_margin = right.margin is not None and right.margin_arcsec >= radius_arcsec
    overlap = overlapping_partitions(left, right) if with_margin else {}
    args = [(left, part, right, plan[part], radius, lcols, rcols, gpu, overlap.get(part))
            for part in left.partitions]
    if client is not None:
        parts = client.gather([client.submit(match_partition, *a, pure=False) for a in args])
    else:
        parts = [match_partition(*a) for a in args]
    parts = [p for p in parts if p.num_columns]
    if not parts:
        return pa.table({"separation_arcsec": pa.array([], pa.float64())})
    return pa.concat_tables(parts, promote_options="permissive")


def match_stats(matches: pa.Table, n_left: int, n_right: int, radius_arcsec: float) -> dict[str, float | int]:
    """Counts, matched fraction and separation quantiles of a crossmatch."""
    sep = matches["separation_arcsec"].to_numpy() if len(matches) else np.zeros(0)
    q = np.quantile(sep, [0.5, 0.9]) if sep.size else [float("nan")] * 2
    return {"left_rows": n_left, "right_rows": n_right, "matched": int(sep.size), "radius_arcsec": radius_arcsec,
            "matched_fraction": sep.size / n_left if n_left else 0.0,
            "median_separation_arcsec": float(q[0]), "p90_separation_arcsec": float(q[1])}


def separation_histogram_png(matches: pa.Table, radius_arcsec: float) -> bytes:
    """Histogram of the match separations out to the radius, as PNG bytes."""
    fig = figure((5, 3.5))
    ax = fig.add_subplot()
    ax.hist(matches["separation_arcsec"].to_numpy(), bins=40, range=(0, radius_arcsec))
    ax.set_xlabel("separation [arcsec]")
    ax.set_ylabel("matches")
    return png(fig)
