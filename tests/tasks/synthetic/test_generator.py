"""The synthetic DESI DR1 sample against the DR1 data model, healpy, astropy Planck18 and pandas."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import healpy as hp
import numpy as np
import pandas as pd
import pytest
from astropy.cosmology import Planck18
from astropy.io import fits
from astropy.table import Table
from astropy.units import UnitsWarning

from tasks.synthetic import SampleConfig, SampleManifest, generate_sample, in_footprint

N_ROWS = 8000
ZPIX_RE = re.compile(r"zpix-(cmx|main|sv1|sv2|sv3|special)-(backup|bright|dark|other)\.fits")
ZALL_RE = re.compile(r"zall-pix-[a-z0-9_-]+\.fits")
FASTSPEC_RE = re.compile(r"fastspec-iron-(main|sv3)-(backup|bright|dark)(-nside1-hp(\d\d))?\.fits")

# desidatamodel zcatalog v1 ZCATALOG, every optional column present (transcribed independently of the code).
ZCATALOG_DM = """
TARGETID K|SURVEY 7A|PROGRAM 6A|HEALPIX J|SPGRPVAL J|Z D|ZERR D|ZWARN K|CHI2 D|COEFF 10D|NPIXELS K|SPECTYPE 6A|
SUBTYPE 20A|NCOEFF K|DELTACHI2 D|COADD_FIBERSTATUS J|TARGET_RA D|TARGET_DEC D|PMRA E|PMDEC E|REF_EPOCH E|
FA_TARGET K|FA_TYPE B|OBJTYPE 3A|SUBPRIORITY D|OBSCONDITIONS J|RELEASE I|BRICKNAME 8A|BRICKID J|BRICK_OBJID J|
MORPHTYPE 4A|EBV E|FLUX_G E|FLUX_R E|FLUX_Z E|FLUX_W1 E|FLUX_W2 E|FLUX_IVAR_G E|FLUX_IVAR_R E|FLUX_IVAR_Z E|
FLUX_IVAR_W1 E|FLUX_IVAR_W2 E|FIBERFLUX_G E|FIBERFLUX_R E|FIBERFLUX_Z E|FIBERTOTFLUX_G E|FIBERTOTFLUX_R E|
FIBERTOTFLUX_Z E|MASKBITS I|SERSIC E|SHAPE_R E|SHAPE_E1 E|SHAPE_E2 E|REF_ID K|REF_CAT 2A|GAIA_PHOT_G_MEAN_MAG E|
GAIA_PHOT_BP_MEAN_MAG E|GAIA_PHOT_RP_MEAN_MAG E|PARALLAX E|PHOTSYS 1A|PRIORITY_INIT K|NUMOBS_INIT K|CMX_TARGET K|
SV1_DESI_TARGET K|SV1_BGS_TARGET K|SV1_MWS_TARGET K|SV1_SCND_TARGET K|SV2_DESI_TARGET K|SV2_BGS_TARGET K|
SV2_MWS_TARGET K|SV2_SCND_TARGET K|SV3_DESI_TARGET K|SV3_BGS_TARGET K|SV3_MWS_TARGET K|SV3_SCND_TARGET K|
DESI_TARGET K|BGS_TARGET K|MWS_TARGET K|SCND_TARGET K|PLATE_RA D|PLATE_DEC D|COADD_NUMEXP I|COADD_EXPTIME E|
COADD_NUMNIGHT I|COADD_NUMTILE I|MEAN_DELTA_X E|RMS_DELTA_X E|MEAN_DELTA_Y E|RMS_DELTA_Y E|
MEAN_PSF_TO_FIBER_SPECFLUX E|MEAN_FIBER_RA D|STD_FIBER_RA E|MEAN_FIBER_DEC D|STD_FIBER_DEC E|MIN_MJD D|MAX_MJD D|
MEAN_MJD D|TSNR2_GPBDARK_B E|TSNR2_ELG_B E|TSNR2_GPBBRIGHT_B E|TSNR2_LYA_B E|TSNR2_BGS_B E|TSNR2_GPBBACKUP_B E|
TSNR2_QSO_B E|TSNR2_LRG_B E|TSNR2_GPBDARK_R E|TSNR2_ELG_R E|TSNR2_GPBBRIGHT_R E|TSNR2_LYA_R E|TSNR2_BGS_R E|
TSNR2_GPBBACKUP_R E|TSNR2_QSO_R E|TSNR2_LRG_R E|TSNR2_GPBDARK_Z E|TSNR2_ELG_Z E|TSNR2_GPBBRIGHT_Z E|TSNR2_LYA_Z E|
TSNR2_BGS_Z E|TSNR2_GPBBACKUP_Z E|TSNR2_QSO_Z E|TSNR2_LRG_Z E|TSNR2_GPBDARK E|TSNR2_ELG E|TSNR2_GPBBRIGHT E|
TSNR2_LYA E|TSNR2_BGS E|TSNR2_GPBBACKUP E|TSNR2_QSO E|TSNR2_LRG E|SV_NSPEC I|SV_PRIMARY L|MAIN_NSPEC I|
MAIN_PRIMARY L|ZCAT_NSPEC I|ZCAT_PRIMARY L|DESINAME 22A
"""
EXP_FIBERMAP_DM = """
TARGETID K|PRIORITY J|SUBPRIORITY D|NIGHT J|EXPID J|MJD D|TILEID J|EXPTIME D|PETAL_LOC I|DEVICE_LOC J|LOCATION K|
FIBER J|FIBERSTATUS J|FIBERASSIGN_X E|FIBERASSIGN_Y E|LAMBDA_REF E|PLATE_RA D|PLATE_DEC D|NUM_ITER K|FIBER_X D|
FIBER_Y D|DELTA_X D|DELTA_Y D|FIBER_RA D|FIBER_DEC D|PSF_TO_FIBER_SPECFLUX D|IN_COADD_B L|IN_COADD_R L|IN_COADD_Z L
"""
REDSHIFTS_DM = "TARGETID K|CHI2 D|COEFF 10D|Z D|ZERR D|ZWARN K|NPIXELS K|SPECTYPE 6A|SUBTYPE 20A|NCOEFF K|DELTACHI2 D"
WIDTH = {"K": 8, "J": 4, "I": 2, "B": 1, "D": 8, "E": 4, "L": 1}
SV_MASKS = {"sv1", "sv2", "sv3", "cmx"}


def parse(spec: str) -> list[tuple[str, str]]:
    return [tuple(item.split()) for item in spec.replace("\n", "").split("|")]


def width(tform: str) -> int:
    repeat, code = re.fullmatch(r"(\d*)([A-Z])", tform).groups()
    return int(repeat or 1) * (1 if code == "A" else WIDTH[code])


def layout(header: fits.Header) -> list[tuple[str, str]]:
    return [(header[f"TTYPE{i}"], header[f"TFORM{i}"].strip()) for i in range(1, header["TFIELDS"] + 1)]


def read(path: Path, hdu: str) -> Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitsWarning)  # DESI's TUNIT 'nanomaggy' is not a FITS unit
        return Table.read(path, hdu=hdu)


def frame(table: Table, names: list[str]) -> pd.DataFrame:
    """Columns as pandas, FITS strings decoded."""
    df = table[names].to_pandas()
    for name in names:
        if df[name].dtype == object:
            df[name] = df[name].str.decode("ascii")
    return df


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleManifest, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    manifest = generate_sample(tmp_path_factory.mktemp("dr1"), SampleConfig(n_rows=N_ROWS, seed=7),
                               progress=lambda done, total: calls.append((done, total)))
    return manifest, calls


@pytest.fixture(scope="module")
def sample(generated) -> SampleManifest:
    return generated[0]


def files(sample: SampleManifest, kind: str) -> list:
    return [f for f in sample.files if f.kind == kind]


@pytest.fixture(scope="module")
def zpix(sample: SampleManifest) -> dict[tuple[str, str], Table]:
    return {(f.survey, f.program): read(f.path, "ZCATALOG") for f in files(sample, "zpix")}


@pytest.fixture(scope="module")
def zall(sample: SampleManifest) -> Table:
    return read(files(sample, "zall")[0].path, "ZCATALOG")


def test_files_named_and_placed_like_dr1(sample):
    root = sample.root
    zpix_files = files(sample, "zpix")
    assert sorted((f.survey, f.program) for f in zpix_files) == sorted(SampleConfig().programs)
    for f in zpix_files:
        assert ZPIX_RE.fullmatch(f.path.name)
        assert f.path.parent == root / "spectro/redux/iron/zcatalog/v1"
    (zall_file,) = files(sample, "zall")
    assert ZALL_RE.fullmatch(zall_file.path.name) and zall_file.path.name == "zall-pix-iron.fits"
    for f in files(sample, "fastspec"):
        match = FASTSPEC_RE.fullmatch(f.path.name)
        assert match and f.path.parent == root / "vac/dr1/fastspecfit/iron/v3.0/catalogs"
        assert (match.group(4) is not None) == ((f.survey, f.program) in {("main", "bright"), ("main", "dark")})
    coadds = files(sample, "coadd")
    assert len(coadds) == 2 and len(files(sample, "redrock")) == 2
    for f in coadds:
        pix = int(f.path.stem.split("-")[-1])
        assert f.path == root / f"spectro/redux/iron/healpix/main/dark/{pix // 100}/{pix}/coadd-main-dark-{pix}.fits"
        assert (f.path.parent / f"redrock-main-dark-{pix}.fits").exists()
    assert sample.truth_voids == root / "truth/planted_voids.fits"
    assert SampleManifest.from_json(root, (root / "sample-manifest.json").read_text()) == sample
    assert not list(root.rglob("*.part")) and not list(root.glob(".sample-*"))


def test_every_file_opens_and_verifies(sample):
    for path in [f.path for f in sample.files] + [sample.truth_voids]:
        with fits.open(path, checksum=False) as hdul:
            hdul.verify("exception")
            assert len(hdul) >= 2


def test_zpix_hdus_headers_and_layout(sample):
    full = parse(ZCATALOG_DM)
    assert len(full) == 136 and sum(width(t) for _, t in full) == 787
    zall_only = {"SURVEY", "PROGRAM", "SV_NSPEC", "SV_PRIMARY", "MAIN_NSPEC", "MAIN_PRIMARY"}
    for f in files(sample, "zpix"):
        with fits.open(f.path) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "ZCATALOG", "EXP_FIBERMAP"]
            assert hdul[0].header["ZCATVER"] == "v1" and hdul[0].header["NAXIS"] == 0
            head = hdul["ZCATALOG"].header
            for key, value in (("SPGRP", "healpix"), ("HPXNSIDE", 64), ("HPXNEST", True), ("SURVEY", f.survey),
                               ("PROGRAM", f.program), ("ZCATVER", "v1"), ("TEMNAM00", "GALAXY")):
                assert head[key] == value, key
            assert head["RRVER"].startswith("0.15") and head["NAXIS2"] == f.rows
            if f.survey == "main":
                masks = {"DESI_TARGET", "BGS_TARGET", "MWS_TARGET", "SCND_TARGET"}
            else:
                masks = {f"SV3_{m}_TARGET" for m in ("DESI", "BGS", "MWS", "SCND")} | {
                    "DESI_TARGET", "BGS_TARGET", "MWS_TARGET"}
            expected = [(n, t) for n, t in full if n not in zall_only and (not n.endswith("_TARGET") or n in masks
                                                                              or n == "FA_TARGET")]
            assert layout(head) == expected
            absent = [t for n, t in full if (n, t) not in expected]
            assert head["NAXIS1"] == 787 - sum(width(t) for t in absent)
            assert head["NAXIS1"] == (664 if f.survey == "main" else 688)
            units = {head[f"TTYPE{i}"]: head.get(f"TUNIT{i}") for i in range(1, head["TFIELDS"] + 1)}
            assert units["TARGET_RA"] == "deg" and units["FLUX_R"] == "nanomaggy" and units["MIN_MJD"] == "d"
            exp = hdul["EXP_FIBERMAP"].header
            assert layout(exp) == parse(EXP_FIBERMAP_DM) and exp["NAXIS1"] == 162 + 3


def test_exact_rows_healpix_and_ids(sample, zpix):
    assert sum(f.rows for f in files(sample, "zpix")) == N_ROWS
    assert sum(len(t) for t in zpix.values()) == N_ROWS
    for (survey, _program), t in zpix.items():
        ra, dec = np.asarray(t["TARGET_RA"]), np.asarray(t["TARGET_DEC"])
        pix = hp.ang2pix(64, ra, dec, nest=True, lonlat=True)
        assert np.array_equal(t["HEALPIX"], pix) and np.array_equal(t["SPGRPVAL"], pix)
        assert len(np.unique(t["TARGETID"])) == len(t)
        sky = (np.asarray(t["DESI_TARGET"] if survey == "main" else t["SV3_DESI_TARGET"]) >> 32) & 1
        tid = (t["RELEASE"].astype(np.int64) << 42) | (t["BRICKID"].astype(np.int64) << 22) | t["BRICK_OBJID"]
        assert np.array_equal(t["TARGETID"], tid | (sky.astype(np.int64) << 59))
        assert in_footprint(ra, dec).all()
        names = [f"DESI J{np.trunc(r * 1e4) / 1e4:08.4f}{np.trunc(d * 1e4) / 1e4:+08.4f}" for r, d in zip(ra, dec)]
        assert list(t["DESINAME"]) == names
        assert np.array_equal(t["ZCAT_NSPEC"], np.ones(len(t))) and t["ZCAT_PRIMARY"].all()


def test_repeats_share_target_and_position(zpix):
    stacked = pd.concat([t["TARGETID", "TARGET_RA", "TARGET_DEC", "Z"].to_pandas() for t in zpix.values()])
    counts = stacked.groupby("TARGETID").size()
    assert counts.max() == 2
    fraction = (counts == 2).mean()
    assert 0.05 < fraction < 0.09, fraction
    twice = stacked[stacked.TARGETID.isin(counts[counts == 2].index)].groupby("TARGETID")
    assert (twice.TARGET_RA.nunique() == 1).all() and (twice.TARGET_DEC.nunique() == 1).all()
    assert (twice.Z.nunique() == 2).mean() > 0.99  # new redshift noise


def test_zall_is_sorted_union_with_desi_primary_rule(zpix, zall):
    names = list(zall.colnames)
    assert names[:4] == ["TARGETID", "SURVEY", "PROGRAM", "HEALPIX"]
    assert names[-6:] == ["MAIN_NSPEC", "MAIN_PRIMARY", "SV_NSPEC", "SV_PRIMARY", "ZCAT_NSPEC", "ZCAT_PRIMARY"]
    assert "DESINAME" not in names
    assert len(zall) == N_ROWS
    df = frame(zall, ["TARGETID", "SURVEY", "PROGRAM", "HEALPIX", "ZWARN", "TSNR2_LRG", "Z", "DESI_TARGET",
                      "SV3_DESI_TARGET", "MAIN_NSPEC", "MAIN_PRIMARY", "SV_NSPEC", "SV_PRIMARY", "ZCAT_NSPEC",
                      "ZCAT_PRIMARY"])
    assert set(df.SURVEY) == {"main", "sv3"} and set(df.PROGRAM) == {"backup", "bright", "dark"}
    keys = df[["SURVEY", "PROGRAM", "HEALPIX", "TARGETID"]]
    assert keys.equals(keys.sort_values(["SURVEY", "PROGRAM", "HEALPIX", "TARGETID"]).reset_index(drop=True))

    union = pd.concat([t["TARGETID", "Z", "ZWARN"].to_pandas().assign(SURVEY=s, PROGRAM=p)
                       for (s, p), t in zpix.items()])
    merged = df.merge(union, on=["TARGETID", "SURVEY", "PROGRAM"], suffixes=("", "_zpix"), validate="1:1")
    assert len(merged) == N_ROWS
    assert (merged.Z_zpix == merged.Z).all() and (merged.ZWARN_zpix == merged.ZWARN).all()
    assert (df.loc[df.SURVEY == "sv3", "DESI_TARGET"] == 0).all()
    assert (df.loc[df.SURVEY == "main", "SV3_DESI_TARGET"] == 0).all()
    assert (df.loc[df.SURVEY == "sv3", "SV3_DESI_TARGET"] != 0).all()

    def primary(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        ranked = frame.assign(bad=frame.ZWARN != 0).sort_values(["TARGETID", "bad", "TSNR2_LRG"],
                                                                ascending=[True, True, False])
        first = ~ranked.TARGETID.duplicated()
        nspec = frame.groupby("TARGETID").TARGETID.transform("size")
        return first.reindex(frame.index), nspec

    for prefix, member in (("ZCAT", np.ones(len(df), bool)), ("MAIN", df.SURVEY == "main"),
                           ("SV", df.SURVEY.str.startswith("sv"))):
        expected_primary, expected_nspec = primary(df[member])
        assert (df.loc[member, f"{prefix}_PRIMARY"] == expected_primary).all(), prefix
        assert (df.loc[member, f"{prefix}_NSPEC"] == expected_nspec).all(), prefix
        assert not df.loc[~member, f"{prefix}_PRIMARY"].any() and (df.loc[~member, f"{prefix}_NSPEC"] == 0).all()
    assert (df.groupby("TARGETID").ZCAT_PRIMARY.sum() == 1).all()
    assert (df.ZCAT_NSPEC == 2).sum() > 0


def test_planted_voids_are_empty_with_astropy_distances(sample, zpix):
    with fits.open(sample.truth_voids) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "VOIDS"]
        head = hdul["VOIDS"].header
        assert head["COSMO"] == "Planck18" and head["SEED"] == 7
        assert head["H0"] == pytest.approx(67.66) and head["OM0"] == pytest.approx(0.30966)
        assert layout(head) == [("VOID", "K"), ("X", "D"), ("Y", "D"), ("Z", "D"), ("RADIUS", "D"), ("RA", "D"),
                                ("DEC", "D"), ("REDSHIFT", "D")]
        voids = Table(hdul["VOIDS"].data)
    assert len(voids) == 40
    centers = np.stack([voids["X"], voids["Y"], voids["Z"]], axis=1)
    assert ((voids["RADIUS"] >= 15) & (voids["RADIUS"] <= 35)).all() and (voids["REDSHIFT"] < 0.2).all()
    d_center = Planck18.comoving_distance(voids["REDSHIFT"]).value * Planck18.h
    assert np.allclose(np.linalg.norm(centers, axis=1), d_center, rtol=1e-6)
    assert in_footprint(voids["RA"], voids["DEC"]).all()
    gaps = np.linalg.norm(centers[:, None] - centers[None], axis=2) - voids["RADIUS"][:, None] - voids["RADIUS"][None]
    assert (gaps[~np.eye(len(voids), dtype=bool)] > 0).all()

    near = 0
    for t in zpix.values():
        sel = (t["SPECTYPE"] != "STAR") & (t["Z"] < 0.25)
        if not sel.any():
            continue
        ra, dec, z = (np.radians(t["TARGET_RA"][sel]), np.radians(t["TARGET_DEC"][sel]), t["Z"][sel])
        d = Planck18.comoving_distance(np.asarray(z)).value * Planck18.h
        xyz = np.stack([d * np.cos(dec) * np.cos(ra), d * np.cos(dec) * np.sin(ra), d * np.sin(dec)], axis=1)
        dist = np.linalg.norm(xyz[:, None] - centers[None], axis=2) / voids["RADIUS"][None]
        assert dist.min() > 1.0
        near += int((dist.min(axis=1) < 1.5).sum())
    assert near >= 10  # galaxies do sit around the voids: without the planting ~17 of them land inside


def test_content_is_desi_like(zpix):
    main = {p: t for (s, p), t in zpix.items() if s == "main"}
    stacked = pd.concat([frame(t, ["ZWARN", "SPECTYPE", "Z", "COADD_FIBERSTATUS", "TSNR2_LRG"])
                         for t in zpix.values()])
    assert 0.92 < (stacked.ZWARN == 0).mean() < 0.98
    assert (stacked.COADD_FIBERSTATUS == 0).mean() > 0.9 and (stacked.TSNR2_LRG > 0).all()
    bright, dark, backup = main["bright"], main["dark"], main["backup"]
    bgs = (bright["DESI_TARGET"] & (1 << 60)) != 0
    assert 0.6 < bgs.mean() < 0.8 and (bright["BGS_TARGET"][bgs] != 0).all()
    mws = (bright["DESI_TARGET"] & (1 << 61)) != 0
    assert (bright["MWS_TARGET"][mws] != 0).all() and (bright["SPECTYPE"][mws] == "STAR").all()
    assert np.median(bright["Z"][bgs & (bright["ZWARN"] == 0)]) == pytest.approx(0.2, abs=0.07)
    for bit, lo, hi in ((1, 0.4, 1.1), (2, 0.6, 1.6), (4, 0.5, 4.0)):  # LRG, ELG, QSO
        good = ((dark["DESI_TARGET"] & bit) != 0) & ((dark["DESI_TARGET"] & (1 << 60)) == 0) & (dark["ZWARN"] == 0)
        assert good.sum() > 50 and ((dark["Z"][good] > lo - 0.01) & (dark["Z"][good] < hi + 0.01)).all()
    qso = ((dark["DESI_TARGET"] & 4) != 0) & (dark["ZWARN"] == 0)
    lrg = ((dark["DESI_TARGET"] & 1) != 0) & ((dark["DESI_TARGET"] & (1 << 60)) == 0) & (dark["ZWARN"] == 0)
    w1, w2 = (np.clip(dark[f"FLUX_{b}"], 1e-3, None) for b in ("W1", "W2"))
    w1w2 = -2.5 * np.log10(w1 / w2)  # AB colour; AGN and QSOs are red
    assert np.median(w1w2[qso]) > np.median(w1w2[lrg]) + 0.5
    stars = backup["SPECTYPE"] == "STAR"
    assert stars.mean() > 0.95 and (np.abs(backup["Z"][stars]) < 0.002).all()
    assert set(np.unique(dark["SPECTYPE"]).astype(str)) == {"GALAXY", "QSO", "STAR"}


def test_exposures_match_the_coadd_summary(sample, zpix):
    f = next(f for f in files(sample, "zpix") if (f.survey, f.program) == ("main", "dark"))
    exp = read(f.path, "EXP_FIBERMAP").to_pandas()
    t = zpix[("main", "dark")].to_pandas()[["TARGETID", "COADD_NUMEXP", "COADD_EXPTIME", "MIN_MJD", "MAX_MJD",
                                            "MEAN_FIBER_DEC", "STD_FIBER_DEC"]]
    per = exp.groupby("TARGETID").agg(n=("MJD", "size"), exptime=("EXPTIME", "sum"), lo=("MJD", "min"),
                                      hi=("MJD", "max"), dec=("FIBER_DEC", "mean"),
                                      dec_std=("FIBER_DEC", lambda x: np.std(x) * 3600))
    joined = t.set_index("TARGETID").join(per)
    assert (joined.n == joined.COADD_NUMEXP).all() and joined.n.between(1, 4).all()
    assert np.allclose(joined.exptime, joined.COADD_EXPTIME, rtol=1e-5)
    assert np.allclose(joined.lo, joined.MIN_MJD) and np.allclose(joined.hi, joined.MAX_MJD)
    assert np.allclose(joined.dec, joined.MEAN_FIBER_DEC, rtol=0, atol=1e-9)
    assert np.allclose(joined.dec_std, joined.STD_FIBER_DEC, rtol=1e-4, atol=1e-4)
    dates = pd.to_datetime("1858-11-17") + pd.to_timedelta(np.floor(exp.MJD - 1.0), unit="D")
    assert (dates.dt.strftime("%Y%m%d").astype(int) == exp.NIGHT).all()
    assert (exp.LOCATION == exp.PETAL_LOC * 1000 + exp.DEVICE_LOC).all()
    assert exp.IN_COADD_B.dtype == bool and exp.IN_COADD_B.mean() > 0.9


def test_fastspec_row_matched_and_selected(sample, zpix):
    seen: dict[tuple[str, str], list[int]] = {}
    for f in files(sample, "fastspec"):
        with fits.open(f.path) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "METADATA", "SPECPHOT", "FASTSPEC"]
            meta_head = hdul["METADATA"].header
            forms = dict(layout(meta_head))
            assert forms["ZWARN"] == "B" and meta_head[f"TZERO{list(forms).index('ZWARN') + 1}"] == -128
            assert forms["COADD_FIBERSTATUS"] == "K" and forms["SURVEY"] == f"{max(3, len(f.survey))}A"
        meta, specphot, fastspec = (read(f.path, h) for h in ("METADATA", "SPECPHOT", "FASTSPEC"))
        for table in (meta, specphot, fastspec):
            assert table.colnames[0] == "TARGETID" and np.array_equal(table["TARGETID"], meta["TARGETID"])
        assert len(meta) == f.rows > 0
        z = zpix[(f.survey, f.program)]
        index = {tid: i for i, tid in enumerate(z["TARGETID"])}
        rows = [index[t] for t in meta["TARGETID"]]
        # int8 is TFORM 'B' + TZERO -128 (fitsio reads it back as int8, astropy as float): only bits 0-6 fit
        assert np.array_equal(np.asarray(meta["ZWARN"]), np.asarray(z["ZWARN"][rows]) & 0x7F)
        assert np.array_equal(meta["Z"], z["Z"][rows]) and np.array_equal(meta["RA"], z["TARGET_RA"][rows])
        for line in ("HALPHA", "HBETA", "OIII_5007", "NII_6584", "SII_6716", "SII_6731", "OI_6300"):
            for q in ("FLUX", "FLUX_IVAR", "EW"):
                assert fastspec[f"{line}_{q}"].dtype.str == ">f4"
        assert {"HALPHA_BROAD_FLUX", "HALPHA_BROAD_FLUX_IVAR", "HALPHA_BROAD_SIGMA"} <= set(fastspec.colnames)
        assert {"LOGMSTAR", "SFR"} <= set(specphot.colnames)
        hpx = FASTSPEC_RE.fullmatch(f.path.name).group(4)
        if hpx is not None:
            assert (np.asarray(meta["HEALPIX"]) >> 12 == int(hpx)).all()
        seen.setdefault((f.survey, f.program), []).extend(meta["TARGETID"])
    for key, t in zpix.items():
        selected = (t["Z"] > 1e-3) & (t["OBJTYPE"] == "TGT") & ((t["ZWARN"] & (1 << 9)) == 0)
        assert sorted(seen.get(key, [])) == sorted(t["TARGETID"][selected]), key
        assert (~selected).sum() > 0
    dark = read(next(f.path for f in files(sample, "fastspec") if f.program == "dark"), "FASTSPEC")
    measured = dark["HALPHA_FLUX_IVAR"] > 0
    assert measured.sum() > 0 and (dark["HALPHA_FLUX"][~measured] == 0).all()


def test_coadd_and_redrock_files(sample, zpix):
    grids = {"B": (3600.0, 5800.0, 2751), "R": (5760.0, 7620.0, 2326), "Z": (7520.0, 9824.0, 2881)}
    dark = zpix[("main", "dark")]
    for f in files(sample, "coadd"):
        pix = int(f.path.stem.split("-")[-1])
        with fits.open(f.path) as hdul:
            names = [h.name for h in hdul]
            assert names == ["PRIMARY", "FIBERMAP", "EXP_FIBERMAP"] + [
                f"{c}_{k}" for c in "BRZ" for k in ("WAVELENGTH", "FLUX", "IVAR", "MASK", "RESOLUTION")] + ["SCORES"]
            h0 = hdul[0].header
            assert (h0["HPXPIXEL"], h0["SPGRPVAL"], h0["HPXNSIDE"], h0["HPXNEST"]) == (pix, pix, 64, True)
            assert (h0["SURVEY"], h0["PROGRAM"], h0["SPGRP"]) == ("main", "dark", "healpix")
            fibermap = Table(hdul["FIBERMAP"].data)
            nspec = len(fibermap)
            assert 0 < nspec <= 20 and nspec == f.rows
            assert (fibermap["TARGETID"] == np.sort(dark["TARGETID"][dark["HEALPIX"] == pix])[:nspec]).all()
            for camera, (lo, hi, nwave) in grids.items():
                wave = hdul[f"{camera}_WAVELENGTH"].data
                assert wave.dtype.str == ">f8" and wave.shape == (nwave,)
                assert wave[0] == lo and wave[-1] == pytest.approx(hi) and np.allclose(np.diff(wave), 0.8)
                assert hdul[f"{camera}_WAVELENGTH"].header["BUNIT"] == "Angstrom"
                flux, ivar = hdul[f"{camera}_FLUX"].data, hdul[f"{camera}_IVAR"].data
                assert flux.dtype.str == ">f4" and ivar.dtype.str == ">f4" and flux.shape == (nspec, nwave)
                assert hdul[f"{camera}_FLUX"].header["BUNIT"] == "10**-17 erg/(s cm2 Angstrom)"
                assert hdul[f"{camera}_MASK"].header["BITPIX"] == 32 and hdul[f"{camera}_MASK"].data.shape == flux.shape
                res = hdul[f"{camera}_RESOLUTION"].data
                assert res.dtype.str == ">f4" and res.shape == (nspec, 11, nwave)
                assert np.allclose(res.sum(axis=1), 1.0, atol=1e-5) and (res.argmax(axis=1) == 5).all()
            scores = Table(hdul["SCORES"].data)
            assert (scores["TARGETID"] == fibermap["TARGETID"]).all() and hdul["SCORES"].header["NAXIS1"] == 172
        with fits.open(f.path.parent / f"redrock-main-dark-{pix}.fits") as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "REDSHIFTS", "FIBERMAP", "EXP_FIBERMAP", "TSNR2"]
            assert hdul[0].header["TEMNAM00"] == "GALAXY" and hdul[0].header["HPXPIXEL"] == pix
            assert layout(hdul["REDSHIFTS"].header) == parse(REDSHIFTS_DM) and hdul["REDSHIFTS"].header["NAXIS1"] == 170
            assert hdul["TSNR2"].header["NAXIS1"] == 136
            z = Table(hdul["REDSHIFTS"].data)
            assert (z["TARGETID"] == fibermap["TARGETID"]).all()
            assert (Table(hdul["TSNR2"].data)["TARGETID"] == fibermap["TARGETID"]).all()
            assert set(hdul["EXP_FIBERMAP"].data["TARGETID"]) == set(fibermap["TARGETID"])
            row = {tid: i for i, tid in enumerate(dark["TARGETID"])}
            assert np.array_equal(z["Z"], dark["Z"][[row[t] for t in z["TARGETID"]]])


def test_spectra_carry_the_fastspec_halpha(tmp_path):
    config = SampleConfig(n_rows=3000, seed=5, programs=(("main", "bright"),), write_zall=False, n_voids=5)
    manifest = generate_sample(tmp_path, config)
    coadds = files(manifest, "coadd")
    assert {(f.survey, f.program) for f in coadds} == {("main", "bright")}  # main-dark absent: largest program
    lines = pd.concat([read(f.path, "METADATA")["TARGETID", "Z"].to_pandas().join(
        read(f.path, "FASTSPEC")["HALPHA_FLUX", "HALPHA_FLUX_IVAR", "HALPHA_BROAD_FLUX"].to_pandas())
        for f in files(manifest, "fastspec")]).set_index("TARGETID")
    ratios = []
    for f in coadds:
        with fits.open(f.path) as hdul:
            tids = hdul["FIBERMAP"].data["TARGETID"]
            wave = np.concatenate([hdul[f"{c}_WAVELENGTH"].data for c in "BRZ"])
            flux = np.concatenate([hdul[f"{c}_FLUX"].data for c in "BRZ"], axis=1)
        keep = np.concatenate([[True], np.diff(wave) > 0])  # drop the camera overlaps
        wave, flux = wave[keep], flux[:, keep]
        for i, tid in enumerate(tids):
            if tid not in lines.index:
                continue
            row = lines.loc[tid]
            snr = row.HALPHA_FLUX * np.sqrt(row.HALPHA_FLUX_IVAR)
            if snr < 15 or row.HALPHA_BROAD_FLUX != 0:
                continue
            center = 6564.613 * (1 + row.Z)
            window = np.abs(wave - center) < 8
            side = (np.abs(wave - center) > 40) & (np.abs(wave - center) < 80)
            excess = (flux[i, window] - np.median(flux[i, side])).sum() * 0.8
            ratios.append(excess / row.HALPHA_FLUX)
    assert len(ratios) >= 5 and 0.85 < np.median(ratios) < 1.1, ratios


def test_deterministic_bytes(tmp_path):
    config = SampleConfig(n_rows=1500, seed=11, n_voids=10, coadd_nspec=5, n_coadd_pixels=1)

    def digests(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    first = digests(generate_sample(tmp_path / "a", config).root)
    second = digests(generate_sample(tmp_path / "b", config).root)
    assert first == second and len(first) > 10
    other = digests(generate_sample(tmp_path / "c", SampleConfig(n_rows=1500, seed=12, n_voids=10,
                                                                 coadd_nspec=5, n_coadd_pixels=1)).root)
    key = "spectro/redux/iron/zcatalog/v1/zpix-main-dark.fits"
    assert other[key] != first[key]


def test_single_program_without_extras(tmp_path):
    config = SampleConfig(n_rows=800, programs=(("main", "dark"),), write_zall=False, write_fastspec=False,
                          write_spectra=False, n_voids=5)
    manifest = generate_sample(tmp_path, config)
    assert [(f.kind, f.rows) for f in manifest.files] == [("zpix", 800)]
    t = read(manifest.files[0].path, "ZCATALOG")
    assert len(np.unique(t["TARGETID"])) == 800


def test_progress_and_footprint(generated):
    calls = generated[1]
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (N_ROWS, N_ROWS) and len(calls) > 10
    ra, dec = hp.pix2ang(128, np.arange(hp.nside2npix(128)), nest=True, lonlat=True)
    inside = in_footprint(ra, dec)
    assert inside.sum() * hp.nside2pixarea(128, degrees=True) == pytest.approx(14_000, rel=0.03)
    assert in_footprint(np.array([180.0, 10.0, 100.0]), np.array([30.0, 0.0, -60.0])).tolist() == [True, True, False]


def test_config_rejects_mistakes():
    with pytest.raises(ValueError, match="not a DR1"):
        SampleConfig(programs=(("main", "grey"),))
    with pytest.raises(ValueError, match="did you mean 'n_rows'"):
        SampleConfig.from_dict({"n_row": 10})
    assert SampleConfig.from_dict({"programs": [["main", "dark"]]}).programs == (("main", "dark"),)
