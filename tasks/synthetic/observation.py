"""How each target was observed in one program: Redrock results, exposures (EXP_FIBERMAP), coadd summary, TSNR2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .columns import TSNR2_TEMPLATES
from .population import QSO, SKY, STARS, Columns

ZWARN = {"SKY": 1 << 0, "LITTLE_COVERAGE": 1 << 1, "SMALL_DELTA_CHI2": 1 << 2, "NEGATIVE_MODEL": 1 << 3,
         "MANY_OUTLIERS": 1 << 4, "BAD_TARGET": 1 << 8, "NODATA": 1 << 9, "POORDATA": 1 << 11,
         "LOW_DEL_CHI2": 1 << 16, "BAD_SPECQA": 1 << 18, "BAD_PETALQA": 1 << 19}
# Warning mix of the ~5% failed fits (bit combination, share).
_BAD_MIX = (
    (ZWARN["SMALL_DELTA_CHI2"], 0.40), (ZWARN["LITTLE_COVERAGE"], 0.12), (ZWARN["NEGATIVE_MODEL"], 0.05),
    (ZWARN["MANY_OUTLIERS"], 0.05), (ZWARN["BAD_TARGET"], 0.04), (ZWARN["NODATA"], 0.05),
    (ZWARN["POORDATA"], 0.04), (ZWARN["BAD_SPECQA"], 0.10), (ZWARN["BAD_PETALQA"], 0.10),
    (ZWARN["SMALL_DELTA_CHI2"] | ZWARN["LOW_DEL_CHI2"], 0.05),
)
_FAIL_RATE = np.array([0.02, 0.03, 0.09, 0.08, 0.01, 0.01, 0.3])  # per class; SKY rows always carry the SKY bit
_DCHI2_MEDIAN = np.array([400.0, 150.0, 60.0, 300.0, 2000.0, 3000.0, 5.0])
FIBERSTATUS = {"STUCKPOSITIONER": 1 << 1, "RESTRICTED": 1 << 3, "BADPOSITION": 1 << 9, "BADFIBER": 1 << 16,
               "BADAMPB": 1 << 22}
_FIBERSTATUS_MIX = ((0, 0.965), (FIBERSTATUS["RESTRICTED"], 0.015), (FIBERSTATUS["BADFIBER"], 0.005),
                    (FIBERSTATUS["STUCKPOSITIONER"], 0.005), (FIBERSTATUS["BADPOSITION"], 0.005),
                    (FIBERSTATUS["BADAMPB"], 0.005))
_BAD_FOR_COADD = ~np.int64(FIBERSTATUS["RESTRICTED"])  # RESTRICTED (8) counts as good
_MJD0 = np.datetime64("1858-11-17", "D")

# Per template: (S/N)^2 per 1000 s of dark time and its split over the b, r, z cameras.
_TSNR2_RATE = {"GPBDARK": 30.0, "ELG": 110.0, "GPBBRIGHT": 12.0, "LYA": 50.0, "BGS": 1100.0,
               "GPBBACKUP": 3.5, "QSO": 40.0, "LRG": 80.0}
_TSNR2_SPLIT = {"GPBDARK": (0.2, 0.5, 0.3), "ELG": (0.1, 0.4, 0.5), "GPBBRIGHT": (0.2, 0.5, 0.3),
                "LYA": (0.95, 0.05, 0.0), "BGS": (0.3, 0.4, 0.3), "GPBBACKUP": (0.2, 0.5, 0.3),
                "QSO": (0.3, 0.35, 0.35), "LRG": (0.05, 0.35, 0.6)}


@dataclass(frozen=True)
class ProgramInfo:
    """Observing conditions of one (survey, program)."""

    survey: str
    program: str
    share: float  # of all targets
    exptime: tuple[float, float]  # mean, sd [s] per exposure
    depth: float  # TSNR2 per second relative to dark time
    noise: float  # spectral noise relative to a 1000 s dark exposure
    mjd: tuple[int, int]  # first and last observing day
    tile_base: int


_EXPTIME = {"dark": (1000.0, 150.0), "bright": (300.0, 80.0), "backup": (90.0, 30.0), "other": (600.0, 150.0)}
_DEPTH = {"dark": 1.0, "bright": 0.45, "backup": 0.2, "other": 0.7}
_NOISE = {"dark": 1.0, "bright": 1.8, "backup": 3.0, "other": 1.3}
_MJD = {"cmx": (59000, 59197), "sv1": (59197, 59289), "sv2": (59289, 59309), "sv3": (59309, 59347),
        "main": (59348, 59744), "special": (59348, 59744)}
_TILE_BASE_SURVEY = {"main": 0, "sv3": 100_000, "sv1": 200_000, "sv2": 300_000, "cmx": 400_000, "special": 500_000}
_TILE_BASE_PROGRAM = {"dark": 1000, "bright": 20_000, "backup": 40_000, "other": 60_000}


def program_info(survey: str, program: str, share: float) -> ProgramInfo:
    """Conditions of a DR1 program (dark/bright/backup/other of cmx, sv1-3, main, special)."""
    return ProgramInfo(
        survey, program, share, _EXPTIME[program], _DEPTH[program], _NOISE[program], _MJD[survey],
        _TILE_BASE_SURVEY[survey] + _TILE_BASE_PROGRAM[program],
    )


# --- Redrock -----------------------------------------------------------------------------------------------------
def draw_zwarn(cls: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ZWARN per row: ~95% 0, the rest a DR1-like mix of warning bits; sky fibres carry the SKY bit."""
    n = len(cls)
    bits = np.array([b for b, _ in _BAD_MIX], dtype=np.int64)
    share = np.array([s for _, s in _BAD_MIX])
    failed = rng.random(n) < _FAIL_RATE[cls]
    zwarn = np.where(failed, bits[rng.choice(len(bits), n, p=share / share.sum())], 0)
    return np.where(cls == SKY, zwarn | ZWARN["SKY"], zwarn).astype(np.int64)


def observe_redshift(cls: np.ndarray, z_true: np.ndarray, zwarn: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(Z, ZERR) per row: the true redshift plus noise; 30% of failed galaxy/QSO fits are catastrophic."""
    n = len(cls)
    scale = np.where(cls == QSO, 2.5e-4, np.where(np.isin(cls, STARS), 5e-6, 1.5e-5))
    zerr = scale * (1.0 + np.clip(z_true, 0, None)) * rng.lognormal(0.0, 0.4, n) * np.where(zwarn != 0, 5.0, 1.0)
    z = z_true + rng.normal(0.0, 1.0, n) * zerr
    catastrophic = (zwarn & ~np.int64(ZWARN["SKY"]) != 0) & ~np.isin(cls, STARS) & (rng.random(n) < 0.3)
    z = np.where(catastrophic, rng.uniform(0.0, 1.7, n), z)
    return z, zerr


def fit_quality(cls: np.ndarray, z: np.ndarray, zwarn: np.ndarray, subtype: np.ndarray, rng: np.random.Generator
                ) -> Columns:
    """The rest of a Redrock REDSHIFTS row: CHI2, COEFF, NPIXELS, SPECTYPE, SUBTYPE, NCOEFF, DELTACHI2."""
    n = len(cls)
    stars = np.isin(cls, STARS)
    spectype = np.where(stars, b"STAR", np.where(cls == QSO, b"QSO", b"GALAXY")).astype("S6")
    ncoeff = np.where(stars, 5, np.where(cls == QSO, 4, 10))
    coeff = rng.normal(0.0, 1.0, (n, 10)) * (np.arange(10)[None, :] < ncoeff[:, None])
    coeff[:, 0] = np.abs(coeff[:, 0]) + 0.1
    nodata = zwarn & ZWARN["NODATA"] != 0
    npixels = np.where(nodata, 0, rng.integers(7700, 7931, n))
    small = zwarn & ZWARN["SMALL_DELTA_CHI2"] != 0
    good_dchi2 = np.maximum(rng.lognormal(np.log(_DCHI2_MEDIAN[cls]), 0.8), 9.5 + rng.uniform(0, 5, n))
    failed_dchi2 = rng.lognormal(np.log(30.0), 1.0, n)
    dchi2 = np.where(small, rng.uniform(0.0, 9.0, n), np.where(zwarn == 0, good_dchi2, failed_dchi2))
    qso_sub = np.where(z < 1.5, b"LOZ", b"HIZ")
    return {
        "CHI2": npixels * rng.lognormal(0.0, 0.03, n) * np.where(zwarn != 0, 1.2, 1.0),
        "COEFF": coeff,
        "NPIXELS": npixels.astype(np.int64),
        "SPECTYPE": spectype,
        "SUBTYPE": np.where(cls == QSO, qso_sub, np.where(stars, subtype, b"")).astype("S20"),
        "NCOEFF": ncoeff.astype(np.int64),
        "DELTACHI2": dchi2,
    }


# --- Exposures and coadd summary ------------------------------------------------------------------------------------
def _yyyymmdd(day: np.ndarray) -> np.ndarray:
    date = _MJD0 + day.astype("timedelta64[D]")
    year = date.astype("datetime64[Y]").astype(np.int64) + 1970
    month = date.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (date - date.astype("datetime64[M]")).astype(np.int64) + 1
    return (year * 10000 + month * 100 + dom).astype(np.int32)


def _segment_first(flag: np.ndarray) -> np.ndarray:
    """Index of the latest True at or before each position (flag[0] must be True)."""
    return np.maximum.accumulate(np.where(flag, np.arange(len(flag)), 0))


def exposures(rows: Columns, info: list[ProgramInfo], rng: np.random.Generator) -> tuple[Columns, Columns]:
    """EXP_FIBERMAP rows (1-4 per target row, '_ROW' = row index) and the coadd summary columns per row.

    Exposures come in tiles (a later exposure is a new tile half the time, on a later night); fibre placement is
    per tile. Reads rows['_PROG'], TARGET_RA/DEC, PLATE_RA/DEC, PRIORITY_INIT, SUBPRIORITY, HEALPIX, '_CLASS'.
    """
    n = len(rows["_PROG"])
    prog = rows["_PROG"]
    qso = rows["_CLASS"] == QSO
    nexp = np.where(qso, 1 + rng.binomial(3, 0.5, n), rng.choice([1, 2, 3, 4], n, p=[0.55, 0.3, 0.1, 0.05]))
    start = np.concatenate([[0], np.cumsum(nexp)[:-1]])
    row = np.repeat(np.arange(n), nexp)
    e = len(row)
    k = np.arange(e) - start[row]
    first = k == 0

    new_tile = first | (rng.random(e) < 0.5)
    tile_pass = np.cumsum(new_tile) - np.cumsum(new_tile)[start][row]
    new_night = new_tile & ~first
    step = np.where(new_night, rng.integers(1, 40, e), 0)
    lo, hi = (np.array([p.mjd[j] for p in info])[prog] for j in (0, 1))
    first_day = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
    day = np.minimum(first_day[row] + np.cumsum(step) - np.cumsum(step)[start][row], hi[row])
    mean, sd = (np.array([p.exptime[j] for p in info])[prog][row] for j in (0, 1))
    exptime = np.clip(rng.normal(mean, sd), 0.3 * mean, 3.0 * mean)
    mjd = day + 1.125 + rng.uniform(0.0, 0.3, e) + 0.014 * k
    tile_first = _segment_first(new_tile)

    petal = rng.integers(0, 10, e)[tile_first]
    device = rng.integers(0, 524, e)[tile_first]
    fiber = (petal * 500 + rng.integers(0, 500, e)[tile_first]).astype(np.int32)
    radius, angle = 410.0 * np.sqrt(rng.random(e)), np.radians(36.0 * (petal + rng.random(e)))
    fa_x, fa_y = (radius * np.cos(angle))[tile_first], (radius * np.sin(angle))[tile_first]
    codes = np.array([c for c, _ in _FIBERSTATUS_MIX], dtype=np.int64)
    share = np.array([s for _, s in _FIBERSTATUS_MIX])
    fiberstatus = codes[rng.choice(len(codes), e, p=share)][tile_first]
    in_coadd = (fiberstatus & _BAD_FOR_COADD) == 0
    delta_x, delta_y = rng.normal(0, 0.006, e), rng.normal(0, 0.006, e)
    # Fibre positions as on-sky offsets [arcsec] from the target, so means and scatters keep full precision.
    off_ra, off_dec = rng.normal(0, 0.08, e), rng.normal(0, 0.08, e)
    cosd = np.cos(np.radians(rows["TARGET_DEC"]))
    fiber_ra = (rows["TARGET_RA"][row] + off_ra / 3600.0 / cosd[row]) % 360.0
    fiber_dec = rows["TARGET_DEC"][row] + off_dec / 3600.0
    psf = rng.uniform(0.55, 0.80, e)
    pix8 = rows["HEALPIX"][row] >> 6
    tile_base = np.array([p.tile_base for p in info])[prog][row]

    exp: Columns = {
        "_ROW": row,
        "TARGETID": rows["TARGETID"][row],
        "PRIORITY": rows["PRIORITY_INIT"][row] + 2 * tile_pass,
        "SUBPRIORITY": rows["SUBPRIORITY"][row],
        "NIGHT": _yyyymmdd(day),
        "EXPID": (100_000 + (mjd - 59_000.0) * 200.0).astype(np.int32),
        "MJD": mjd,
        "TILEID": (tile_base + 1000 * tile_pass + pix8).astype(np.int32),
        "EXPTIME": exptime,
        "PETAL_LOC": petal.astype(np.int16),
        "DEVICE_LOC": device.astype(np.int32),
        "LOCATION": (petal * 1000 + device).astype(np.int64),
        "FIBER": fiber,
        "FIBERSTATUS": fiberstatus.astype(np.int32),
        "FIBERASSIGN_X": fa_x,
        "FIBERASSIGN_Y": fa_y,
        "LAMBDA_REF": np.full(e, 5400.0),
        "PLATE_RA": rows["PLATE_RA"][row],
        "PLATE_DEC": rows["PLATE_DEC"][row],
        "NUM_ITER": np.where(rng.random(e) < 0.9, 2, 3).astype(np.int64),
        "FIBER_X": fa_x + rng.normal(0, 0.003, e),
        "FIBER_Y": fa_y + rng.normal(0, 0.003, e),
        "DELTA_X": delta_x,
        "DELTA_Y": delta_y,
        "FIBER_RA": fiber_ra,
        "FIBER_DEC": fiber_dec,
        "PSF_TO_FIBER_SPECFLUX": psf,
        "IN_COADD_B": in_coadd,
        "IN_COADD_R": in_coadd,
        "IN_COADD_Z": in_coadd,
    }

    def mean_of(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x, start) / nexp

    def std_of(x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.clip(mean_of(x**2) - mean_of(x) ** 2, 0.0, None))

    nights_changed = np.concatenate([[False], day[1:] != day[:-1]]) & ~first
    summary: Columns = {
        "COADD_FIBERSTATUS": np.bitwise_and.reduceat(fiberstatus, start).astype(np.int32),
        "COADD_NUMEXP": nexp.astype(np.int16),
        "COADD_EXPTIME": np.add.reduceat(exptime, start),
        "COADD_NUMNIGHT": (1 + np.add.reduceat(nights_changed.astype(np.int64), start)).astype(np.int16),
        "COADD_NUMTILE": (np.maximum.reduceat(tile_pass, start) + 1).astype(np.int16),
        "MEAN_DELTA_X": mean_of(delta_x),
        "RMS_DELTA_X": np.sqrt(mean_of(delta_x**2)),
        "MEAN_DELTA_Y": mean_of(delta_y),
        "RMS_DELTA_Y": np.sqrt(mean_of(delta_y**2)),
        "MEAN_PSF_TO_FIBER_SPECFLUX": mean_of(psf),
        "MEAN_FIBER_RA": (rows["TARGET_RA"] + mean_of(off_ra) / 3600.0 / cosd) % 360.0,
        "STD_FIBER_RA": std_of(off_ra),
        "MEAN_FIBER_DEC": rows["TARGET_DEC"] + mean_of(off_dec) / 3600.0,
        "STD_FIBER_DEC": std_of(off_dec),
        "MIN_MJD": np.minimum.reduceat(mjd, start),
        "MAX_MJD": np.maximum.reduceat(mjd, start),
        "MEAN_MJD": mean_of(mjd),
    }
    return exp, summary


def tsnr2(exptime: np.ndarray, depth: np.ndarray, zwarn: np.ndarray, rng: np.random.Generator) -> Columns:
    """The 32 TSNR2_* columns: per camera from exposure time and program depth, totals summed over b, r, z."""
    n = len(exptime)
    scale = exptime / 1000.0 * depth * rng.lognormal(0.0, 0.15, n)
    scale *= np.where(zwarn & ZWARN["NODATA"] != 0, 0.02, 1.0)
    out: Columns = {}
    for template in TSNR2_TEMPLATES:
        total = np.zeros(n)
        for camera, share in zip("BRZ", _TSNR2_SPLIT[template]):
            value = (_TSNR2_RATE[template] * max(share, 1e-3) * scale * rng.lognormal(0.0, 0.03, n)).astype(np.float32)
            out[f"TSNR2_{template}_{camera}"] = value
            total += value
        out[f"TSNR2_{template}"] = total
    return out


def line_sigma(exptime: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """1-sigma emission-line flux error [1e-17 erg/s/cm2] for a coadd of this depth."""
    return 1.2 * noise * np.sqrt(1000.0 / exptime)

