"""The HEALPix order of a margin catalog's ring pixels, computed without importing ``hats`` (the settings check it
when they load, and every command line call loads them)."""

from __future__ import annotations

import math
from collections.abc import Iterable

MINDIST_TO_AVGSIZE = 1.6  # hats' estimate of a pixel's average size over the least distance across it


def hats_margin_order(threshold_arcsec: float) -> int:
    """``hats.pixel_math.healpix_shim.margin2order`` for one threshold: the finest order whose average pixel size
    is at least 1.6 times the threshold, clipped to 0..29."""
    avg_size_rad = math.radians(threshold_arcsec * MINDIST_TO_AVGSIZE / 3600.0)
    return min(max(int(math.log2(math.sqrt(math.pi / 3) / avg_size_rad)), 0), 29)


def margin_pixel_order(threshold_arcsec: float, partitions: Iterable[tuple[int, int]]) -> int:
    """The order of the ring pixels: one coarser than ``hats``' estimate for the threshold (which compares the
    average pixel size; pixels near the poles and base-pixel corners are narrower), finer than every partition. The
    exact distance filter keeps the margin exact whatever the ring's width."""
    if threshold_arcsec <= 0:
        raise ValueError(f"margin threshold must be positive, got {threshold_arcsec} arcsec")
    order = hats_margin_order(threshold_arcsec) - 1
    deepest = max((o for o, _ in partitions), default=0)
    if order <= deepest:
        raise ValueError(f"margin threshold {threshold_arcsec:g} arcsec is too wide for partitions of order "
                         f"{deepest} (the ring pixels would be order {order}); use a smaller threshold")
    return order
