"""DESI identifiers built from positions and running indices: TARGETID, bricks, DESINAME (vectorised)."""

from __future__ import annotations

import numpy as np

BRICK_SIZE = 0.25  # deg, a regular grid standing in for the Legacy Surveys bricks
_N_BRICK_RA = int(round(360 / BRICK_SIZE))
_N_BRICK_DEC = int(round(180 / BRICK_SIZE))
OBJID_BITS, BRICKID_SHIFT, RELEASE_SHIFT, SKY_BIT = 22, 22, 42, 59
BASE_RELEASE = 9010  # DR9 south; north is 9011


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative integers as an (n, width) ASCII array."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = values.astype(np.int64)
    for k in range(width - 1, -1, -1):
        out[:, k] = 48 + v % 10
        v = v // 10
    return out


def _chars(text: str, n: int) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8)[None, :].repeat(n, axis=0)


def _as_bytes(chars: list[np.ndarray]) -> np.ndarray:
    joined = np.ascontiguousarray(np.concatenate(chars, axis=1))
    return joined.view(f"S{joined.shape[1]}").ravel()


def _sign(negative: np.ndarray, plus: int, minus: int) -> np.ndarray:
    return np.where(negative, minus, plus).astype(np.uint8)[:, None]


def bricks(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(BRICKID int32, BRICKNAME S8) of the 0.25 deg grid cell holding each position; names like '1234p567'."""
    row = np.clip(np.floor((np.asarray(dec) + 90.0) / BRICK_SIZE).astype(np.int64), 0, _N_BRICK_DEC - 1)
    col = np.floor(np.asarray(ra) / BRICK_SIZE).astype(np.int64) % _N_BRICK_RA
    brickid = (row * _N_BRICK_RA + col + 1).astype(np.int32)
    ra_c10 = np.floor((col + 0.5) * BRICK_SIZE * 10).astype(np.int64)
    dec_c = (row + 0.5) * BRICK_SIZE - 90.0
    dec_c10 = np.floor(np.abs(dec_c) * 10).astype(np.int64)
    name = _as_bytes([_digits(ra_c10, 4), _sign(dec_c < 0, ord("p"), ord("m")), _digits(dec_c10, 3)])
    return brickid, name


def desiname(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """DESINAME (S22): 'DESI J' + RA and Dec truncated to 4 decimals, e.g. 'DESI J123.4567+12.3456'."""
    ra4 = np.trunc(np.asarray(ra) * 1e4).astype(np.int64)
    dec4 = np.trunc(np.asarray(dec) * 1e4).astype(np.int64)
    n = len(ra4)
    dot = _chars(".", n)
    parts = [
        _chars("DESI J", n), _digits(ra4 // 10000, 3), dot, _digits(ra4 % 10000, 4),
        _sign(np.asarray(dec) < 0, ord("+"), ord("-")),
        _digits(np.abs(dec4) // 10000, 2), dot, _digits(np.abs(dec4) % 10000, 4),
    ]
    return _as_bytes(parts)


def release_and_objid(index: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RELEASE int16, BRICK_OBJID int32) from the running target index: 9010/9011 (S/N) for the first 2^22."""
    index = np.asarray(index, dtype=np.int64)
    release = BASE_RELEASE + north.astype(np.int64) + 2 * (index >> OBJID_BITS)
    return release.astype(np.int16), (index & ((1 << OBJID_BITS) - 1)).astype(np.int32)


def targetid(release: np.ndarray, brickid: np.ndarray, objid: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """TARGETID = (RELEASE << 42) | (BRICKID << 22) | BRICK_OBJID, with the SKY bit 59 for sky fibres."""
    tid = (
        (release.astype(np.int64) << RELEASE_SHIFT)
        | (brickid.astype(np.int64) << BRICKID_SHIFT)
        | objid.astype(np.int64)
    )
    return tid | (sky.astype(np.int64) << SKY_BIT)
