"""desi-voids: VoidFinder voids of a volume-limited galaxy sample from the catalog -> DESIVAST FITS + catalog tables."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from astrolab.caching import by_content, persisted
from astrolab.resources import build_catalog, build_lake, build_result_storage, catalog_state, dask_client
from astrolab.retries import retrying
from astrolab.settings import Settings, load_settings
from flows.artifacts import publish_image
from kernels.voids import VoidCatalog, VoidFinderParams, find_voids
from tasks.science.selection import Galaxies, occupied_pixels, positions, select_primary
from tasks.science.voids import select as vs
from tasks.science.voids.desivast import VoidScore, read_spheres, score_voids, write_desivast
from tasks.science.voids.footprint import SkyFootprint
from tasks.science.voids.plots import size_function_png, slice_map_png
from tasks.storage.lake import save_product


# The steps that compute cache on the content of their inputs (the catalog's state for the selection) and persist
# their results, so a rerun with the same inputs skips the void finder; the steps that write never cache.
@task(name="select-galaxies", cache_policy=by_content(), **retrying(2))
def select_galaxies(settings: Settings, z_min: float, z_max: float, target_class: str,
                    catalog_version: str) -> Galaxies:
    """Primary ZWARN == 0 galaxies of the target class in the redshift range (RA, Dec, Z only), from the catalog
    in state ``catalog_version``."""
    with build_catalog(settings) as catalog:
        return select_primary(catalog, target_class, z_min, z_max, spectype="GALAXY")


@task(name="survey-mask", cache_policy=by_content())
def survey_pixels(gal: Galaxies, mask_nside: int) -> np.ndarray:
    """The angular mask: HEALPix NESTED pixels occupied by the selected galaxies."""
    return occupied_pixels(gal.ra, gal.dec, mask_nside)


@task(name="volume-limited-positions", cache_policy=by_content())
def void_positions(gal: Galaxies, pixels: np.ndarray, mask_nside: int, z_min: float, z_max: float,
                   density: float | None, seed: int) -> np.ndarray:
    """Comoving positions [h^-1 Mpc], thinned at random to a constant number density when one is given."""
    xyz = positions(gal.ra, gal.dec, gal.z)
    if density is None:
        return xyz
    return xyz[vs.thin_to_density(xyz, density, pixels, mask_nside, z_min, z_max, seed)]


@task(name="find-voids", cache_policy=by_content())
def run_void_finder(xyz: np.ndarray, pixels: np.ndarray, mask_nside: int, z_min: float, z_max: float,
                    params: VoidFinderParams, settings: Settings) -> VoidCatalog:
    """VoidFinder inside the survey mask, its holes grown on the configured Dask cluster."""
    with dask_client(settings) as client:
        return find_voids(xyz, vs.survey_mask(pixels, mask_nside, z_min, z_max), params, client)


@task(name="write-desivast", cache_policy=NO_CACHE, **retrying(2))
def write_fits(voids: VoidCatalog, xyz: np.ndarray, footprint: SkyFootprint, params: VoidFinderParams,
               header: dict[str, object], name: str, settings: Settings, run_id: str) -> str:
    """Write the DESIVAST FITS in VAST's layout (MAXIMALS, HOLES, WALL, FIELD, MASK) into the lake; returns its
    URL."""
    return save_product(build_lake(settings), run_id, name,
                        lambda path: write_desivast(path, voids, xyz, footprint, params, header))


@task(name="load-void-tables", cache_policy=NO_CACHE, **retrying(2))
def load_tables(voids: VoidCatalog, settings: Settings) -> dict[str, int]:
    """Replace the voids_maximals and voids_holes catalog tables, in one transaction."""
    with build_catalog(settings) as catalog:
        return vs.write_void_tables(catalog, voids)


def read_truth(path: Path) -> np.ndarray:
    """The planted voids (n, 4) of a truth file; a missing or unreadable one is a one-line error naming it."""
    try:
        return read_spheres(path, "VOIDS")
    except FileNotFoundError:
        raise ValueError(f"truth_path {path}: no such file (desi-sample writes <out_dir>/truth/planted_voids.fits)")\
            from None
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"truth_path {path}: not a planted-void file with a VOIDS table ({exc})") from None


@task(name="score-voids", cache_policy=NO_CACHE)
def score(voids: VoidCatalog, truth: np.ndarray, pixels: np.ndarray, mask_nside: int, z_min: float,
          z_max: float) -> tuple[VoidScore, np.ndarray]:
    """Score the maximals against the planted voids lying wholly inside the survey; returns those voids too."""
    truth = truth[vs.interior(truth, vs.survey_mask(pixels, mask_nside, z_min, z_max))]
    return score_voids(voids.maximals, truth), truth


@task(name="report", cache_policy=NO_CACHE)
def report(voids: VoidCatalog, xyz: np.ndarray, volume: float, truth: np.ndarray | None, settings: Settings,
           run_id: str) -> list[Path]:
    """Write the void size function and slice map PNGs into the run's report directory; returns their paths."""
    images = {
        "void_size_function.png": size_function_png(voids.r_eff, volume, None if truth is None else truth[:, 3]),
        "void_slice_map.png": slice_map_png(xyz, voids.holes, voids.hole_void),
    }
    lake = build_lake(settings)
    for name, png in images.items():
        save_product(lake, run_id, name, functools.partial(Path.write_bytes, data=png))
    return [lake.run_report_dir(run_id) / name for name in images]


def _summary(counts: dict[str, object], settings: dict[str, object], fits_url: str,
             result: VoidScore | None) -> str:
    lines = ["# desi-voids", "", "| quantity | value |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in counts.items()), "", f"DESIVAST file: `{fits_url}`", "",
             "## Settings", "", "| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in settings.items())]
    if result is not None:
        lines += ["", "## Planted voids (truth)", "", "| score | value |", "|---|---|",
                  *(f"| {k} | {v:.4g} |" for k, v in dataclasses.asdict(result).items())]
    return "\n".join(lines) + "\n"


@flow(name="desi-voids", log_prints=True)
def desi_voids(config: str | None = None, z_min: float = 0.0, z_max: float = 0.24, target_class: str = "BGS_ANY",
               density: float | None = None, mask_nside: int = 64, void_params: dict[str, float] | None = None,
               grid_origin: list[float] | None = None, truth_path: str | None = None, seed: int = 0) -> dict:
    """Find voids (VoidFinder) in primary ZWARN == 0 galaxies of `target_class` with z_min <= z < z_max, thinned to
    `density` [h^3 Mpc^-3] if given, inside the HEALPix occupancy mask at `mask_nside`, on the empty-cell grid from
    `grid_origin` (x, y, z [h^-1 Mpc]; default: the galaxies' minimum, as VAST); write DESIVAST FITS and the
    voids_maximals/voids_holes tables, and report (scored against `truth_path`, a planted-void file, if given;
    relative: below the settings' home)."""
    settings = load_settings(config)
    planted = read_truth(settings.under_home(truth_path)) if truth_path else None  # before anything is written
    params = vs.finder_params(void_params, grid_origin)
    run_id = str(flow_run.get_id() or "local")

    storage = build_result_storage(settings)
    gal = persisted(select_galaxies, storage)(settings, z_min, z_max, target_class, catalog_state(settings))
    pixels = persisted(survey_pixels, storage)(gal, mask_nside)
    xyz = persisted(void_positions, storage)(gal, pixels, mask_nside, z_min, z_max, density, seed)
    volume = vs.survey_volume(pixels, mask_nside, z_min, z_max)
    print(f"{len(gal.z)} {target_class} galaxies selected, {len(xyz)} kept; mask {len(pixels)} pixels "
          f"at nside {mask_nside}, {volume:.4g} h^-3 Mpc^3")
    voids = persisted(run_void_finder, storage)(xyz, pixels, mask_nside, z_min, z_max, params, settings)

    name = f"DESIVAST_{target_class.split('_')[0]}_VOLLIM_VoidFinder.fits"
    # VAST's keys (ZLIML, ZLIMU, GALAXY, DENSITY = galaxies per volume, ...) come from the writer; these are ours.
    header = {"TARGET": target_class, "NSIDE": mask_nside, "THINDENS": density if density is not None else "none"}
    footprint = SkyFootprint(pixels, mask_nside, z_min, z_max)
    fits_url = write_fits(voids, xyz, footprint, params, header, name, settings, run_id)
    rows = load_tables(voids, settings)
    result, truth = score(voids, planted, pixels, mask_nside, z_min, z_max) if planted is not None else (None, None)
    images = report(voids, xyz, volume, truth, settings, run_id)

    counts = {"galaxies selected": len(gal.z), "galaxies used": len(xyz), "field galaxies": int(voids.is_field.sum()),
              "voids": len(voids.maximals), "holes": len(voids.holes), "interior voids (EDGE=0)":
              int((voids.edge == 0).sum()), "survey volume [h^-3 Mpc^3]": f"{volume:.4g}",
              "grid origin [h^-1 Mpc]": ", ".join(f"{v:.3f}" for v in voids.grid_origin)}
    settings_table = {"target_class": target_class, "z range": f"[{z_min}, {z_max})", "density": density,
                      "mask_nside": mask_nside, **dataclasses.asdict(params)}
    markdown = _summary(counts, settings_table, fits_url, result)
    create_markdown_artifact(markdown, key="desi-voids-summary", description="desi-voids run summary")
    lake = build_lake(settings)
    for path, key, title in zip(images, ("desi-voids-size-function", "desi-voids-slice-map"),
                                ("void size function", "void slice map"), strict=True):
        publish_image(path, key, title, settings, lake)
    print(markdown)
    return {"fits": fits_url, "tables": rows, "galaxies": len(xyz), "voids": len(voids.maximals),
            "holes": len(voids.holes), "score": dataclasses.asdict(result) if result else None,
            "images": [lake.url_of(path) for path in images]}
