"""Who is targeted: classes and their mix per program, n(z), sky positions with clusters, photometry, masks.

All draws are vectorised over one sky block and take the block's own random generator.
"""

from __future__ import annotations

from functools import cache

import healpy as hp
import numpy as np

from kernels.cosmology import comoving_distance, radec_to_xyz, redshift_at_distance, xyz_to_radec

from .footprint import AREA_ORDER, area_map, galactic_latitude, in_footprint, in_ngc

Columns = dict[str, np.ndarray]

CLASSES = ("BGS", "LRG", "ELG", "QSO", "MWS", "STD", "SKY")
BGS, LRG, ELG, QSO, MWS, STD, SKY = range(len(CLASSES))
STARS = (MWS, STD)

# Class fractions per program, DR1-like: bright = BGS + MWS, dark = LRG/ELG/QSO, backup = stars (a few turn out
# to be galaxies or quasars); each program also carries flux standards and a few sky fibres.
CLASS_MIX: dict[str, dict[int, float]] = {
    "bright": {BGS: 0.70, MWS: 0.24, STD: 0.05, SKY: 0.01},
    "dark": {LRG: 0.27, ELG: 0.49, QSO: 0.18, STD: 0.05, SKY: 0.01},
    "backup": {MWS: 0.93, STD: 0.04, QSO: 0.01, BGS: 0.01, SKY: 0.01},
    "other": {BGS: 0.25, LRG: 0.2, ELG: 0.2, QSO: 0.15, MWS: 0.15, STD: 0.04, SKY: 0.01},
}
# Dual targets: red BGS galaxies that also pass the LRG cuts are observed in dark time too, and the other way
# round; (kind of the other program, affinity).
DUAL_TARGETS = {BGS: ("dark", 0.15), LRG: ("bright", 0.15)}
# Share of all targets per (survey, program), after the DR1 FastSpecFit row counts (main dark/bright/backup)
# and SV3; anything else gets a small share.
PROGRAM_SHARE = {
    ("main", "dark"): 0.52, ("main", "bright"): 0.36, ("main", "backup"): 0.04,
    ("sv3", "dark"): 0.045, ("sv3", "bright"): 0.035,
}
DEFAULT_SHARE = 0.02

CLUSTER_FRACTION = {BGS: 0.3, LRG: 0.3, ELG: 0.1}
CLUSTER_SIGMA = (1.0, 3.0)  # h^-1 Mpc, Gaussian blob width
CLUSTER_RICHNESS = 5.0  # mean members beyond the first two

# Targeting bits (desitarget main masks; SV3 uses the same positions for these).
DESI = {"LRG": 1 << 0, "ELG": 1 << 1, "QSO": 1 << 2, "ELG_LOP": 1 << 5, "ELG_HIP": 1 << 6, "ELG_VLO": 1 << 7,
        "SKY": 1 << 32, "STD_FAINT": 1 << 33, "STD_WD": 1 << 34, "STD_BRIGHT": 1 << 35,
        "BGS_ANY": 1 << 60, "MWS_ANY": 1 << 61, "SCND_ANY": 1 << 62}
BGS_BITS = {"BGS_FAINT": 1 << 0, "BGS_BRIGHT": 1 << 1, "BGS_WISE": 1 << 2, "BGS_FAINT_HIP": 1 << 3}
MWS_BITS = {"MWS_BROAD": 1 << 0, "MWS_WD": 1 << 1, "MWS_NEARBY": 1 << 2, "MWS_BHB": 1 << 6}
OBSCONDITIONS = np.array([4, 1, 3, 1, 4, 15, 15], dtype=np.int32)  # per class; DARK=1 GRAY=2 BRIGHT=4 BACKUP=8
PRIORITY_INIT = np.array([2100, 3200, 3000, 3400, 1500, 0, 0], dtype=np.int64)
NUMOBS_INIT = np.array([2, 2, 2, 4, 1, 1, 1], dtype=np.int64)
FA_TYPE = np.array([1, 1, 1, 1, 1, 2, 4], dtype=np.uint8)  # science, standard, sky
OBJTYPE = np.array([b"TGT"] * 6 + [b"SKY"])

STAR_TYPES = np.array([b"A", b"B", b"CV", b"F", b"G", b"K", b"M", b"WD"])
_STAR_WEIGHT = np.array([0.05, 0.01, 0.005, 0.22, 0.28, 0.28, 0.14, 0.015])
_STAR_COLOR = np.array([(-0.1, -0.15), (-0.25, -0.3), (0.1, 0.1), (0.3, 0.1), (0.45, 0.2), (0.8, 0.4),
                        (1.4, 1.2), (-0.2, -0.35)])  # (g-r, r-z)
_STAR_ABSMAG = np.array([1.0, -1.0, 8.0, 3.5, 4.8, 6.5, 10.0, 11.5])
# MW extinction coefficients A_band / E(B-V) (DECam g, r, z; WISE W1, W2) and typical 1-sigma depths [nmgy].
_EXTINCTION = np.array([3.214, 2.165, 1.211, 0.184, 0.113])
_DEPTH = np.array([0.05, 0.08, 0.2, 1.0, 2.5])
_NORTH_DEC = 32.375


# --- Redshift distributions ----------------------------------------------------------------------------------
def _nz_shape(cls: int, z: np.ndarray) -> np.ndarray:
    if cls == BGS:
        return z**2 * np.exp(-((z / 0.165) ** 1.5))
    if cls == LRG:
        return np.exp(-0.5 * ((z - 0.75) / 0.17) ** 2)
    if cls == ELG:
        return np.exp(-0.5 * ((z - 1.1) / 0.25) ** 2) * (1 + 0.3 * (z - 1.1))
    if cls == QSO:
        return np.exp(-0.5 * ((z - 1.6) / 0.7) ** 2) + 0.3 * np.exp(-0.5 * ((z - 2.5) / 0.5) ** 2)
    return np.ones_like(z)  # SKY: Redrock's fit to sky spectra lands anywhere


_Z_RANGE = {BGS: (0.005, 0.6), LRG: (0.4, 1.1), ELG: (0.6, 1.6), QSO: (0.5, 4.0), SKY: (0.01, 1.6)}


@cache
def _nz_table(cls: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(*_Z_RANGE[cls], 4001)
    pdf = np.clip(_nz_shape(cls, z), 0, None)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]))])
    return cdf / cdf[-1], z


def draw_redshift(cls: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """True redshift per target from its class n(z); stars get radial velocities (|z| < 0.002)."""
    z = np.empty(len(cls))
    u = rng.random(len(cls))
    for c in np.unique(cls):
        sel = cls == c
        if c in STARS:  # disc stars, plus a 2% tail of fast halo stars
            k = int(sel.sum())
            z[sel] = np.where(rng.random(k) < 0.02, rng.uniform(-0.0019, 0.0019, k),
                              np.clip(rng.normal(0.0, 1.2e-4, k), -0.0019, 0.0019))
        else:
            cdf, grid = _nz_table(int(c))
            z[sel] = np.interp(u[sel], cdf, grid)
    return z


def program_affinity(kind: str, cls: int) -> float:
    """How readily a program of this kind observes a target of this class: its mix share, plus dual targets."""
    dual_kind, weight = DUAL_TARGETS.get(cls, (None, 0.0))
    return CLASS_MIX[kind].get(cls, 0.0) + (weight if kind == dual_kind else 0.0)


def draw_classes(kind: list[str], program: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Target class per target from its program's class mix (kind[p] = 'bright' | 'dark' | ...)."""
    cls = np.empty(len(program), dtype=np.int8)
    for p, k in enumerate(kind):
        sel = program == p
        mix = CLASS_MIX[k]
        weights = np.array(list(mix.values()))
        cls[sel] = rng.choice(np.array(list(mix.keys())), size=int(sel.sum()), p=weights / weights.sum())
    return cls


# --- Sky positions -------------------------------------------------------------------------------------------
def sample_positions(block: int, order: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n positions uniform over the footprint part of one NESTED pixel (order <= 8), by rejection."""
    _, touches = area_map()
    shift = 2 * (AREA_ORDER - order)
    children = np.arange(block << shift, (block + 1) << shift)
    children = children[touches[children]]
    ra, dec = np.empty(0), np.empty(0)
    while len(ra) < n:
        want = n - len(ra)
        k = int(want * 1.5) + 16
        child = rng.choice(children, k)
        fine = (child << (2 * (29 - AREA_ORDER))) + rng.integers(0, 1 << (2 * (29 - AREA_ORDER)), k)
        r, d = hp.pix2ang(1 << 29, fine, nest=True, lonlat=True)
        keep = in_footprint(r, d)
        ra, dec = np.concatenate([ra, r[keep][:want]]), np.concatenate([dec, d[keep][:want]])
    return ra, dec


def place_clusters(
    cls: np.ndarray, ra: np.ndarray, dec: np.ndarray, z: np.ndarray, block: int, order: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Move a fraction of galaxies into Gaussian blobs (in comoving space) inside the block; returns a flag.

    Members that would leave the block or the footprint are redrawn a few times, then left in the field, so
    every row stays in its block's sky area (which lets a block be regenerated on its own).
    """
    member = np.zeros(len(cls), dtype=bool)
    for c, fraction in CLUSTER_FRACTION.items():
        idx = np.flatnonzero(cls == c)
        idx = idx[rng.random(len(idx)) < fraction]
        if len(idx) < 2:
            continue
        # Consecutive runs of `idx` form clusters; the first of each run is its centre.
        starts = np.concatenate([[0], np.cumsum(2 + rng.poisson(CLUSTER_RICHNESS, len(idx)))])
        starts = starts[starts < len(idx) - 1]
        group = np.searchsorted(starts, np.arange(len(idx)), side="right") - 1
        heads = idx[starts]
        centers = np.stack(radec_to_xyz(ra[heads], dec[heads], comoving_distance(z[heads], "Mpc/h")), axis=-1)
        sigma = rng.uniform(*CLUSTER_SIGMA, len(heads))
        is_head = np.zeros(len(idx), dtype=bool)
        is_head[starts] = True
        todo, todo_group = idx[~is_head], group[~is_head]
        for _ in range(10):
            if len(todo) == 0:
                break
            xyz = centers[todo_group] + rng.normal(0.0, 1.0, (len(todo), 3)) * sigma[todo_group, None]
            r_, d_, dist = xyz_to_radec(*xyz.T)
            ok = in_footprint(r_, d_) & (hp.ang2pix(1 << order, r_, d_, nest=True, lonlat=True) == block)
            ra[todo[ok]], dec[todo[ok]], z[todo[ok]] = r_[ok], d_[ok], redshift_at_distance(dist[ok], "Mpc/h")
            member[todo[ok]] = True
            todo, todo_group = todo[~ok], todo_group[~ok]
        member[heads] = True
    return member


# --- Photometry --------------------------------------------------------------------------------------------------
def _mag_to_nmgy(mag: np.ndarray) -> np.ndarray:
    return 10.0 ** (-0.4 * (mag - 22.5))


def photometry(
    cls: np.ndarray, z: np.ndarray, ra: np.ndarray, dec: np.ndarray, rng: np.random.Generator,
    backup: np.ndarray,
) -> Columns:
    """Legacy-Surveys-like imaging columns per target, plus internal true fluxes ('_TRUE_*') and flags.

    Colours follow the class (QSO and type-2 AGN are red in W1-W2); fluxes are in nanomaggies, observed through
    Milky Way dust, with noise matching DR9 depths.
    """
    n = len(cls)
    r = np.zeros(n)
    gr, rz, zw1, w1w2 = (np.zeros(n) for _ in range(4))
    red = np.zeros(n, dtype=bool)
    agn = np.zeros(n, dtype=bool)
    subtype = np.full(n, b"", dtype="S20")
    stype = np.zeros(n, dtype=np.int64)

    sel = cls == BGS
    k = int(sel.sum())
    red[sel] = rng.random(k) < 0.4
    r[sel] = np.clip(17.8 + 2.5 * np.log10(z[sel] / 0.15) + rng.normal(0, 0.6, k), 12.0, 20.175)
    gr[sel] = np.where(red[sel], 0.85, 0.45) + 0.9 * z[sel] + rng.normal(0, 0.1, k)
    rz[sel] = np.where(red[sel], 0.45, 0.3) + 0.7 * z[sel] + rng.normal(0, 0.08, k)
    zw1[sel] = rng.normal(0.0, 0.3, k)
    w1w2[sel] = rng.normal(-0.55, 0.1, k)

    sel = cls == LRG
    k = int(sel.sum())
    red[sel] = rng.random(k) < 0.9
    zmag = np.clip(20.0 + 3.0 * (z[sel] - 0.75) + rng.normal(0, 0.4, k), 17.5, 21.6)
    rz[sel] = 1.3 + 1.0 * (z[sel] - 0.5) + rng.normal(0, 0.15, k)
    r[sel] = zmag + rz[sel]
    gr[sel] = np.clip(1.5 + rng.normal(0, 0.2, k), 0.8, 2.5)
    zw1[sel] = 1.4 + rng.normal(0, 0.3, k)
    w1w2[sel] = rng.normal(-0.45, 0.1, k)

    sel = cls == ELG
    k = int(sel.sum())
    gmag = np.clip(rng.normal(23.0, 0.3, k), 21.5, 23.4)
    gr[sel] = rng.normal(0.25, 0.12, k)
    r[sel] = gmag - gr[sel]
    rz[sel] = 0.55 + 0.2 * (z[sel] - 1.0) + rng.normal(0, 0.15, k)
    zw1[sel] = rng.normal(0.4, 0.4, k)
    w1w2[sel] = rng.normal(-0.3, 0.15, k)

    sel = cls == QSO
    k = int(sel.sum())
    r[sel] = np.clip(rng.normal(21.5, 0.7, k), 17.0, 22.7)
    gr[sel] = rng.normal(0.15, 0.12, k) + 0.5 * (z[sel] > 2.8)
    rz[sel] = rng.normal(0.25, 0.15, k)
    zw1[sel] = rng.normal(1.2, 0.3, k)
    w1w2[sel] = rng.normal(0.35, 0.15, k)

    sel = np.isin(cls, STARS)
    k = int(sel.sum())
    stype[sel] = np.where(cls[sel] == STD, 3, rng.choice(len(STAR_TYPES), k, p=_STAR_WEIGHT))
    subtype[sel] = STAR_TYPES[stype[sel]]
    r[sel] = np.where(backup[sel], np.clip(rng.normal(14.5, 1.0, k), 11.0, 17.0),
                      np.clip(rng.normal(18.0, 0.8, k), 15.0, 20.0))
    gr[sel] = _STAR_COLOR[stype[sel], 0] + rng.normal(0, 0.05, k)
    rz[sel] = _STAR_COLOR[stype[sel], 1] + rng.normal(0, 0.05, k)
    zw1[sel] = -0.6 + 0.5 * rz[sel]
    w1w2[sel] = rng.normal(-0.62, 0.05, k)

    # Type-2 AGN in BGS/LRG hosts: redder W1-W2 (these also get AGN line ratios).
    host = np.isin(cls, (BGS, LRG))
    agn[host] = rng.random(int(host.sum())) < 0.05
    w1w2[agn] += rng.uniform(0.6, 1.0, int(agn.sum()))

    mags = np.stack([r + gr, r, r - rz, r - rz - zw1, r - rz - zw1 - w1w2], axis=1)
    b = galactic_latitude(ra, dec)
    ebv = np.clip(0.016 / np.abs(np.sin(np.radians(b))) * rng.lognormal(0, 0.3, n), 0.002, 0.3)
    true = _mag_to_nmgy(mags) * 10.0 ** (-0.4 * _EXTINCTION[None, :] * ebv[:, None])
    sky = cls == SKY
    true[sky] = 0.0
    sigma = _DEPTH[None, :] * rng.lognormal(0, 0.25, (n, 5))
    flux = true + rng.normal(0.0, 1.0, (n, 5)) * sigma
    flux[sky] = 0.0
    ivar = np.where(sky[:, None], 0.0, 1.0 / sigma**2)

    morph, shape_r, sersic = _morphology(cls, z, rng)
    ell = np.where(np.isin(morph, (b"PSF", b"REX", b"")), 0.0, 1.0)
    psf_frac = 0.79
    fiber_frac = psf_frac / (1.0 + (shape_r / 0.45) ** 1.1)
    fiberflux = flux[:, :3] * fiber_frac[:, None]
    fibertot = fiberflux * (1.0 + rng.exponential(0.03, (n, 1)))

    north = in_ngc(ra, dec) & (dec > _NORTH_DEC)
    maskbits = np.where(rng.random(n) < 0.05, rng.choice([1 << 1, 1 << 8, 1 << 9, 1 << 11, 1 << 12, 1 << 13], n), 0)

    gaia = np.isin(cls, STARS) | ((cls == BGS) & (r < 17.5) & (rng.random(n) < 0.3))
    stars = np.isin(cls, STARS)
    g_mag = r - 0.2 + 0.3 * gr
    dist_pc = 10.0 ** ((r - _STAR_ABSMAG[stype] + 5.0) / 5.0)
    pm_scale = np.where(stars, 40.0 / (4.74 * dist_pc / 1000.0), 0.0)  # 40 km/s tangential
    cols: Columns = {
        "PHOTSYS": np.where(north, b"N", b"S"),
        "EBV": ebv,
        "MORPHTYPE": np.where(sky, b"", morph),
        "SHAPE_R": shape_r,
        "SERSIC": sersic,
        "SHAPE_E1": ell * rng.normal(0, 0.15, n),
        "SHAPE_E2": ell * rng.normal(0, 0.15, n),
        "MASKBITS": maskbits.astype(np.int16),
        "REF_CAT": np.where(gaia, b"G2", b""),
        "REF_ID": np.where(gaia, rng.integers(10**15, 7 * 10**18, n), 0),
        "REF_EPOCH": np.where(gaia, 2015.5, 0.0),
        "GAIA_PHOT_G_MEAN_MAG": np.where(gaia, g_mag, 0.0),
        "GAIA_PHOT_BP_MEAN_MAG": np.where(gaia, g_mag + 0.3 + 0.5 * gr, 0.0),
        "GAIA_PHOT_RP_MEAN_MAG": np.where(gaia, g_mag - 0.5 - 0.4 * gr, 0.0),
        "PARALLAX": np.where(stars, 1000.0 / dist_pc + rng.normal(0, 0.1, n), 0.0),
        "PMRA": pm_scale * rng.normal(0, 1, n),
        "PMDEC": pm_scale * rng.normal(0, 1, n),
        "_NORTH": north,
        "_RED": red,
        "_AGN": agn,
        "_RMAG": r,
        "_GR": gr,
        "_STYPE": stype,
        "_FIBER_FRAC": fiber_frac,
        "SUBTYPE": subtype,
    }
    for j, band in enumerate(("G", "R", "Z", "W1", "W2")):
        cols[f"FLUX_{band}"] = flux[:, j]
        cols[f"FLUX_IVAR_{band}"] = ivar[:, j]
        cols[f"_TRUE_{band}"] = true[:, j]
    for j, band in enumerate("GRZ"):
        cols[f"FIBERFLUX_{band}"] = fiberflux[:, j]
        cols[f"FIBERTOTFLUX_{band}"] = fibertot[:, j]
    return cols


_MORPH = np.array([b"PSF", b"REX", b"EXP", b"DEV", b"SER"])
_MORPH_MIX = {  # PSF REX EXP DEV SER
    BGS: (0.0, 0.15, 0.35, 0.25, 0.25), LRG: (0.02, 0.15, 0.15, 0.38, 0.30), ELG: (0.05, 0.45, 0.40, 0.0, 0.10),
    QSO: (0.95, 0.05, 0.0, 0.0, 0.0), MWS: (1.0, 0, 0, 0, 0), STD: (1.0, 0, 0, 0, 0), SKY: (1.0, 0, 0, 0, 0),
}
_SIZE_KPC = {BGS: 4.0, LRG: 5.0, ELG: 3.0, QSO: 1.0}


def _morphology(
    cls: np.ndarray, z: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(cls)
    kind = np.zeros(n, dtype=np.int64)
    size_kpc = np.zeros(n)
    for c, mix in _MORPH_MIX.items():
        sel = cls == c
        kind[sel] = rng.choice(len(_MORPH), int(sel.sum()), p=np.array(mix) / sum(mix))
        size_kpc[sel] = _SIZE_KPC.get(c, 0.0) * rng.lognormal(0, 0.4, int(sel.sum()))
    zz = np.clip(z, 0.01, None)
    angular_kpc = comoving_distance(zz) / (1.0 + zz) * 1000.0
    shape_r = np.where(kind == 0, 0.0, size_kpc / angular_kpc * 206265.0)
    shape_r = np.where(kind == 1, np.clip(shape_r, 0.2, 1.2), shape_r)
    sersic = np.choose(kind, [0.0, 1.0, 1.0, 4.0, 0.0]) + np.where(kind == 4, rng.uniform(0.5, 6.0, n), 0.0)
    return _MORPH[kind], shape_r, sersic


# --- Targeting masks ---------------------------------------------------------------------------------------------
def target_bits(cls: np.ndarray, cols: Columns, dark: np.ndarray, dual: np.ndarray, rng: np.random.Generator
                ) -> Columns:
    """Main-survey style DESI/BGS/MWS/SCND bits per target (placed into the survey's columns per row later).

    `dual` marks BGS/LRG targets also observed in a program of the other kind: they carry both selections.
    """
    n = len(cls)
    desi = np.zeros(n, dtype=np.int64)
    bgs = np.zeros(n, dtype=np.int64)
    mws = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    desi[cls == LRG] |= DESI["LRG"]
    elg = cls == ELG
    desi[elg] |= DESI["ELG"] | np.where(u[elg] < 0.7, DESI["ELG_LOP"], DESI["ELG_VLO"])
    desi[elg & (u < 0.07)] |= DESI["ELG_HIP"]
    desi[cls == QSO] |= DESI["QSO"]
    is_bgs = cls == BGS
    desi[is_bgs] |= DESI["BGS_ANY"]
    bright = cols["_RMAG"] < 19.5
    bgs[is_bgs] = np.where(bright[is_bgs], BGS_BITS["BGS_BRIGHT"], BGS_BITS["BGS_FAINT"])
    bgs[is_bgs & ~bright & (u < 0.2)] |= BGS_BITS["BGS_FAINT_HIP"]
    bgs[is_bgs & cols["_AGN"]] |= BGS_BITS["BGS_WISE"]
    is_mws = cls == MWS
    desi[is_mws] |= DESI["MWS_ANY"]
    stype = cols["_STYPE"]
    mws[is_mws] = MWS_BITS["MWS_BROAD"]
    mws[is_mws & (STAR_TYPES[stype] == b"WD")] |= MWS_BITS["MWS_WD"]
    mws[is_mws & (STAR_TYPES[stype] == b"A") & (u < 0.5)] |= MWS_BITS["MWS_BHB"]
    mws[is_mws & (u > 0.95)] |= MWS_BITS["MWS_NEARBY"]
    desi[dual & is_bgs] |= DESI["LRG"]
    dual_lrg = dual & (cls == LRG)
    desi[dual_lrg] |= DESI["BGS_ANY"]
    bgs[dual_lrg] |= BGS_BITS["BGS_FAINT"]
    std = cls == STD
    desi[std] |= np.where(dark[std], DESI["STD_FAINT"], DESI["STD_BRIGHT"])
    desi[cls == SKY] |= DESI["SKY"]
    scnd = np.where((cls != SKY) & (rng.random(n) < 0.015), np.int64(1) << rng.integers(0, 40, n), 0)
    desi[scnd != 0] |= DESI["SCND_ANY"]
    return {"_DESI": desi, "_BGS": bgs, "_MWS": mws, "_SCND": scnd.astype(np.int64)}
