"""The void finder against VAST's VoidFinder, hole for hole, on a recorded run of VAST.

data/vast_voidfinder_sector.npz is VAST's output on a small generated sector that crosses the equator (RA 300-340
deg, Dec -15-10 deg, 40-140 h^-1 Mpc, 2,500 galaxies, a few spheres carved empty): the galaxies, VAST's wall/field
split, angular mask (1 cell per degree), distance limits and grid origin, and the holes and maximal spheres VAST
found (VAST 1.7.6, github DESI-UR/VAST at 0339f1a, built from source into its own venv). Written by

    python bench/vast_parity.py --vast-python /tmp/vast-venv/bin/python --n 2500 --seed 5 \\
        --sector 300 340 -15 10 40 140 --fixture tests/kernels/data/vast_voidfinder_sector.npz
"""

from pathlib import Path

import numpy as np
import pytest

from kernels.voids import (
    VoidFinderParams,
    box_mask,
    find_voids,
    grow_holes,
    remove_duplicates,
    split_wall_field,
    vast_sky_mask,
)

FIXTURE = Path(__file__).parent / "data" / "vast_voidfinder_sector.npz"


@pytest.fixture(scope="module")
def vast():
    with np.load(FIXTURE) as rec:
        return {k: rec[k] for k in rec.files}


def _by_void(spheres: np.ndarray, void: np.ndarray) -> np.ndarray:
    order = np.lexsort((-spheres[:, 3], void))
    return np.column_stack([spheres[order], void[order]])


def test_holes_and_maximals_equal_vasts(vast):
    params = VoidFinderParams.vast(grid_edge=float(vast["grid_edge"]),
                                   min_maximal_radius=float(vast["min_maximal_radius"]))
    mask = vast_sky_mask(vast["mask"], int(vast["mask_resolution"]), *vast["dist_limits"])
    cat = find_voids(vast["xyz"], mask, params, is_field=vast["is_field"])
    np.testing.assert_array_equal(cat.grid_origin, vast["grid_origin"])
    maximals, holes = vast["maximals"], vast["holes"]
    assert len(cat.maximals) == len(maximals) >= 3
    np.testing.assert_allclose(cat.maximals, maximals[:, :4], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(cat.edge, maximals[:, 5])
    assert len(cat.holes) == len(holes) > 100
    np.testing.assert_allclose(_by_void(cat.holes, cat.hole_void), _by_void(holes[:, :4], holes[:, 4].astype(int)),
                               rtol=0, atol=1e-9)


def test_wall_field_split_equals_vasts(vast):
    assert np.array_equal(split_wall_field(vast["xyz"]).is_field, vast["is_field"])
    assert 0 < vast["is_field"].sum() < len(vast["xyz"])


def test_vast_sky_mask_reads_cells_as_vast_does():
    """VAST truncates toward zero: just south of the equator is the row of 0 <= dec < 1 (at 1 cell per degree)."""
    mask = np.zeros((360, 180), dtype=bool)
    mask[10, 90] = True  # RA 10-11, Dec 0-1 (and, by truncation, -1-0)
    inside = vast_sky_mask(mask, 1, 10.0, 100.0)
    ra, dec = np.radians([10.5, 10.5, 10.5, 11.5]), np.radians([0.5, -0.5, -1.5, 0.5])
    xyz = 50.0 * np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
    assert inside(xyz).tolist() == [True, True, False, False]
    assert not inside(xyz[:1] * 3.0).any()  # beyond the distance limit


def test_remove_duplicates_compares_with_the_last_hole_kept():
    holes = np.array([[0.0, 0, 0, 10.0], [0.05, 0, 0, 9.95], [0.12, 0, 0, 9.9], [0.2, 0, 0, 9.7], [5.0, 0, 0, 9.6]])
    # 2nd: within 0.1 of the 1st in centre and radius; 3rd: 0.12 from the 1st (the last kept); 4th: radius 0.2
    # below the 3rd; 5th: far.
    assert remove_duplicates(holes, 0.1).tolist() == [True, False, True, True, True]


def test_three_bounding_galaxies_stop_after_the_third():
    rng = np.random.default_rng(4)
    pts = rng.uniform(0.0, 40.0, (400, 3))
    seeds = rng.uniform(10.0, 30.0, (20, 3))
    for n in (3, 4):
        out = grow_holes(seeds, pts, search_edge=6.0, bounding_galaxies=n)
        out = out[~np.isnan(out[:, 0])]
        d = np.linalg.norm(pts[None, :, :] - out[:, None, :3], axis=2) - out[:, 3:4]
        assert np.all(d > -1e-9)  # empty
        assert np.all((np.abs(d) < 1e-9).sum(axis=1) == n)  # n galaxies on the surface
        if n == 3:
            np.testing.assert_array_equal(out[:, :3], out[:, 7:10])  # the centre after the 3rd galaxy


def test_a_given_split_must_flag_every_galaxy():
    xyz = np.random.default_rng(1).uniform(0.0, 50.0, (300, 3))
    with pytest.raises(ValueError, match="is_field has 299 flags for 300 galaxies"):
        find_voids(xyz, box_mask(np.zeros(3), np.full(3, 50.0)), is_field=np.zeros(299, dtype=bool))


def test_vast_settings():
    params = VoidFinderParams.vast(min_maximal_radius=8.0)
    assert (params.bounding_galaxies, params.edge_buffer, params.pts_per_unit_volume) == (3, 8.0, 0.01)
    assert VoidFinderParams(bounding_galaxies=3.0).bounding_galaxies == 3  # type: ignore[arg-type]
    assert type(VoidFinderParams(bounding_galaxies=3.0).bounding_galaxies) is int  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bounding_galaxies must be 3 or 4"):
        VoidFinderParams(bounding_galaxies=5)
