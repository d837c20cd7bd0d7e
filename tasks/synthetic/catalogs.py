"""Catalog files fed block by block: zpix per program, zall-pix, and the FastSpecFit merged catalogs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .blocks import Block, Context
from .columns import (
    EXP_FIBERMAP,
    FASTSPEC_FASTSPEC,
    FASTSPEC_SPECPHOT,
    Col,
    fastspec_metadata_columns,
    pack,
    zall_columns,
    zpix_columns,
)
from .config import SampleFile
from .fitsstream import FitsWriter, Keywords, Spool
from .observation import ZWARN
from .paths import FASTSPEC_SPLIT, SPECPROD, ZCATVER, fastspec_path, zall_path, zpix_path

RRVER = "0.15.0"
TEMPLATES = (("GALAXY", "2.6"), ("QSO:::HIZ", "0.1"), ("QSO:::LOZ", "1.0"), ("STAR:::A", "0.1"),
             ("STAR:::B", "0.1"), ("STAR:::CV", "0.1"), ("STAR:::F", "0.1"), ("STAR:::G", "0.1"),
             ("STAR:::K", "0.1"), ("STAR:::M", "0.1"), ("STAR:::WD", "0.1"))
NSIDE = 64


def redrock_keywords() -> list[tuple[str, object, str]]:
    """RRVER and the TEMNAMnn/TEMVERnn template list."""
    cards: list[tuple[str, object, str]] = [("RRVER", RRVER, "Redrock version")]
    for i, (name, version) in enumerate(TEMPLATES):
        cards += [(f"TEMNAM{i:02d}", name, f"Redrock template {i:02d} name"),
                  (f"TEMVER{i:02d}", version, f"Redrock template {i:02d} version")]
    return cards


def healpix_keywords() -> list[tuple[str, object, str]]:
    """SPGRP/HPXNSIDE/HPXNEST of healpix-grouped products."""
    return [("SPGRP", "healpix", "Spectral grouping method"), ("HPXNSIDE", NSIDE, "Healpix nside"),
            ("HPXNEST", True, "Nested healpix (not ring)")]


def _zcat_keywords(survey: str | None, program: str | None) -> Keywords:
    cards = [("LONGSTRN", "OGIP 1.0", "The OGIP long string convention may be used"), *redrock_keywords(),
             *healpix_keywords()]
    if survey is not None:
        cards += [("SURVEY", survey, "DESI sub-survey (e.g. sv1, sv3, main)"),
                  ("PROGRAM", program, "DESI program (e.g. dark, bright)")]
    return [*cards, ("ZCATVER", ZCATVER, "Version of zcatalog files")]


class _Zpix:
    """zpix-{survey}-{program}.fits: ZCATALOG streamed into the file, EXP_FIBERMAP spooled behind it."""

    def __init__(self, root: Path, tmp: Path, survey: str, program: str):
        self.survey, self.program = survey, program
        self.cols = zpix_columns(survey)
        self.out = FitsWriter(zpix_path(root, survey, program))
        self.out.write_primary([("ZCATVER", ZCATVER, "Version of zcatalog files")])
        self.out.begin_table(self.cols, "ZCATALOG", _zcat_keywords(survey, program))
        self.exp = Spool(tmp / f"exp-{survey}-{program}.raw", EXP_FIBERMAP)

    def add(self, rows: dict, exp: dict, n: int, n_exp: int) -> None:
        self.out.write_rows(pack(self.cols, rows, n))
        self.exp.write(pack(EXP_FIBERMAP, exp, n_exp))

    def close(self) -> SampleFile:
        rows = self.out.end_table()
        self.out.copy_table(EXP_FIBERMAP, "EXP_FIBERMAP", [self.exp])
        self.out.close()
        self.exp.remove()
        return SampleFile(self.out.path, "zpix", rows, self.survey, self.program)


class _Fastspec:
    """One merged FastSpecFit catalog: METADATA streamed, SPECPHOT and FASTSPEC spooled, all row-matched."""

    def __init__(self, path: Path, tmp: Path, survey: str, program: str):
        self.survey, self.program = survey, program
        self.meta_cols = fastspec_metadata_columns(survey)
        self.out = FitsWriter(path)
        self.out.write_primary([("SPECPROD", SPECPROD, "Spectroscopic production name"),
                                ("COADDTYP", "healpix", "Type of spectral coadd"),
                                ("SURVEY", survey, "DESI sub-survey"), ("PROGRAM", program, "DESI program")])
        self.out.begin_table(self.meta_cols, "METADATA")
        self.specphot = Spool(tmp / f"{path.stem}-specphot.raw", FASTSPEC_SPECPHOT)
        self.fastspec = Spool(tmp / f"{path.stem}-fastspec.raw", FASTSPEC_FASTSPEC)

    def add(self, rows: dict, n: int) -> None:
        self.out.write_rows(pack(self.meta_cols, rows, n))
        self.specphot.write(pack(FASTSPEC_SPECPHOT, rows, n))
        self.fastspec.write(pack(FASTSPEC_FASTSPEC, rows, n))

    def close(self) -> SampleFile:
        rows = self.out.end_table()
        self.out.copy_table(FASTSPEC_SPECPHOT, "SPECPHOT", [self.specphot])
        self.out.copy_table(FASTSPEC_FASTSPEC, "FASTSPEC", [self.fastspec])
        self.out.close()
        self.specphot.remove()
        self.fastspec.remove()
        return SampleFile(self.out.path, "fastspec", rows, self.survey, self.program)


def fastspec_selection(rows: dict) -> np.ndarray:
    """FastSpecFit's sample: Z > 1e-3, OBJTYPE == 'TGT', NODATA not set."""
    return (rows["Z"] > 1e-3) & (rows["OBJTYPE"] == b"TGT") & ((rows["ZWARN"] & ZWARN["NODATA"]) == 0)


def _fastspec_values(rows: dict, survey: str, program: str) -> dict:
    n = len(rows["TARGETID"])
    return {
        **rows,
        "SURVEY": np.full(n, survey.encode()), "PROGRAM": np.full(n, program.encode()),
        "RA": rows["TARGET_RA"], "DEC": rows["TARGET_DEC"], "Z_RR": rows["Z"],
        "ZWARN": rows["ZWARN"] & 0x7F,  # FastSpecFit stores ZWARN as int8: only bits 0-6 survive
        "LS_ID": (rows["RELEASE"].astype(np.int64) << 40) | (rows["BRICKID"].astype(np.int64) << 16)
        | (rows["BRICK_OBJID"].astype(np.int64) & 0xFFFF),
    }


class CatalogWriters:
    """All catalog outputs of one run, fed blocks in NESTED order."""

    def __init__(self, root: Path, tmp: Path, ctx: Context):
        self.root, self.tmp, self.ctx = root, tmp, ctx
        config = ctx.config
        self.programs = [(p.survey, p.program) for p in ctx.programs]
        self.zpix: dict[int, _Zpix] = {}
        self.fastspec: dict[int, _Fastspec] = {}
        self.fastspec_pixel: dict[int, int] = {}
        self.done: list[SampleFile] = []
        self.counts = np.zeros((len(self.programs), 12 * NSIDE**2), dtype=np.int64)
        surveys = [s for s, _ in self.programs]
        self.zall_cols: list[Col] = zall_columns(surveys)
        self.zall: dict[int, Spool] | None = None
        if config.write_zall:
            self.zall = {
                p: Spool(tmp / f"zall-{s}-{g}.raw", self.zall_cols) for p, (s, g) in enumerate(self.programs)
            }

    def add(self, block: Block, nside1_pixel: int) -> None:
        """Write one block's rows into every catalog."""
        rows, exp = block.rows, block.exposures
        for p, (survey, program) in enumerate(self.programs):
            sel = rows["_PROG"] == p
            n = int(sel.sum())
            if n == 0:
                continue
            part = {k: v[sel] for k, v in rows.items()}
            exp_sel = sel[exp["_ROW"]]
            part_exp = {k: v[exp_sel] for k, v in exp.items()}
            self.counts[p] += np.bincount(part["HEALPIX"], minlength=self.counts.shape[1])
            if p not in self.zpix:
                self.zpix[p] = _Zpix(self.root, self.tmp, survey, program)
            self.zpix[p].add(part, part_exp, n, int(exp_sel.sum()))
            if self.zall is not None:
                self.zall[p].write(pack(self.zall_cols, self._zall_values(part, survey, program, n), n))
            if self.ctx.config.write_fastspec:
                self._add_fastspec(p, part, survey, program, nside1_pixel)

    @staticmethod
    def _zall_values(rows: dict, survey: str, program: str, n: int) -> dict:
        values = dict(rows)
        for name in ("ZCAT_NSPEC", "ZCAT_PRIMARY", "MAIN_NSPEC", "MAIN_PRIMARY", "SV_NSPEC", "SV_PRIMARY"):
            values[name] = rows[f"ZALL_{name}"]
        values["SURVEY"] = np.full(n, survey.encode())
        values["PROGRAM"] = np.full(n, program.encode())
        return values

    def _add_fastspec(self, p: int, rows: dict, survey: str, program: str, nside1_pixel: int) -> None:
        sel = fastspec_selection(rows)
        n = int(sel.sum())
        if n == 0:
            return
        split = (survey, program) in FASTSPEC_SPLIT
        if p in self.fastspec and split and self.fastspec_pixel[p] != nside1_pixel:
            self.done.append(self.fastspec.pop(p).close())
        if p not in self.fastspec:
            path = fastspec_path(self.root, survey, program, nside1_pixel if split else None)
            self.fastspec[p] = _Fastspec(path, self.tmp, survey, program)
            self.fastspec_pixel[p] = nside1_pixel
        values = _fastspec_values({k: v[sel] for k, v in rows.items()}, survey, program)
        self.fastspec[p].add(values, n)

    def abort(self) -> None:
        """Drop every partial file (after an error)."""
        writers: list[_Zpix | _Fastspec] = [*self.zpix.values(), *self.fastspec.values()]
        for writer in writers:
            writer.out.abort()

    def close(self) -> list[SampleFile]:
        """Finish every file (zall last, assembled from the per-program spools in sorted order)."""
        files = list(self.done)
        files += [w.close() for _, w in sorted(self.zpix.items())]
        files += [w.close() for _, w in sorted(self.fastspec.items())]
        if self.zall is not None:
            order = sorted(self.zall, key=lambda p: self.programs[p])
            with FitsWriter(zall_path(self.root)) as out:
                out.write_primary([("ZCATVER", ZCATVER, "Version of zcatalog files")])
                rows = out.copy_table(self.zall_cols, "ZCATALOG", [self.zall[p] for p in order],
                                      _zcat_keywords(None, None))
            for spool in self.zall.values():
                spool.remove()
            files.append(SampleFile(zall_path(self.root), "zall", rows, None, None))
        return sorted(files, key=lambda f: (f.kind, str(f.path)))
