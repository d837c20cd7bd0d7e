"""Healpix coadd and redrock files for a few pixels: continuum + emission lines at the target redshift + noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .blocks import Block, Context, generate_block
from .catalogs import healpix_keywords, redrock_keywords
from .columns import EXP_FIBERMAP, REDSHIFTS, SCORES, TSNR2, TSNR2_COLUMNS, fibermap_columns, pack
from .config import SampleFile
from .emission import LINE_WAVE, QSO_BROAD, band_flambda, continuum
from .fitsstream import FitsWriter
from .observation import ZWARN
from .paths import coadd_path, redrock_path
from .population import QSO

CAMERAS = {"B": (3600.0, 5800.0), "R": (5760.0, 7620.0), "Z": (7520.0, 9824.0)}
SCORE_RANGES = {"B": (4000.0, 5800.0), "R": (5800.0, 7600.0), "Z": (7600.0, 9800.0)}
DWAVE = 0.8
NDIAG = 11
FLUX_UNIT = "10**-17 erg/(s cm2 Angstrom)"
IVAR_UNIT = "10**+34 (s2 cm4 Angstrom2) / erg2"
_C_KMS = 299_792.458
_SKY_LINES = np.array([5578.9, 5891.6, 6302.0, 6365.5, 6866.2, 7246.0, 7316.3, 7341.0, 7571.8, 7750.6, 7794.1,
                       7821.5, 7913.7, 7964.7, 8344.6, 8399.2, 8430.2, 8465.4, 8505.7, 8761.3, 8827.1, 8886.0,
                       8919.6, 8943.4, 8991.0, 9375.9, 9439.7, 9502.8, 9569.4, 9720.0, 9794.1])


def wavelength_grid(camera: str) -> np.ndarray:
    """desispec's grid for a camera: arange(wmin, wmax + dw/2, 0.8) (b 2751, r 2326, z 2881 pixels)."""
    lo, hi = CAMERAS[camera]
    return np.arange(lo, hi + DWAVE / 2, DWAVE)


def resolution_data(wave: np.ndarray, nspec: int, rng: np.random.Generator) -> np.ndarray:
    """(nspec, 11, nwave) diagonals of a Gaussian resolution matrix, sigma ~ 1 px, each column summing to 1."""
    offsets = NDIAG // 2 - np.arange(NDIAG)
    sigma = (0.9 + 0.2 * (wave - wave[0]) / (wave[-1] - wave[0]))[None, :] * rng.uniform(0.97, 1.03, (nspec, 1))
    kernel = np.exp(-0.5 * (offsets[None, :, None] / sigma[:, None, :]) ** 2)
    return (kernel / kernel.sum(axis=1, keepdims=True)).astype(np.float32)


def _line_profiles(wave: np.ndarray, z: np.ndarray, lines: list[tuple[float, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Sum of Gaussian lines (rest wavelength, flux per target, sigma [km/s] per target), (n, nwave)."""
    out = np.zeros((len(z), len(wave)))
    for rest, flux, sigma_kms in lines:
        center = rest * (1.0 + z)
        sigma = np.hypot(center * sigma_kms / _C_KMS, DWAVE)  # line width plus ~1 px resolution
        out += flux[:, None] / (np.sqrt(2 * np.pi) * sigma[:, None]) * np.exp(
            -0.5 * ((wave[None, :] - center[:, None]) / sigma[:, None]) ** 2
        )
    return out


def _emission_lines(block: Block, tix: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
    truth, narrow = block.truth, block.truth["_NARROW_SIGMA"][tix]
    lines = [(LINE_WAVE[name], truth[name][tix], narrow) for name in LINE_WAVE]
    lines.append((LINE_WAVE["HALPHA"], truth["HALPHA_BROAD"][tix], truth["_BROAD_SIGMA"][tix]))
    return lines


def _qso_lines(block: Block, tix: np.ndarray, z: np.ndarray, f_band: np.ndarray
               ) -> list[tuple[float, np.ndarray, np.ndarray]]:
    is_qso = block.targets["_CLASS"][tix] == QSO
    lines = []
    for name, (rest, ew) in QSO_BROAD.items():
        if name == "HALPHA_BROAD":
            continue  # carried by the truth table
        cont = continuum(f_band, (rest * (1 + z))[:, None])[:, 0]
        lines.append((rest, np.where(is_qso, cont * ew * (1 + z), 0.0), np.full(len(z), 3000.0)))
    return lines


def _noise_sigma(wave: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Per-pixel flux error (n, nwave): rising to the blue end, spiking at night-sky lines."""
    blue = 1.0 + 1.5 * np.exp(-(wave - 3600.0) / 300.0)
    sky = 1.0 + 2.0 * np.exp(-0.5 * ((wave[:, None] - _SKY_LINES[None, :]) / 1.2) ** 2).sum(axis=1)
    return 0.6 * depth[:, None] * (blue * sky)[None, :]


def _coadd_arrays(block: Block, sel: np.ndarray, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    rows = block.rows
    tix, z = rows["_TIX"][sel], rows["_ZTRUE"][sel]
    f_band = band_flambda(block.targets)[tix]
    depth = np.sqrt(1000.0 / rows["COADD_EXPTIME"][sel])
    lines = _emission_lines(block, tix) + _qso_lines(block, tix, z, f_band)
    nodata = (rows["ZWARN"][sel] & ZWARN["NODATA"]) != 0
    out = {}
    for camera in CAMERAS:
        wave = wavelength_grid(camera)
        model = continuum(f_band, wave) + _line_profiles(wave, z, lines)
        sigma = _noise_sigma(wave, depth)
        mask = np.where(rng.random(model.shape) < 0.001, 1 << 1, 0).astype(np.int32)
        mask[nodata] = 1 << 9
        ivar = np.where(mask == 0, 1.0 / sigma**2, 0.0)
        flux = model + rng.normal(0.0, 1.0, model.shape) * sigma
        out[camera] = {
            "WAVELENGTH": wave, "FLUX": flux.astype(np.float32), "IVAR": ivar.astype(np.float32), "MASK": mask,
            "RESOLUTION": resolution_data(wave, len(sel), rng),
        }
    return out


def _scores(arrays: dict[str, dict[str, np.ndarray]], tsnr2: dict[str, np.ndarray], tid: np.ndarray) -> dict:
    values: dict[str, np.ndarray] = {"TARGETID": tid, **tsnr2}
    for camera, (lo, hi) in SCORE_RANGES.items():
        a = arrays[camera]
        inside = (a["WAVELENGTH"] >= lo) & (a["WAVELENGTH"] < hi)
        flux, ivar = a["FLUX"][:, inside], a["IVAR"][:, inside]
        values[f"INTEG_COADD_FLUX_{camera}"] = flux.sum(axis=1) * DWAVE
        values[f"MEDIAN_COADD_FLUX_{camera}"] = np.median(flux, axis=1)
        values[f"MEDIAN_COADD_SNR_{camera}"] = np.median(flux * np.sqrt(ivar), axis=1) / np.sqrt(DWAVE)
    return values


def write_pixel(root: Path, ctx: Context, survey: str, program: str, pixel: int) -> list[SampleFile]:
    """coadd- and redrock- files of one nside-64 pixel: up to coadd_nspec targets, in TARGETID order."""
    p = [(q.survey, q.program) for q in ctx.programs].index((survey, program))
    block = generate_block(ctx, ctx.plan.block_of_pixel(pixel))
    rows, exp = block.rows, block.exposures
    sel = np.flatnonzero((rows["_PROG"] == p) & (rows["HEALPIX"] == pixel))[: ctx.config.coadd_nspec]
    nspec = len(sel)
    part = {k: v[sel] for k, v in rows.items()}
    exp_sel = np.isin(exp["_ROW"], sel)
    part_exp = {k: v[exp_sel] for k, v in exp.items()}
    rng = np.random.default_rng([ctx.config.seed, 3, pixel])
    arrays = _coadd_arrays(block, sel, rng)
    tsnr2 = {name: part[name] for name in TSNR2_COLUMNS}
    fibermap = fibermap_columns(survey)
    hpx = [("SPGRP", "healpix", "Spectral grouping method"), ("SPGRPVAL", pixel, "Spectral group value"),
           ("HPXPIXEL", pixel, "Healpix pixel"), *healpix_keywords()[1:],
           ("SURVEY", survey, "DESI sub-survey"), ("PROGRAM", program, "DESI program")]

    coadd = coadd_path(root, survey, program, pixel)
    with FitsWriter(coadd) as out:
        out.write_primary(hpx)
        _table(out, fibermap, "FIBERMAP", part, nspec)
        _table(out, EXP_FIBERMAP, "EXP_FIBERMAP", part_exp, int(exp_sel.sum()))
        for camera, a in arrays.items():
            out.write_image(a["WAVELENGTH"], f"{camera}_WAVELENGTH", [("BUNIT", "Angstrom", "")])
            out.write_image(a["FLUX"], f"{camera}_FLUX", [("BUNIT", FLUX_UNIT, "")])
            out.write_image(a["IVAR"], f"{camera}_IVAR", [("BUNIT", IVAR_UNIT, "")])
            out.write_image(a["MASK"], f"{camera}_MASK")
            out.write_image(a["RESOLUTION"], f"{camera}_RESOLUTION")
        _table(out, SCORES, "SCORES", _scores(arrays, tsnr2, part["TARGETID"]), nspec)

    redrock = redrock_path(root, survey, program, pixel)
    with FitsWriter(redrock) as out:
        out.write_primary([*redrock_keywords(), *hpx])
        _table(out, REDSHIFTS, "REDSHIFTS", part, nspec)
        _table(out, fibermap, "FIBERMAP", part, nspec)
        _table(out, EXP_FIBERMAP, "EXP_FIBERMAP", part_exp, int(exp_sel.sum()))
        _table(out, TSNR2, "TSNR2", part, nspec)
    return [SampleFile(coadd, "coadd", nspec, survey, program), SampleFile(redrock, "redrock", nspec, survey, program)]


def _table(out: FitsWriter, cols: list, extname: str, values: dict, n: int) -> None:
    out.begin_table(cols, extname)
    out.write_rows(pack(cols, values, n))
    out.end_table()


def coadd_pixels(counts: np.ndarray, n: int) -> list[int]:
    """The n pixels with most rows (ties: lower pixel number first)."""
    order = np.lexsort((np.arange(len(counts)), -counts))
    return [int(pix) for pix in order[:n] if counts[pix] > 0]
