"""Hole-for-hole parity of kernels.voids with VAST's VoidFinder on the same galaxies, split, mask and grid origin.

    python bench/vast_parity.py --vast-python /tmp/vast-venv/bin/python [--n 6000] [--seed 3]
    python bench/vast_parity.py --vast-python ... --galaxies vollim_dr7_cbp_102709.fits   # VAST's DR7 example
    python bench/vast_parity.py --vast-python ... --fixture tests/kernels/data/vast_parity.npz  # the test's input

VAST runs in its own interpreter (`--vast-python`, a venv with VAST built from source), as this same file with
`--vast-side IN OUT`, which imports only numpy, astropy and vast. The default input is a generated sector:
uniform galaxies in RA 150-190 deg, Dec 10-40 deg, 40-160 h^-1 Mpc, with a few spheres carved empty, and VAST's
angular mask of that sector at 1 cell per degree. A galaxies file (VAST's DR7 example: columns ra, dec, z) is
prepared by VAST itself (`file_preprocess`, `generate_mask`, `filter_galaxies` as its SDSS example script does).
Both finders then get VAST's wall/field split, VAST's mask, the same distance limits and grid origin (the minimum
over wall and field galaxies, as VAST's example passes), the same hole grid edge and minimum maximal radius.

Compared: the raw holes (VAST's `_hole_finder` output and our `find_holes`, before the volume cut, each with
duplicates removed by VAST's rule), the holes kept, and the maximal spheres: each VAST sphere matched to
the nearest of ours by centre (within --tol-centre) with the radius within --tol-radius, both ways; the void
each matched hole joins and the maximals' EDGE flags. Writes bench/out/vast_parity.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


# --- VAST's side (runs under --vast-python: numpy, astropy and vast only) -------------------------------------
def _vast_prepare(galaxies: str, work: str, z_max: float, omega_m: float) -> dict[str, np.ndarray]:
    """VAST's own preparation of a galaxies file (ra, dec, z): xyz of wall + field, mask, distance limits."""
    from astropy.table import Table
    from vast.voidfinder import filter_galaxies, multizmask
    from vast.voidfinder.multizmask import generate_mask
    from vast.voidfinder.preprocessing import file_preprocess

    distance = multizmask.z_to_comoving_dist
    # generate_mask does int() of a 1-element array, which numpy >= 2.4 refuses: give it the scalar.
    multizmask.z_to_comoving_dist = lambda *args: float(np.ravel(distance(*args))[0])
    table = Table.read(galaxies)
    if "redshift" not in table.colnames and "z" in table.colnames:  # VAST's DR7 FITS example names it z
        table.rename_column("z", "redshift")
    galaxies = work + "/galaxies.fits"
    table.write(galaxies)
    table, dist_limits = file_preprocess(galaxies, "parity_", "", work + "/", dist_metric="comoving",
                                         min_z=0.0, max_z=z_max, Omega_M=omega_m)
    mask, resolution = generate_mask(table, z_max, "parity_", work + "/", dist_metric="comoving",
                                     smooth_mask=True, Omega_M=omega_m)
    # The FITS example is volume-limited already and has no rabsmag column: no magnitude cut.
    wall, field = filter_galaxies(table, "parity_", work + "/", mag_cut=False, dist_limits=dist_limits,
                                  dist_metric="comoving")
    return {"xyz": np.concatenate([wall, field]), "mask": np.asarray(mask, dtype=bool),
            "mask_resolution": np.array(resolution), "dist_limits": np.asarray(dist_limits, dtype=np.float64)}


def vast_side(inp: Path, out: Path) -> None:
    """Run VAST's VoidFinder on the inputs in `inp` (npz) and write its split, raw holes and voids to `out`."""
    import vast.voidfinder.voidfinder as vf
    from vast.voidfinder import find_voids, wall_field_separation

    with tempfile.TemporaryDirectory() as work:
        data = dict(np.load(inp))
        if "galaxies" in data:
            data.update(_vast_prepare(str(data["galaxies"]), work, float(data["z_max"]), float(data["omega_m"])))
        xyz = data["xyz"]
        wall, _ = wall_field_separation(xyz, sep_neighbor=int(data["sep_neighbor"]), out_directory=work + "/")
        # Field flags in input order: VAST keeps the order of the galaxies it does not drop as duplicates.
        keys = {tuple(row): i for i, row in enumerate(xyz)}
        is_field = np.ones(len(xyz), dtype=bool)
        is_field[[keys[tuple(row)] for row in wall]] = False
        captured: dict[str, np.ndarray] = {}
        hole_finder, bounds = vf._hole_finder, vf.check_hole_bounds

        def capture_holes(*args, **kwargs):  # type: ignore[no-untyped-def]
            holes, n = hole_finder(*args, **kwargs)
            captured["raw_holes"] = np.array(holes)
            return holes, n

        def capture_bounds(*args, **kwargs):  # type: ignore[no-untyped-def]
            valid, boundary = bounds(*args, **kwargs)
            captured["raw_valid"], captured["raw_boundary"] = np.array(valid), np.array(boundary)
            return valid, boundary

        vf._hole_finder, vf.check_hole_bounds = capture_holes, capture_bounds
        vf.save_output_from_find_voids = lambda *args, **kwargs: None  # its FITS writer wants filter_galaxies' file
        origin = data["grid_origin"] if "grid_origin" in data else np.min(xyz, axis=0)
        t0 = time.perf_counter()
        maximals, holes = find_voids(wall, "parity_", work + "/", mask_type="ra_dec_z", mask=data["mask"],
                                     mask_resolution=int(data["mask_resolution"]), dist_limits=data["dist_limits"],
                                     hole_grid_edge_length=float(data["grid_edge"]), grid_origin=origin,
                                     min_maximal_radius=float(data["min_maximal_radius"]), num_cpus=1,
                                     save_missing_galaxies=False)
        seconds = time.perf_counter() - t0
    np.savez(out, xyz=xyz, is_field=is_field, mask=data["mask"], mask_resolution=data["mask_resolution"],
             dist_limits=data["dist_limits"], grid_origin=origin, seconds=seconds,
             maximals=np.array([maximals[c] for c in ("x", "y", "z", "radius", "void", "edge")], dtype=float).T,
             holes=np.array([holes[c] for c in ("x", "y", "z", "radius", "void")], dtype=float).T, **captured)


# --- inputs -------------------------------------------------------------------------------------------------
SECTOR = {"ra": (150.0, 190.0), "dec": (10.0, 40.0), "r": (40.0, 160.0)}


def generated_sector(n: int, seed: int, sector: tuple[float, ...] | None = None) -> dict[str, np.ndarray]:
    """n uniform galaxies in a sector (ra0, ra1, dec0, dec1 [whole degrees], r0, r1 [h^-1 Mpc]; default SECTOR)
    with 6 spheres of radius 12-20 h^-1 Mpc carved empty, and its VAST mask."""
    rng = np.random.default_rng(seed)
    ra0, ra1, dec0, dec1, r0, r1 = sector or (*SECTOR["ra"], *SECTOR["dec"], *SECTOR["r"])
    m = 3 * n
    ra = rng.uniform(ra0, ra1, m)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(dec0)), np.sin(np.radians(dec1)), m)))
    r = np.cbrt(rng.uniform(r0**3, r1**3, m))
    xyz = np.stack([r * np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
                    r * np.cos(np.radians(dec)) * np.sin(np.radians(ra)), r * np.sin(np.radians(dec))], axis=1)
    centres = xyz[rng.choice(m, 6, replace=False)]
    keep = np.ones(m, dtype=bool)
    for c, radius in zip(centres, rng.uniform(12.0, 20.0, 6)):
        keep &= np.sum((xyz - c) ** 2, axis=1) > radius**2
    xyz = xyz[keep][:n]
    mask = np.zeros((360, 180), dtype=bool)
    mask[int(ra0):int(ra1), int(dec0) + 90:int(dec1) + 90] = True
    return {"xyz": xyz, "mask": mask, "mask_resolution": np.array(1), "dist_limits": np.array([r0, r1])}


# --- comparison ---------------------------------------------------------------------------------------------
def match(ref: np.ndarray, ours: np.ndarray, tol_centre: float, tol_radius: float) -> dict:
    """Each row of ref (x, y, z, r) matched to the nearest centre in ours: counts and worst differences."""
    from scipy.spatial import cKDTree

    if len(ref) == 0 or len(ours) == 0:
        return {"ref": len(ref), "ours": len(ours), "matched": 0, "fraction": 0.0 if len(ref) else 1.0,
                "index": np.full(len(ref), -1)}
    d, idx = cKDTree(ours[:, :3]).query(ref[:, :3])
    dr = np.abs(ours[idx, 3] - ref[:, 3])
    ok = (d <= tol_centre) & (dr <= tol_radius)
    return {"ref": len(ref), "ours": len(ours), "matched": int(ok.sum()), "fraction": float(ok.mean()),
            "worst_centre": float(d[ok].max()) if ok.any() else None,
            "worst_radius": float(dr[ok].max()) if ok.any() else None,
            "unmatched_largest_radius": float(ref[~ok, 3].max()) if (~ok).any() else None,
            "index": np.where(ok, idx, -1)}


def _dedup(holes: np.ndarray, tol: float) -> np.ndarray:
    """Holes sorted largest first, with VAST's duplicate rule."""
    from kernels.voids import remove_duplicates

    holes = holes[holes[:, 3].argsort()[::-1]]
    return holes[remove_duplicates(holes, tol)]


def compare(vast: dict[str, np.ndarray], params, tol_centre: float, tol_radius: float) -> dict:  # type: ignore[no-untyped-def]
    """Run ours on VAST's inputs and split; match raw holes, holes and maximals both ways."""
    from kernels.voids import find_holes, find_voids, split_wall_field, vast_sky_mask

    xyz, is_field = vast["xyz"], vast["is_field"]
    r_min, r_max = (float(v) for v in vast["dist_limits"])
    mask = vast_sky_mask(vast["mask"], int(vast["mask_resolution"]), r_min, r_max)
    ours_split = split_wall_field(xyz, params.sep_neighbor, params.field_sigma).is_field
    t0 = time.perf_counter()
    cat = find_voids(xyz, mask, params, is_field=is_field)
    seconds = time.perf_counter() - t0
    raw_ours = _dedup(find_holes(xyz[~is_field], mask, params, origin=cat.grid_origin), params.dup_tol)
    raw_vast = _dedup(vast["raw_holes"], params.dup_tol) if len(vast["raw_holes"]) else np.empty((0, 4))
    maximals = match(vast["maximals"][:, :4], cat.maximals, tol_centre, tol_radius)
    holes = match(vast["holes"][:, :4], cat.holes, tol_centre, tol_radius)
    report = {
        "galaxies": len(xyz), "wall": int((~is_field).sum()), "field": int(is_field.sum()),
        "split_agreement": float((ours_split == is_field).mean()),
        "grid_origin": [float(v) for v in cat.grid_origin],
        "seconds": {"vast": float(vast["seconds"]), "ours": seconds},
        "raw_holes": _public(match(raw_vast, raw_ours, tol_centre, tol_radius)),
        "raw_holes_reverse": _public(match(raw_ours, raw_vast, tol_centre, tol_radius)),
        "holes": _public(holes),
        "holes_reverse": _public(match(cat.holes, vast["holes"][:, :4], tol_centre, tol_radius)),
        "maximals": _public(maximals),
        "maximals_reverse": _public(match(cat.maximals, vast["maximals"][:, :4], tol_centre, tol_radius)),
    }
    # Void membership: a matched VAST hole should join the void of the maximal matched to VAST's void.
    m_index = maximals["index"]
    ok = holes["index"] >= 0
    vast_void = vast["holes"][ok, 4].astype(int)
    same = m_index[vast_void] == cat.hole_void[holes["index"][ok]]
    report["hole_void_agreement"] = float(same.mean()) if ok.any() else None
    mok = m_index >= 0
    report["edge_agreement"] = float((vast["maximals"][mok, 5] == cat.edge[m_index[mok]]).mean()) if mok.any() else None
    return report


def _public(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "index"}


def main() -> None:
    """Run VAST and ours on the same inputs and write the parity report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vast-side", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--vast-python", default="/tmp/vast-venv/bin/python")
    ap.add_argument("--galaxies", help="galaxies file with ra, dec, z (VAST's DR7 example) instead of a sector")
    ap.add_argument("--z-max", type=float, default=0.1026)
    ap.add_argument("--omega-m", type=float, default=0.26)
    ap.add_argument("--n", type=int, default=6000, help="galaxies in the generated sector")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--sector", type=float, nargs=6, metavar=("RA0", "RA1", "DEC0", "DEC1", "R0", "R1"),
                    help="the generated sector (whole degrees; h^-1 Mpc)")
    ap.add_argument("--grid-edge", type=float, default=5.0)
    ap.add_argument("--min-maximal-radius", type=float, default=10.0)
    ap.add_argument("--tol-centre", type=float, default=1e-3, help="h^-1 Mpc")
    ap.add_argument("--tol-radius", type=float, default=1e-3, help="h^-1 Mpc")
    ap.add_argument("--fixture", type=Path, help="also write inputs and VAST's holes here (the test's fixture)")
    ap.add_argument("--save-vast", type=Path, help="keep VAST's whole output (npz) here, to look into differences")
    ap.add_argument("--out", type=Path, default=OUT / "vast_parity.json")
    args = ap.parse_args()
    if args.vast_side:
        vast_side(Path(args.vast_side[0]), Path(args.vast_side[1]))
        return
    sys.path.insert(0, str(ROOT))
    from kernels.voids import VoidFinderParams

    params = VoidFinderParams.vast(grid_edge=args.grid_edge, min_maximal_radius=args.min_maximal_radius)
    with tempfile.TemporaryDirectory() as work:
        inp, out = Path(work) / "in.npz", Path(work) / "out.npz"
        settings = {"grid_edge": args.grid_edge, "min_maximal_radius": args.min_maximal_radius,
                    "sep_neighbor": params.sep_neighbor}
        if args.galaxies:
            np.savez(inp, galaxies=str(Path(args.galaxies).resolve()), z_max=args.z_max, omega_m=args.omega_m,
                     **settings)
        else:
            np.savez(inp, **generated_sector(args.n, args.seed, args.sector), **settings)
        run = subprocess.run([args.vast_python, str(Path(__file__).resolve()), "--vast-side", str(inp), str(out)],
                             capture_output=True, text=True, cwd=work)
        if run.returncode != 0:
            sys.exit(f"VAST ({args.vast_python}) failed:\n{run.stderr[-3000:]}")
        vast = dict(np.load(out))
    if args.save_vast:
        np.savez_compressed(args.save_vast, **vast)
    report = {"input": args.galaxies or f"generated sector {args.sector or SECTOR}, n={args.n}, seed={args.seed}",
              "tolerance": {"centre": args.tol_centre, "radius": args.tol_radius},
              "params": {k: v for k, v in vars(params).items() if not k.startswith("_")},
              **compare(vast, params, args.tol_centre, args.tol_radius)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.fixture:
        args.fixture.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.fixture, **{k: vast[k] for k in ("xyz", "is_field", "mask", "mask_resolution",
                                                                   "dist_limits", "grid_origin", "holes",
                                                                   "maximals")},
                            grid_edge=args.grid_edge, min_maximal_radius=args.min_maximal_radius)
    for key in ("raw_holes", "holes", "maximals"):
        m, r = report[key], report[key + "_reverse"]
        print(f"{key:9s} VAST {m['ref']:6d}  ours {m['ours']:6d}  VAST matched {m['matched']:6d} "
              f"({m['fraction']:.4f})  ours matched {r['matched']:6d} ({r['fraction']:.4f})  "
              f"worst centre {m['worst_centre']}  worst radius {m['worst_radius']}")
    print(f"split agreement {report['split_agreement']:.5f}  hole->void agreement {report['hole_void_agreement']}  "
          f"EDGE agreement {report['edge_agreement']}  seconds {report['seconds']}")


if __name__ == "__main__":
    main()
