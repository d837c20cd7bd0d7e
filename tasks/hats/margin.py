"""Margin catalogs: for each partition of a HATS catalog, the rows of other partitions within a threshold of it.

Laid out as the HATS ecosystem (hats-import, lsdb) lays margins out: a catalog of its own, partitioned at the
primary's partition pixels (one ``Npix`` file per primary partition that has neighbours that close), with its
own ``partition_info.csv``, ``_metadata`` and ``hats.properties`` (``dataproduct_type=margin``,
``hats_primary_table_url`` the primary's name, ``hats_margin_threshold`` in arcsec). lsdb opens it with
``lsdb.open_catalog(primary, margin_cache=margin)`` and crossmatches within any radius up to the threshold.

Candidates are the rows in the ring of order-``m`` pixels just outside each partition (``hats.pixel_math
.get_margin``, ``m`` the order whose pixels are about as wide as the threshold, ``hats``' ``margin2order``);
of those, a row is kept when its distance to the partition (to the boundaries of the partition's order-``m``
sub-pixels next to the row's ring pixel, sampled finely and measured to the great-circle arcs between samples) is
at most the threshold. So a margin holds every row within the
threshold and none farther (to far below a milliarcsecond).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hats.catalog import CatalogType
from hats.pixel_math import get_margin

from kernels.crossmatch import unit_vectors
from tasks.hats.index import write_partition_index
from tasks.hats.margin_order import margin_pixel_order
from tasks.hats.partition_writers import PartitionWriters
from tasks.hats.properties import HEALPIX_COLUMN, catalog_properties, write_properties
from tasks.hats.reader import Partition, partition_path

SAMPLES_PER_THRESHOLD = 4  # boundary samples per threshold length; the arcs between them are exact to ~1e-6"


@dataclass(frozen=True)
class MarginSummary:
    """What a margin build wrote."""

    path: Path
    threshold_arcsec: float
    order: int
    nrows: int
    partitions: list[Partition]
    linked: int = 0  # margin files hard-linked from the previous version
    rewritten: int = 0


def margin_name(name: str, threshold_arcsec: float) -> str:
    """The margin catalog's name and directory, as hats-import names them (``<primary>_<threshold>arcs``)."""
    return f"{name}_{threshold_arcsec:g}arcs"


def _arc_distance(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (radians) from points ``x`` to the great-circle arcs ``a``-``b`` (row-wise unit vectors)."""
    def angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.arctan2(np.linalg.norm(np.cross(u, v), axis=1), np.einsum("ij,ij->i", u, v))

    n = np.cross(a, b)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    foot = x - np.einsum("ij,ij->i", x, n)[:, None] * n
    inside = (np.einsum("ij,ij->i", np.cross(a, foot), n) >= 0) & (np.einsum("ij,ij->i", np.cross(foot, b), n) >= 0)
    to_circle = np.arcsin(np.clip(np.abs(np.einsum("ij,ij->i", x, n)), 0.0, 1.0))
    return np.where(inside, to_circle, np.minimum(angle(x, a), angle(x, b)))


def distance_to_pixel_arcsec(vectors: np.ndarray, orders: np.ndarray, pixels: np.ndarray, threshold_arcsec: float,
                             ring_order: int) -> np.ndarray:
    """Distance (arcsec) from each point, in the ring of order-``ring_order`` pixels just outside HEALPix pixel
    ``pixels[i]`` of order ``orders[i]``, to that pixel, accurate where it is near the threshold.

    The nearest point of the pixel lies in one of its order-``ring_order`` sub-pixels next to the point's own ring
    pixel (the ring pixels are wider than the threshold), so only those sub-pixels' boundaries are measured:
    sampled every threshold/4, with the arcs on both sides of the two nearest samples measured exactly. The cost
    grows with the candidates, not with the partition's perimeter.
    """
    if len(vectors) == 0:
        return np.zeros(0)
    nside = 2**ring_order
    edge_arcsec = math.degrees(hp.nside2resol(nside)) * 3600.0 * 1.5  # longer than any pixel edge
    step = max(4, math.ceil(edge_arcsec / threshold_arcsec * SAMPLES_PER_THRESHOLD))
    own = hp.vec2pix(nside, vectors[:, 0], vectors[:, 1], vectors[:, 2], nest=True)
    around = hp.get_all_neighbours(nside, own, nest=True).T  # (n, 8); -1 where a base-pixel corner has 7
    inside = (around >= 0) & (around >> 2 * (ring_order - orders[:, None]) == pixels[:, None])
    point, sub = np.nonzero(inside)
    subs, which = np.unique(around[point, sub], return_inverse=True)
    boundaries = np.ascontiguousarray(hp.boundaries(nside, subs, step=step, nest=True).reshape(
        len(subs), 3, 4 * step).transpose(0, 2, 1))  # (sub-pixels, samples counter-clockwise, 3)
    best = np.full(len(vectors), np.inf)
    for lo in range(0, len(point), 4096):  # (point, sub-pixel) pairs in chunks: memory stays small
        pts, subp = point[lo:lo + 4096], which[lo:lo + 4096]
        x, ring = vectors[pts], boundaries[subp]
        nearest = np.argpartition(-np.einsum("pj,psj->ps", x, ring), 1, axis=1)[:, :2]
        pair = np.full(len(pts), np.inf)
        rows = np.arange(len(pts))
        for i in nearest.T:
            for j in ((i - 1) % (4 * step), (i + 1) % (4 * step)):
                pair = np.minimum(pair, _arc_distance(x, ring[rows, i], ring[rows, j]))
        np.minimum.at(best, pts, pair)
    return np.degrees(best) * 3600.0


def _rings(partitions: list[Partition], order: int) -> tuple[np.ndarray, np.ndarray]:
    """Order-``order`` pixels bordering each partition from outside, sorted, with the partition index of each."""
    pixels, owners = [], []
    for index, (o, p) in enumerate(partitions):
        ring = np.asarray(get_margin(o, p, order - o), dtype=np.int64)
        pixels.append(ring)
        owners.append(np.full(ring.size, index))
    pix, own = np.concatenate(pixels), np.concatenate(owners)
    by_pixel = np.argsort(pix, kind="stable")
    return pix[by_pixel], own[by_pixel]


@dataclass(frozen=True)
class PreviousMargin:
    """The previous version's margin catalog (same threshold) and where rows were added or removed since: a
    partition kept whose ring holds none of those rows keeps its margin file."""

    path: Path
    partitions: frozenset[Partition]  # the previous version's primary partitions
    changed: np.ndarray  # pixels of order ``changed_order`` holding a row added or removed since
    changed_order: int


def _unchanged_rings(previous: PreviousMargin | None, partitions: list[Partition], order: int,
                     ring_pix: np.ndarray, ring_owner: np.ndarray) -> list[int]:
    """Indices of the partitions whose margin is the previous version's: the same pixel, and no row added or
    removed in its ring (the margin holds rows of the ring only, so it comes out the same)."""
    if previous is None:
        return []
    common = min(order, previous.changed_order)
    changed = np.unique(np.asarray(previous.changed, dtype=np.int64) >> 2 * (previous.changed_order - common))
    dirty = set(np.unique(ring_owner[np.isin(ring_pix >> 2 * (order - common), changed)]).tolist())
    return [i for i, part in enumerate(partitions) if part in previous.partitions and i not in dirty]


class MarginBuilder:
    """A margin catalog built while its primary's rows stream past: ``offer`` each row once (batches of any
    partitions, in any order; or ``offer_file`` a partition not streamed), then ``finish``.

    Rows in a ring are measured against its partition at once and only those within the threshold are kept, in
    per-partition writers of bounded buffers: memory does not grow with the catalog. With ``previous``, partitions
    whose ring did not change keep their margin file (a hard link) and get no rows.
    """

    def __init__(self, out: Path, name: str, ra: str, dec: str, partitions: list[Partition], schema: pa.Schema,
                 threshold_arcsec: float, previous: PreviousMargin | None = None):
        self.out, self.name, self.ra, self.dec, self.schema = out, name, ra, dec, schema
        self.partitions, self.threshold = partitions, threshold_arcsec
        self.order = margin_pixel_order(threshold_arcsec, partitions)
        self.part_order = np.array([o for o, _ in partitions], dtype=np.int64)
        self.part_pixel = np.array([p for _, p in partitions], dtype=np.int64)
        ring_pix, ring_owner = _rings(partitions, self.order)
        kept = _unchanged_rings(previous, partitions, self.order, ring_pix, ring_owner)
        self.linked: list[Partition] = []
        for index in kept:
            assert previous is not None  # kept is empty without a previous margin
            source = partition_path(previous.path, partitions[index])
            if source.exists():  # no file: no row within the threshold then, nor now
                target = partition_path(out, partitions[index])
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(source, target)
                self.linked.append(partitions[index])
        rebuild = ~np.isin(ring_owner, kept)
        self.ring_pix, self.ring_owner = ring_pix[rebuild], ring_owner[rebuild]
        self.writers = PartitionWriters(out, schema, 0, buffer_bytes=32 << 20)

    def reaches(self, partition: Partition) -> bool:
        """Whether a partition holds rows of a ring being rebuilt (those of others need not be offered)."""
        depth = 2 * (self.order - partition[0])
        first, last = partition[1] << depth, (partition[1] + 1) << depth
        return bool(np.searchsorted(self.ring_pix, first) < np.searchsorted(self.ring_pix, last))

    def _ring_rows(self, healpix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, owner) of every row in a ring being rebuilt, once per ring it is in."""
        pix = healpix >> 2 * (29 - self.order)
        first = np.searchsorted(self.ring_pix, pix, "left")
        per_row = np.searchsorted(self.ring_pix, pix, "right") - first  # how many rings the row's pixel borders
        rows = np.repeat(np.arange(pix.size), per_row)
        nth = np.arange(rows.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        return rows, self.ring_owner[np.repeat(first, per_row) + nth]

    def offer(self, table: pa.Table) -> None:
        """Keep the rows of ``table`` within the threshold of a partition other than their own."""
        rows, owners = self._ring_rows(table[HEALPIX_COLUMN].to_numpy())
        if rows.size:
            self._measure(table.take(pa.array(rows)), owners)

    def offer_file(self, path: Path) -> None:
        """``offer`` a partition file's rows, reading only the row groups that hold rows of a ring."""
        file = pq.ParquetFile(path)
        rows, owners = self._ring_rows(file.read(columns=[HEALPIX_COLUMN])[HEALPIX_COLUMN].to_numpy())
        if rows.size == 0:
            return
        sizes = np.array([file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)])
        group_of = np.searchsorted(np.cumsum(sizes), rows, "right")
        groups = np.unique(group_of)
        table = file.read_row_groups(groups.tolist(), columns=self.schema.names).cast(self.schema)
        read_before = np.cumsum(sizes[groups]) - sizes[groups]  # where each group read starts in ``table``
        local = rows - (np.cumsum(sizes) - sizes)[group_of] + read_before[np.searchsorted(groups, group_of)]
        self._measure(table.take(pa.array(local)), owners)

    def _measure(self, candidates: pa.Table, owners: np.ndarray) -> None:
        vectors = unit_vectors(candidates[self.ra].to_numpy(), candidates[self.dec].to_numpy())
        near = distance_to_pixel_arcsec(vectors, self.part_order[owners], self.part_pixel[owners], self.threshold,
                                        self.order) <= self.threshold  # all owners at once
        for owner in np.unique(owners[near]):
            mine = np.flatnonzero(near & (owners == owner))
            self.writers.add(self.partitions[owner], candidates.take(pa.array(mine)))

    def abort(self) -> None:
        """Close the margin's files after a failed build (see ``PartitionWriters.abort``)."""
        self.writers.abort()

    def finish(self, partitions: list[Partition] | None = None) -> MarginSummary:
        """Close the files and write the index and ``hats.properties`` (last). ``partitions``: the primary's
        partitions as written, when some planned ones came out empty (their margin files are dropped)."""
        built = self.writers.close()
        final = set(self.partitions if partitions is None else partitions)
        for part in (set(built) | set(self.linked)) - final:  # a linked one too: its rows may all have moved away
            partition_path(self.out, part).unlink()
        built = [p for p in built if p in final]
        self.linked = [p for p in self.linked if p in final]
        written = sorted(self.linked + built)
        nrows = write_partition_index(self.out, self.schema, written)
        write_properties(self.out, catalog_properties(
            self.out, margin_name(self.name, self.threshold), nrows, self.ra, self.dec, CatalogType.MARGIN,
            primary_catalog=self.name, margin_threshold=self.threshold, hats_margin_order=self.order,
        ))
        return MarginSummary(self.out, self.threshold, self.order, nrows, written, len(self.linked), len(built))


def write_margin_catalog(primary: Path, out: Path, name: str, ra: str, dec: str, partitions: list[Partition],
                         schema: pa.Schema, threshold_arcsec: float,
                         previous: PreviousMargin | None = None) -> MarginSummary:
    """Write the margin catalog of the HATS catalog at ``primary`` (partitions ``partitions``) into ``out``,
    reading the partition files that reach a ring being built; its ``hats.properties`` goes last."""
    builder = MarginBuilder(out, name, ra, dec, partitions, schema, threshold_arcsec, previous)
    for part in partitions:
        if builder.reaches(part):
            builder.offer_file(partition_path(primary, part))
    return builder.finish()
