import healpy as hp
import numpy as np
import pytest
from astropy.cosmology import Planck18
from astropy.io import fits

from kernels.cosmology import comoving_distance, radec_to_xyz, redshift_at_distance
from kernels.voids import VoidCatalog, VoidFinderParams, find_voids, sky_mask, xyz_to_radec
from tasks.science.selection import occupied_pixels
from tasks.science.voids.desivast import PARAM_KEYS, read_spheres, score_voids, write_desivast
from tasks.science.voids.footprint import BoxFootprint, SkyFootprint
from tasks.synthetic.blocks import Context, generate_block
from tasks.synthetic.config import SampleConfig
from tasks.synthetic.footprint import in_footprint
from tasks.synthetic.voids import write_truth

MAXIMAL_COLUMNS = ["X", "Y", "Z", "RADIUS", "VOID", "EDGE", "R", "RA", "DEC", "R_EFF", "R_EFF_UNCERT", "REDSHIFT"]
BOX = BoxFootprint((200.0,) * 3, (320.0,) * 3)


@pytest.fixture(scope="module")
def galaxies() -> np.ndarray:
    rng = np.random.default_rng(5)
    pts = rng.uniform(0.0, 120.0, size=(8000, 3)) + 200.0
    centre = np.array([260.0, 260.0, 260.0])
    return pts[np.linalg.norm(pts - centre, axis=1) > 18.0]


@pytest.fixture(scope="module")
def catalog(galaxies) -> VoidCatalog:
    return find_voids(galaxies, BOX.mask())


def test_desivast_file_layout(tmp_path, galaxies, catalog):
    path = write_desivast(tmp_path / "out" / "voids.fits", catalog, galaxies, BOX, header={"SURVEY": "test"})
    assert [p.name for p in tmp_path.joinpath("out").iterdir()] == ["voids.fits"]  # no temp file left
    with fits.open(path) as hdus:
        assert [h.name for h in hdus] == ["PRIMARY", "MAXIMALS", "HOLES", "WALL", "FIELD"]  # a box: no MASK
        assert hdus[0].header["SURVEY"] == "test" and hdus[0].header["DISTUNIT"] == "Mpc/h"
        m, h = hdus["MAXIMALS"], hdus["HOLES"]
        assert m.columns.names == MAXIMAL_COLUMNS
        assert h.columns.names == ["X", "Y", "Z", "RADIUS", "VOID"]
        assert m.columns["VOID"].format == "K" and m.columns["X"].format == "D"
        assert m.columns["RADIUS"].unit == "Mpc/h"
        assert len(m.data) == len(catalog.maximals) >= 1
        np.testing.assert_array_equal(m.data["VOID"], np.arange(len(m.data)))
        assert set(h.data["VOID"]) == set(m.data["VOID"])
        xyz = np.stack(radec_to_xyz(m.data["RA"], m.data["DEC"], m.data["R"]), axis=1)
        np.testing.assert_allclose(xyz, catalog.maximals[:, :3], atol=1e-9)
        np.testing.assert_allclose(m.data["REDSHIFT"], redshift_at_distance(m.data["R"], "Mpc/h"))
    np.testing.assert_array_equal(read_spheres(path, "MAXIMALS"), catalog.maximals)


def test_score_voids():
    truth = np.array([[0.0, 0, 0, 20], [100, 0, 0, 15], [0, 100, 0, 25]])
    found = np.array([[1.0, 0, 0, 21], [100, 2, 0, 14], [50, 50, 50, 12]])
    s = score_voids(found, truth)
    assert (s.n_truth, s.n_found) == (3, 3)
    assert s.completeness == pytest.approx(2 / 3) and s.purity == pytest.approx(2 / 3)
    assert s.median_center_error == pytest.approx(1.5) and s.median_radius_error == pytest.approx(0.0)
    empty = score_voids(np.empty((0, 4)), truth)
    assert empty.completeness == 0.0 and np.isnan(empty.purity)


# --- the synthetic DESI sample --------------------------------------------------------------------------------
R_LO, R_HI, CONE_DEG = 100.0, 330.0, 18.0  # a nearby sky cone, where the synthetic BGS is densest


@pytest.fixture(scope="module")
def sample_region(tmp_path_factory):
    """BGS galaxies (ZWARN == 0, SPECTYPE GALAXY) of a 2M-row sample in one sky cone, the mask, the truth file.

    Only the sample blocks under the cone are generated (the full 2M rows take ~30 s); the cone points at the
    densest group of planted voids, of which 300 are planted so that a few fall inside it.
    """
    ctx = Context.build(SampleConfig(n_rows=2_000_000, n_voids=300))
    truth_path = tmp_path_factory.mktemp("truth") / "planted_voids.fits"
    write_truth(truth_path, ctx.voids, ctx.config.seed)
    truth = read_spheres(truth_path, "VOIDS")
    dist = np.linalg.norm(truth[:, :3], axis=1)
    near = (dist - truth[:, 3] > R_LO) & (dist + truth[:, 3] < R_HI)
    unit = truth[near, :3] / dist[near, None]
    axis = unit[((unit @ unit.T) > np.cos(np.radians(CONE_DEG - 5))).sum(axis=1).argmax()]

    def angular(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        inside_cone = np.stack(radec_to_xyz(ra, dec, 1.0), axis=1) @ axis > np.cos(np.radians(CONE_DEG))
        return in_footprint(ra, dec) & inside_cone

    nside = 1 << ctx.plan.order
    centres = np.array(hp.pix2vec(nside, ctx.plan.blocks, nest=True)).T
    blocks = np.flatnonzero(centres @ axis > np.cos(np.radians(CONE_DEG) + 1.1 * hp.max_pixrad(nside)))
    rows = [generate_block(ctx, int(i)).rows for i in blocks]
    col = {k: np.concatenate([r[k] for r in rows]) for k in ("TARGET_RA", "TARGET_DEC", "Z", "ZWARN", "SPECTYPE")}
    good = (col["ZWARN"] == 0) & (np.char.strip(col["SPECTYPE"].astype(str)) == "GALAXY")
    xyz = np.stack(radec_to_xyz(col["TARGET_RA"], col["TARGET_DEC"], comoving_distance(col["Z"], "Mpc/h")), axis=1)
    mask = sky_mask(angular, R_LO, R_HI)
    return xyz[good & mask(xyz)], mask, truth


def test_planted_voids_recovered_from_the_synthetic_sample(sample_region):
    xyz, mask, truth = sample_region
    # Planted voids wholly inside the region (centre and 200 surface points in the mask).
    phi, cos_t = np.meshgrid(np.linspace(0, 2 * np.pi, 20), np.linspace(-1, 1, 10))
    sin_t = np.sqrt(1 - cos_t**2)
    sphere = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=-1).reshape(-1, 3)
    inside = np.array([mask(np.vstack([t[:3], t[:3] + t[3] * sphere])).all() for t in truth])
    truth = truth[inside]
    assert len(truth) >= 4

    cat = find_voids(xyz, mask)
    found = cat.maximals
    score = score_voids(found, truth)
    assert score.completeness == 1.0
    assert score.median_center_error < 2.0
    assert 0.0 <= score.median_radius_error < 2.0  # holes are bounded by the nearest galaxies outside the void
    # The sample is sparse (n ~ 1e-3 h^3 Mpc^-3), so Poisson voids reach ~15 h^-1 Mpc; above that, among interior
    # voids, the planted ones (radii 15-35) must dominate.
    big_interior = found[(found[:, 3] > 16.0) & (cat.edge == 0)]
    assert score_voids(big_interior, truth).purity >= 0.5
    assert score_voids(found[found[:, 3] > 10.0], truth).purity < 0.2  # VAST's own cut is far from pure here


def test_desivast_records_vast_keys_wall_field_and_cosmology(tmp_path, galaxies, catalog):
    params = VoidFinderParams(grid_origin=tuple(catalog.grid_origin))
    path = write_desivast(tmp_path / "voids.fits", catalog, galaxies, BOX, params)
    n_field = int(catalog.is_field.sum())
    assert 0 < n_field < len(galaxies)
    with fits.open(path) as hdus:
        head = hdus[0].header
        assert (head["COSMO"], head["METRIC"], head["HP"]) == ("Planck18", "comoving", 1.0)
        assert head["H0"] == Planck18.H0.value and head["OMEGAM"] == Planck18.Om0 and head["OMEGAL"] == Planck18.Ode0
        assert (head["GALAXY"], head["WALLNUM"], head["FIELDNUM"]) == (len(galaxies), len(galaxies) - n_field, n_field)
        assert head["VOID"] == len(catalog.maximals) == hdus["MAXIMALS"].header["VOID"]
        assert hdus["HOLES"].header["HOLE"] == len(catalog.holes)
        assert head["VOLUME"] == 120.0**3 and head["DENSITY"] == pytest.approx(len(galaxies) / 120.0**3)
        assert head["AVSEP"] == pytest.approx((120.0**3 / len(galaxies)) ** (1 / 3))
        assert [head[k] for k in ("GOX", "GOY", "GOZ")] == pytest.approx(galaxies.min(axis=0), abs=0)
        assert head["GODEF"] is False and head["CHKE"] is True and head["RMISO"] is True
        assert (head["NNS"], head["HGEL"], head["MMR"], head["MHMO"]) == (3, 5.0, 10.0, 0.1)
        assert {key for key, _ in PARAM_KEYS.values()} <= set(head)
        assert head["NNSA"] + 1.5 * head["NNSS"] == pytest.approx(head["FIELDCUT"])
        assert "DLIML" not in head and "MSKRES" not in head  # a box: VAST's 'xyz' mask has no angular limits
        for ext, rows, num in (("WALL", galaxies[~catalog.is_field], "WALLNUM"),
                               ("FIELD", galaxies[catalog.is_field], "FIELDNUM")):
            data = hdus[ext].data
            assert data.columns.names == ["X", "Y", "Z"] and data.columns["X"].unit == "Mpc/h"
            assert hdus[ext].header[num] == len(data) == len(rows)
            np.testing.assert_array_equal(np.stack([data["X"], data["Y"], data["Z"]], axis=1), rows)
        m = hdus["MAXIMALS"].data
        np.testing.assert_array_equal(m["R_EFF_UNCERT"], catalog.r_eff_uncert)
        assert np.all(m["R_EFF_UNCERT"] > 0) and np.all(m["R_EFF_UNCERT"] < 0.05 * m["R_EFF"])


def test_desivast_sky_footprint_has_vast_mask(tmp_path):
    """A small sky sample (one HEALPix nside-8 patch) between z = 0.05 and 0.1: MASK as VAST stores it."""
    rng = np.random.default_rng(9)
    ra, dec = rng.uniform(150.0, 170.0, 6000), rng.uniform(10.0, 25.0, 6000)
    z_min, z_max = 0.05, 0.1
    r = np.cbrt(rng.uniform(*comoving_distance(np.array([z_min, z_max]), "Mpc/h") ** 3, 6000))
    xyz = np.stack(radec_to_xyz(ra, dec, r), axis=1)
    footprint = SkyFootprint(occupied_pixels(ra, dec, 8), 8, z_min, z_max)
    xyz = xyz[footprint.mask()(xyz)]
    cat = find_voids(xyz, footprint.mask())
    path = write_desivast(tmp_path / "sky.fits", cat, xyz, footprint)
    d_min, d_max = comoving_distance(np.array([z_min, z_max]), "Mpc/h")
    res = 1 + int(np.radians(d_max) / 10.0)
    with fits.open(path) as hdus:
        assert [h.name for h in hdus] == ["PRIMARY", "MAXIMALS", "HOLES", "WALL", "FIELD", "MASK", "HPXMASK"]
        head, mask = hdus[0].header, hdus["MASK"]
        assert (head["DLIML"], head["DLIMU"]) == pytest.approx((d_min, d_max))
        assert (head["ZLIML"], head["ZLIMU"]) == (z_min, z_max)
        coverage = len(footprint.pixels) * 4 * np.pi / (12 * 64)
        assert head["COVSTR"] == pytest.approx(coverage)
        assert head["COVDEG"] == pytest.approx(coverage * (180 / np.pi) ** 2)
        assert head["VOLUME"] == pytest.approx(coverage / 3 * (d_max**3 - d_min**3))
        assert head["MSKRES"] == mask.header["MSKRES"] == res
        assert mask.data.shape == (360 * res, 180 * res)
        # VAST's lookup: mask[floor(ra * res), floor((dec + 90) * res)]; the cells of the galaxies are in, and the
        # mask covers about the pixels' solid angle
        g_ra, g_dec, _ = xyz_to_radec(xyz)
        inside = mask.data.astype(bool)[(g_ra * res).astype(int), ((g_dec + 90) * res).astype(int)]
        assert inside.mean() > 0.95
        cell = np.radians(1 / res) ** 2 * np.cos(np.radians((np.arange(180 * res) + 0.5) / res - 90))
        assert (mask.data * cell[None, :]).sum() == pytest.approx(coverage, rel=0.05)
        np.testing.assert_array_equal(hdus["HPXMASK"].data["PIXEL"], footprint.pixels)
        assert hdus["HPXMASK"].header["NSIDE"] == 8 and hdus["HPXMASK"].header["ORDERING"] == "NESTED"
        assert len(hdus["WALL"].data) + len(hdus["FIELD"].data) == len(xyz) == head["GALAXY"]


def test_desivast_refuses_galaxies_of_another_catalog(tmp_path, galaxies, catalog):
    with pytest.raises(ValueError, match=r"^v.fits: 10 galaxies given for a catalog found in \d+$"):
        write_desivast(tmp_path / "v.fits", catalog, galaxies[:10], BOX)


def test_desivast_header_of_three_galaxies_has_no_nan_keys(tmp_path):
    """With sep_neighbor (3) galaxies or fewer there is no 3rd-neighbour statistic: no NNSA, NNSS, FIELDCUT keys
    (NaN and inf have no FITS value), and the file verifies."""
    xyz = np.array([[210.0, 210.0, 210.0], [250.0, 260.0, 270.0], [300.0, 220.0, 240.0]])
    cat = find_voids(xyz, BOX.mask())
    assert np.isnan(cat.neighbour_mean) and cat.field_threshold == np.inf
    path = write_desivast(tmp_path / "three.fits", cat, xyz, BOX)
    with fits.open(path) as hdus:
        hdus.verify("exception")
        head = hdus[0].header
        assert not {"NNSA", "NNSS", "FIELDCUT"} & set(head)
        assert (head["GALAXY"], head["WALLNUM"], head["FIELDNUM"], head["VOID"]) == (3, 3, 0, 0)
        assert all(np.isfinite(v) for v in head.values() if isinstance(v, float))
