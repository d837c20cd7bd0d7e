"""Add derived columns to a batch through the array kernels, and check DESI's HEALPIX column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kernels.cosmology import comoving_distance, radec_to_xyz
from kernels.healpix import HEALPIX_29_ORDER, healpix_29, parent_pixel
from tasks.ingest.products import Product

DESI_HEALPIX_ORDER = 6  # nside 64, NESTED


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table[name].to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def healpix_mismatches(enriched: pa.Table) -> tuple[int, list[tuple[int, int, int]]]:
    """Rows whose HEALPIX is not the nside-64 NESTED pixel of their position (the parent of ``_healpix_29``).

    Returns the count and up to 3 examples as (TARGETID, HEALPIX, pixel of the position).
    """
    h29 = enriched["_healpix_29"].to_numpy()
    want = parent_pixel(h29, HEALPIX_29_ORDER, DESI_HEALPIX_ORDER)  # keeps -1 for invalid positions
    got = enriched["HEALPIX"].to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(got != want)
    ids = enriched["TARGETID"].to_numpy(zero_copy_only=False)
    return int(bad.size), [(int(ids[i]), int(got[i]), int(want[i])) for i in bad[:3]]


def enrich(table: pa.Table, product: Product) -> pa.Table:
    """Append DIST_MPC, DIST_MPCH, X/Y/Z_MPCH (Planck18 comoving) and _healpix_29 to a product batch."""
    ra, dec = _column(table, product.ra), _column(table, product.dec)
    if product.redshift:
        z = _column(table, product.redshift)
        dist = comoving_distance(z, unit="Mpc")
        dist_h = comoving_distance(z, unit="Mpc/h")
        x, y, zc = radec_to_xyz(ra, dec, dist_h)
        for name, values in (("DIST_MPC", dist), ("DIST_MPCH", dist_h), ("X_MPCH", x), ("Y_MPCH", y),
                             ("Z_MPCH", zc)):
            table = table.append_column(name, pa.array(values, type=pa.float64()))
    return table.append_column("_healpix_29", pa.array(healpix_29(ra, dec), type=pa.int64()))
