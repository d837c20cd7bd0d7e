"""The sample cut into sky blocks (NESTED healpix pixels), each generated on its own from (seed, block).

A block holds every row whose HEALPIX lies inside it, in every program, so blocks can be written one after the
other in NESTED order (which keeps zall sorted) and any block can be regenerated alone (for the coadd files).
"""

from __future__ import annotations

from dataclasses import dataclass

import healpy as hp
import numpy as np

from kernels.cosmology import comoving_distance, radec_to_xyz

from .columns import ALL_TARGET_COLUMNS
from .config import SampleConfig
from .emission import band_flambda, measure_lines, physical_properties
from .footprint import AREA_ORDER, area_map
from .identifiers import bricks, desiname, release_and_objid, targetid
from .observation import (
    ProgramInfo,
    draw_zwarn,
    exposures,
    fit_quality,
    line_sigma,
    observe_redshift,
    program_info,
    tsnr2,
)
from .population import (
    CLASSES,
    DEFAULT_SHARE,
    DUAL_TARGETS,
    FA_TYPE,
    NUMOBS_INIT,
    OBJTYPE,
    OBSCONDITIONS,
    PRIORITY_INIT,
    PROGRAM_SHARE,
    SKY,
    STARS,
    Columns,
    draw_classes,
    draw_redshift,
    photometry,
    place_clusters,
    program_affinity,
    sample_positions,
    target_bits,
)
from .voids import Voids, plant_voids

HEALPIX_ORDER = 6  # DESI's nside 64
MIN_ORDER = 3
MAX_BLOCK_ROWS = 25_000  # expected rows in the fullest block; the block order rises until it fits
_STREAM_PLAN, _STREAM_BLOCK, _STREAM_VOIDS = 0, 1, 2
_MAX_VOID_PASSES = 200


@dataclass(frozen=True)
class BlockPlan:
    """Blocks (NESTED pixels at `order`) holding targets, their target and repeat counts, first target index."""

    order: int
    blocks: np.ndarray
    targets: np.ndarray
    repeats: np.ndarray
    offsets: np.ndarray

    def nside1_pixel(self, i: int) -> int:
        """The nside-1 pixel (FastSpecFit file) that block i lies in."""
        return int(self.blocks[i]) >> (2 * self.order)

    def block_of_pixel(self, healpix: int) -> int:
        """Index of the block that holds this nside-64 pixel."""
        return int(np.searchsorted(self.blocks, healpix >> (2 * (HEALPIX_ORDER - self.order))))


def plan_blocks(config: SampleConfig) -> BlockPlan:
    """Split n_rows over blocks: a seeded multinomial over footprint area, so the total is exact."""
    n_targets = config.n_rows if len(config.programs) == 1 else round(config.n_rows / (1 + config.repeat_fraction))
    n_repeats = config.n_rows - n_targets
    fraction, _ = area_map()
    order = MIN_ORDER
    while True:
        area = fraction.reshape(-1, 4 ** (AREA_ORDER - order)).sum(axis=1)
        if order == HEALPIX_ORDER or n_targets * area.max() / area.sum() <= MAX_BLOCK_ROWS:
            break
        order += 1
    rng = np.random.default_rng([config.seed, _STREAM_PLAN])
    targets = rng.multinomial(n_targets, area / area.sum())
    repeats = rng.multivariate_hypergeometric(targets, n_repeats) if n_repeats else np.zeros_like(targets)
    blocks = np.flatnonzero(targets)
    offsets = np.concatenate([[0], np.cumsum(targets[blocks])[:-1]])
    return BlockPlan(order, blocks, targets[blocks], repeats[blocks], offsets)


@dataclass(frozen=True)
class Context:
    """What every block needs: config, plan, planted voids, program conditions."""

    config: SampleConfig
    plan: BlockPlan
    voids: Voids
    programs: tuple[ProgramInfo, ...]

    @classmethod
    def build(cls, config: SampleConfig) -> Context:
        """Plan blocks and plant voids for this config."""
        voids = plant_voids(config.n_voids, np.random.default_rng([config.seed, _STREAM_VOIDS]))
        programs = tuple(program_info(s, p, PROGRAM_SHARE.get((s, p), DEFAULT_SHARE)) for s, p in config.programs)
        return cls(config, plan_blocks(config), voids, programs)


@dataclass(frozen=True)
class Block:
    """Generated rows of one block, sorted by (program, HEALPIX, TARGETID).

    rows: every zpix column plus zall's SURVEY/PROGRAM/*_NSPEC/*_PRIMARY (under 'ZALL_'), FastSpecFit values and
    internal '_' columns; exposures: EXP_FIBERMAP columns with '_ROW'; truth: per-target line fluxes ('_TIX' in
    rows points at them).
    """

    rows: Columns
    exposures: Columns
    truth: Columns
    targets: Columns


def _repeats(tprog: np.ndarray, cls: np.ndarray, n_rep: int, kind: np.ndarray, share: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Targets observed a second time and the (other) program that observed them.

    The second program is drawn in proportion to its affinity for the class (a BGS galaxy is re-observed in
    another bright program or, as a dual LRG target, in dark time; a flux standard anywhere); targets whose
    class no other program observes are only used when needed.
    """
    if n_rep == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    affinity = np.array([[program_affinity(k, c) for c in range(len(CLASSES))] for k in kind])  # (program, class)
    weights = share[:, None] * affinity
    alternatives = weights.sum(axis=0)[cls] - weights[tprog, cls] > 0
    preferred, others = np.flatnonzero(alternatives), np.flatnonzero(~alternatives)
    take = min(n_rep, len(preferred))
    rep = np.sort(np.concatenate([rng.choice(preferred, take, replace=False),
                                  rng.choice(others, n_rep - take, replace=False)]))
    w = np.where(alternatives[rep][:, None], weights[:, cls[rep]].T, share[None, :])
    w[np.arange(len(rep)), tprog[rep]] = 0.0
    cumulative = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    second = np.minimum((rng.random(len(rep))[:, None] > cumulative).sum(axis=1), len(share) - 1)
    return rep, second


def primary_flags(tid: np.ndarray, zwarn: np.ndarray, rank: np.ndarray, member: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(NSPEC int16, PRIMARY bool) over the member rows, desispec's rule: group by TARGETID, prefer ZWARN==0,
    then the highest `rank` (TSNR2_LRG); non-members get 0/False."""
    nspec = np.zeros(len(tid), dtype=np.int16)
    primary = np.zeros(len(tid), dtype=bool)
    idx = np.flatnonzero(member)
    if len(idx) == 0:
        return nspec, primary
    order = idx[np.lexsort((-rank[idx], zwarn[idx] != 0, tid[idx]))]
    t = tid[order]
    first = np.concatenate([[True], t[1:] != t[:-1]])
    primary[order[first]] = True
    group = np.cumsum(first) - 1
    nspec[order] = np.bincount(group)[group]
    return nspec, primary


def _void_hits(voids: Voids, ra: np.ndarray, dec: np.ndarray, z: np.ndarray,
               extragalactic: np.ndarray) -> np.ndarray:
    near = extragalactic & (z < voids.redshift.max(initial=0.0) + 0.05)
    hit = np.zeros(len(z), dtype=bool)
    if near.any() and len(voids.radii):
        xyz = radec_to_xyz(ra[near], dec[near], comoving_distance(z[near], "Mpc/h"))
        hit[near] = voids.contains(np.stack(xyz, axis=-1))
    return hit


def generate_block(ctx: Context, i: int) -> Block:
    """All rows of block i (deterministic in (seed, order, block))."""
    plan, programs = ctx.plan, ctx.programs
    block, n, n_rep = int(plan.blocks[i]), int(plan.targets[i]), int(plan.repeats[i])
    rng = np.random.default_rng([ctx.config.seed, _STREAM_BLOCK, plan.order, block])
    share = np.array([p.share for p in programs])
    share /= share.sum()

    # Targets: program, class, position (some in clusters), redshift.
    tprog = rng.choice(len(programs), n, p=share)
    kind = np.array([p.program for p in programs])
    cls = draw_classes(list(kind), tprog, rng)
    ra, dec = sample_positions(block, plan.order, n, rng)
    z = draw_redshift(cls, rng)
    place_clusters(cls, ra, dec, z, block, plan.order, rng)

    # Rows: each target once in its program, repeats once more in another program.
    rep, second = _repeats(tprog, cls, n_rep, kind, share, rng)
    tix = np.concatenate([np.arange(n), rep])
    prog = np.concatenate([tprog, second])
    rcls = cls[tix]
    zwarn = draw_zwarn(rcls, rng)
    zobs, zerr = observe_redshift(rcls, z[tix], zwarn, rng)

    # Planted voids stay empty: targets with any extragalactic row inside one get a new redshift.
    extragalactic = ~np.isin(rcls, STARS)
    for _ in range(_MAX_VOID_PASSES):
        hit = _void_hits(ctx.voids, ra[tix], dec[tix], zobs, extragalactic)
        if not hit.any():
            break
        moved = np.unique(tix[hit])
        z[moved] = draw_redshift(cls[moved], rng)
        again = np.isin(tix, moved)
        zobs[again], zerr[again] = observe_redshift(rcls[again], z[tix[again]], zwarn[again], rng)
    else:
        raise RuntimeError(f"block {block}: rows still inside planted voids after {_MAX_VOID_PASSES} passes")

    # Imaging, targeting, identifiers (per target).
    is_kind = {k: (kind == k)[tprog] for k in ("backup", "dark")}
    phot = photometry(cls, z, ra, dec, rng, is_kind["backup"])
    dual = np.zeros(n, dtype=bool)
    dual[rep] = (kind[second] != kind[tprog[rep]]) & np.isin(cls[rep], list(DUAL_TARGETS))
    bits = target_bits(cls, phot, is_kind["dark"], dual, rng)
    release, objid = release_and_objid(plan.offsets[i] + np.arange(n), phot["_NORTH"])
    brickid, brickname = bricks(ra, dec)
    healpix = hp.ang2pix(64, ra, dec, nest=True, lonlat=True).astype(np.int32)
    years = np.where(phot["REF_EPOCH"] > 0, 2021.5 - phot["REF_EPOCH"], 0.0)
    cosd = np.cos(np.radians(dec))
    targets: Columns = {
        **phot, **bits,
        "TARGETID": targetid(release, brickid, objid, cls == SKY),
        "TARGET_RA": ra, "TARGET_DEC": dec, "HEALPIX": healpix, "SPGRPVAL": healpix,
        "RELEASE": release, "BRICKID": brickid, "BRICKNAME": brickname, "BRICK_OBJID": objid,
        "DESINAME": desiname(ra, dec),
        "PLATE_RA": (ra + phot["PMRA"] * years / 3.6e6 / cosd) % 360.0,
        "PLATE_DEC": dec + phot["PMDEC"] * years / 3.6e6,
        "SUBPRIORITY": rng.random(n),
        "FA_TARGET": bits["_DESI"], "FA_TYPE": FA_TYPE[cls], "OBJTYPE": OBJTYPE[cls],
        "OBSCONDITIONS": OBSCONDITIONS[cls], "PRIORITY_INIT": PRIORITY_INIT[cls], "NUMOBS_INIT": NUMOBS_INIT[cls],
        "_CLASS": cls, "_ZTRUE": z,
    }
    truth = physical_properties(cls, z, phot, rng)

    # Per row: target columns, survey-specific masks, Redrock fit, exposures, TSNR2, FastSpecFit values.
    rows: Columns = {k: v[tix] for k, v in targets.items()}
    rows.update({"_TIX": tix, "_PROG": prog, "Z": zobs, "ZERR": zerr, "ZWARN": zwarn})
    survey = np.array([p.survey for p in programs])[prog]
    rows.update(_target_columns(survey, rows))
    rows.update(fit_quality(rcls, zobs, zwarn, rows["SUBTYPE"], rng))
    exp, summary = exposures(rows, list(programs), rng)
    rows.update(summary)
    depth = np.array([p.depth for p in programs])[prog]
    rows.update(tsnr2(rows["COADD_EXPTIME"], depth, zwarn, rng))
    noise = np.array([p.noise for p in programs])[prog]
    sigma = line_sigma(rows["COADD_EXPTIME"], noise)
    rows.update(measure_lines(truth, tix, zobs, band_flambda(phot)[tix], sigma, rng))
    return _sorted_block(rows, exp, truth, targets, survey)


def _target_columns(survey: np.ndarray, rows: Columns) -> Columns:
    """Every *_TARGET column: a row's bits go into its own survey's columns only (zero elsewhere)."""
    out: Columns = {}
    for name in ALL_TARGET_COLUMNS:
        if name == "CMX_TARGET":
            owner, source = survey == "cmx", "_DESI"
        elif name.startswith("SV"):
            sv, mask, _ = name.split("_")
            owner, source = survey == sv.lower(), f"_{mask}"
        else:
            owner, source = np.isin(survey, ("main", "special")), f"_{name.split('_')[0]}"
        out[name] = np.where(owner, rows[source], 0)
    return out


def _sorted_block(rows: Columns, exp: Columns, truth: Columns, targets: Columns, survey: np.ndarray) -> Block:
    order = np.lexsort((rows["TARGETID"], rows["HEALPIX"], rows["_PROG"]))
    rows = {k: v[order] for k, v in rows.items()}
    survey = survey[order]
    new_index = np.empty_like(order)
    new_index[order] = np.arange(len(order))
    exp_row = new_index[exp["_ROW"]]
    exp_order = np.argsort(exp_row, kind="stable")
    exp = {k: v[exp_order] for k, v in exp.items()}
    exp["_ROW"] = exp_row[exp_order]

    n = len(order)
    rows["ZCAT_NSPEC"] = np.ones(n, dtype=np.int16)  # zpix: each TARGETID once per file
    rows["ZCAT_PRIMARY"] = np.ones(n, dtype=bool)
    tid, zwarn, rank = rows["TARGETID"], rows["ZWARN"], rows["TSNR2_LRG"].astype(np.float64)
    everything = np.ones(n, dtype=bool)
    for prefix, member in (("ZCAT", everything), ("MAIN", survey == "main"),
                           ("SV", np.char.startswith(survey.astype(str), "sv"))):
        rows[f"ZALL_{prefix}_NSPEC"], rows[f"ZALL_{prefix}_PRIMARY"] = primary_flags(tid, zwarn, rank, member)
    rows["_SURVEY"] = survey
    return Block(rows, exp, truth, targets)
