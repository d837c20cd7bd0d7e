"""Galaxy physics behind the spectra and FastSpecFit columns: stellar mass, SFR, emission lines, continuum.

Star-forming galaxies sit below the Kauffmann+03 BPT line, type-2 AGN above Kewley+01 (Seyfert above the
Schawinski+07 line, LINER below it); type-1 AGN and QSOs get broad Balmer lines.
"""

from __future__ import annotations

import numpy as np

from kernels.cosmology import comoving_distance

from .columns import FASTSPEC_LINES
from .population import BGS, ELG, LRG, QSO, Columns

# Vacuum rest wavelengths [Angstrom] (FastSpecFit values).
LINE_WAVE = {
    "OII_3726": 3727.092, "OII_3729": 3729.875, "HBETA": 4862.683, "OIII_4959": 4960.295, "OIII_5007": 5008.239,
    "OI_6300": 6302.046, "NII_6548": 6549.859, "HALPHA": 6564.613, "NII_6584": 6585.277,
    "SII_6716": 6718.294, "SII_6731": 6732.673,
}
# Broad QSO lines: rest wavelength and rest-frame equivalent width [Angstrom].
QSO_BROAD = {"LYA": (1215.67, 80.0), "CIV": (1549.06, 35.0), "CIII": (1908.73, 20.0), "MGII": (2799.49, 30.0),
             "HBETA_BROAD": (4862.683, 60.0), "HALPHA_BROAD": (6564.613, 250.0)}
WAVE_MIN, WAVE_MAX = 3600.0, 9824.0
_BAND_WAVE = np.array([4770.0, 6231.0, 9134.0])  # g, r, z effective wavelengths
_NMGY_TO_FLAMBDA = 3.631e-29 * 2.99792458e18 * 1e17  # nmgy -> 1e-17 erg/s/cm2/A, divided by lambda^2
_MPC_CM = 3.0857e24
_SF, _SEYFERT, _LINER = 0, 1, 2


def band_flambda(cols: Columns) -> np.ndarray:
    """Fibre-aperture f_lambda [1e-17 erg/s/cm2/A] at the g, r, z effective wavelengths, (n, 3)."""
    true = np.stack([cols["_TRUE_G"], cols["_TRUE_R"], cols["_TRUE_Z"]], axis=1)
    return np.clip(true, 1e-4, None) * _NMGY_TO_FLAMBDA / _BAND_WAVE**2 * cols["_FIBER_FRAC"][:, None]


def continuum(f_band: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Smooth continuum through the (n, 3) band f_lambda, a power law in log-log on each side of r.

    `wave` is (nwave,) for a shared grid or (n, m) per target; returns (n, nwave) or (n, m).
    """
    logw, logf = np.log(_BAND_WAVE), np.log(f_band)
    x = np.log(wave)
    if x.ndim == 1:
        x = x[None, :]
    slope_blue = (logf[:, 1] - logf[:, 0]) / (logw[1] - logw[0])
    slope_red = (logf[:, 2] - logf[:, 1]) / (logw[2] - logw[1])
    slope = np.where(x < logw[1], slope_blue[:, None], slope_red[:, None])
    return np.exp(logf[:, 1:2] + slope * (x - logw[1]))


def _kewley(x: np.ndarray) -> np.ndarray:
    return 0.61 / (x - 0.47) + 1.19


def physical_properties(cls: np.ndarray, z: np.ndarray, cols: Columns, rng: np.random.Generator) -> Columns:
    """True (noise-free, fibre-aperture) line fluxes and host properties per target; zeros for stars and sky."""
    n = len(cls)
    galaxy = np.isin(cls, (BGS, LRG, ELG))
    hosts = galaxy | (cls == QSO)
    zz = np.clip(z, 1e-3, None)
    dl_mpc = comoving_distance(zz) * (1.0 + zz)  # luminosity distance, flat
    absmag = np.where(hosts, cols["_RMAG"] - 5.0 * np.log10(dl_mpc * 1e5) - 0.9 * zz, 0.0)
    logm = np.where(galaxy, -0.4 * (absmag - 4.65) - 0.306 + 1.097 * np.clip(cols["_GR"] - 0.9 * zz, 0.1, 1.2), 0.0)
    logm += np.where(cls == QSO, 10.8, 0.0)
    quiescent = cols["_RED"] & galaxy
    log_sfr = 0.75 * (logm - 10.0) + 0.2 + 2.0 * np.log10(1.0 + zz) + rng.normal(0, 0.25, n)
    log_sfr -= np.where(quiescent, 1.3 + rng.normal(0, 0.3, n), 0.0)
    sfr = np.where(hosts, 10.0**log_sfr, 0.0)

    # Halpha from SFR (Kennicutt, Chabrier IMF), 0.8 mag of attenuation, into the fibre aperture.
    lum = sfr * 1.8e41 * 10.0 ** (-0.4 * 0.8)
    halpha = lum / (4 * np.pi * (dl_mpc * _MPC_CM) ** 2) * 1e17 * cols["_FIBER_FRAC"]
    halpha *= np.where(cls == ELG, 2.0, 1.0)  # ELGs are selected for strong lines

    kind = np.full(n, _SF)
    agn = cols["_AGN"] & galaxy
    kind[agn] = np.where(rng.random(int(agn.sum())) < 0.5, _SEYFERT, _LINER)
    kind[quiescent & ~agn] = _LINER  # retired galaxies: weak LINER-like lines
    halpha *= np.where(agn, rng.uniform(1.0, 4.0, n), 1.0)

    x = np.where(kind == _SF, np.clip(rng.normal(-0.5, 0.15, n), -1.2, -0.25), rng.uniform(0.0, 0.35, n))
    x = np.where(kind == _SEYFERT, rng.uniform(-0.15, 0.35, n), x)
    u = rng.random(n)
    y_sf = 0.61 / (x - 0.05) + 1.30 - rng.uniform(0.1, 0.4, n)
    lo_sy = np.maximum(_kewley(np.minimum(x, 0.46)) + 0.15, 1.05 * x + 0.50)
    y_sy = lo_sy + u * (1.15 - lo_sy)
    lo_li = np.maximum(_kewley(np.minimum(x, 0.46)) + 0.1, -0.4)
    y_li = lo_li + u * (1.05 * x + 0.40 - lo_li)
    y = np.choose(kind, [y_sf, y_sy, y_li])

    hbeta = halpha / rng.uniform(3.0, 5.0, n)
    sii = halpha * 10.0 ** np.where(kind == _SF, rng.normal(-0.45, 0.1, n), rng.normal(-0.2, 0.12, n))
    sii_ratio = rng.uniform(1.2, 1.45, n)
    oi_log = np.choose(kind, [rng.normal(-1.6, 0.2, n), rng.normal(-0.9, 0.2, n), rng.normal(-0.6, 0.2, n)])
    true: Columns = {
        "HALPHA": halpha, "HBETA": hbeta, "NII_6584": halpha * 10.0**x, "OIII_5007": hbeta * 10.0**y,
        "SII_6716": sii * sii_ratio / (1 + sii_ratio), "SII_6731": sii / (1 + sii_ratio),
        "OI_6300": halpha * 10.0**oi_log,
        "OII_3726": halpha * rng.uniform(0.3, 0.6, n), "OII_3729": halpha * rng.uniform(0.3, 0.6, n),
    }
    true["NII_6548"] = true["NII_6584"] / 2.94
    true["OIII_4959"] = true["OIII_5007"] / 2.98
    for name in true:
        true[name] = np.where(hosts, true[name], 0.0)

    # Broad Halpha: type-1 AGN among BGS (2%) and every QSO, EW ~ 250 A rest.
    type1 = ((cls == BGS) & (rng.random(n) < 0.02)) | (cls == QSO)
    cont_ha = continuum(band_flambda(cols), (LINE_WAVE["HALPHA"] * (1 + z))[:, None])[:, 0]
    broad = cont_ha * QSO_BROAD["HALPHA_BROAD"][1] * (1 + z) * rng.uniform(0.5, 1.5, n)
    true["HALPHA_BROAD"] = np.where(type1, broad, 0.0)
    true["_BROAD_SIGMA"] = np.where(type1, rng.uniform(1500.0, 4500.0, n), 0.0)
    true["_NARROW_SIGMA"] = rng.uniform(50.0, 150.0, n)
    true["LOGMSTAR"] = logm
    true["SFR"] = sfr
    true["ABSMAG01_SDSS_R"] = absmag
    return true


def measure_lines(true: Columns, tix: np.ndarray, z_obs: np.ndarray, f_band: np.ndarray, sigma: np.ndarray,
                  rng: np.random.Generator) -> Columns:
    """FastSpecFit-like FASTSPEC/SPECPHOT values per row: true values of its target plus measurement noise.

    `sigma` is the per-row 1-sigma line-flux error [1e-17 erg/s/cm2]. Lines outside 3600-9824 A at the row's
    redshift are unmeasured: flux, ivar and EW are 0, as FastSpecFit writes them.
    """
    n = len(tix)
    out: Columns = {}
    for line in FASTSPEC_LINES + ("HALPHA_BROAD",):
        observed = LINE_WAVE[line.replace("_BROAD", "")] * (1.0 + z_obs)
        covered = (observed >= WAVE_MIN) & (observed <= WAVE_MAX) & (true[line][tix] > 0)
        err = sigma * (5.0 if line == "HALPHA_BROAD" else 1.0)
        flux = np.where(covered, true[line][tix] + rng.normal(0.0, 1.0, n) * err, 0.0)
        out[f"{line}_FLUX"] = flux
        out[f"{line}_FLUX_IVAR"] = np.where(covered, 1.0 / err**2, 0.0)
        if line == "HALPHA_BROAD":
            out[f"{line}_SIGMA"] = np.where(covered, true["_BROAD_SIGMA"][tix] * rng.lognormal(0, 0.05, n), 0.0)
        else:
            cont = continuum(f_band, observed[:, None])[:, 0]
            out[f"{line}_EW"] = np.where(covered, flux / cont / (1.0 + z_obs), 0.0)
    host = true["LOGMSTAR"][tix] > 0
    out["LOGMSTAR"] = np.where(host, true["LOGMSTAR"][tix] + rng.normal(0, 0.05, n), 0.0)
    out["SFR"] = true["SFR"][tix] * rng.lognormal(0, 0.1, n)
    out["ABSMAG01_SDSS_R"] = np.where(host, true["ABSMAG01_SDSS_R"][tix] + rng.normal(0, 0.02, n), 0.0)
    return out
