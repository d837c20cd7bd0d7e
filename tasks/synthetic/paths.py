"""Where DR1 keeps each product, relative to the release root (`public/dr1/`)."""

from __future__ import annotations

from pathlib import Path

SPECPROD = "iron"
ZCATVER = "v1"
FASTSPEC_VERSION = "v3.0"
# FastSpecFit splits these programs into 12 files by nside-1 NESTED healpix.
FASTSPEC_SPLIT = {("main", "bright"), ("main", "dark")}

_REDUX = Path("spectro/redux") / SPECPROD


def zpix_path(root: Path, survey: str, program: str) -> Path:
    """zcatalog/v1/zpix-{survey}-{program}.fits."""
    return root / _REDUX / "zcatalog" / ZCATVER / f"zpix-{survey}-{program}.fits"


def zall_path(root: Path) -> Path:
    """zcatalog/v1/zall-pix-iron.fits."""
    return root / _REDUX / "zcatalog" / ZCATVER / f"zall-pix-{SPECPROD}.fits"


def healpix_dir(root: Path, survey: str, program: str, pixel: int) -> Path:
    """healpix/{survey}/{program}/{pixel//100}/{pixel}/."""
    return root / _REDUX / "healpix" / survey / program / str(pixel // 100) / str(pixel)


def coadd_path(root: Path, survey: str, program: str, pixel: int) -> Path:
    """The coadd-{survey}-{program}-{pixel}.fits spectra file."""
    return healpix_dir(root, survey, program, pixel) / f"coadd-{survey}-{program}-{pixel}.fits"


def redrock_path(root: Path, survey: str, program: str, pixel: int) -> Path:
    """The redrock-{survey}-{program}-{pixel}.fits redshift file."""
    return healpix_dir(root, survey, program, pixel) / f"redrock-{survey}-{program}-{pixel}.fits"


def fastspec_path(root: Path, survey: str, program: str, nside1_pixel: int | None = None) -> Path:
    """The merged FastSpecFit catalog; main bright/dark are split by nside-1 pixel."""
    name = f"fastspec-{SPECPROD}-{survey}-{program}"
    if nside1_pixel is not None:
        name += f"-nside1-hp{nside1_pixel:02d}"
    return root / "vac/dr1/fastspecfit" / SPECPROD / FASTSPEC_VERSION / "catalogs" / f"{name}.fits"


def truth_voids_path(root: Path) -> Path:
    """The planted-void truth table."""
    return root / "truth" / "planted_voids.fits"


def manifest_path(root: Path) -> Path:
    """The run manifest."""
    return root / "sample-manifest.json"
