"""The AGN catalog: FastSpecFit lines (+ Legacy Surveys WISE fluxes) from the SQL catalog, classified by kernels/agn.

Rows are the catalog's `fastspec` rows (one per TARGETID, SURVEY, PROGRAM, like the DESI AGN/Galaxy VAC, which is
row-matched to FastSpecFit), read in TARGETID ranges so memory stays bounded. W1/W2 come from the `redshifts` row
of the same (TARGETID, SURVEY, PROGRAM); a row without one has no WISE diagnostic.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa

from kernels import agn
from kernels.xp import to_device, to_host
from tasks.catalog.base import SqlCatalog
from tasks.synthetic.columns import Col, pack
from tasks.synthetic.fitsstream import FitsWriter

TABLE = "agn"
CHUNK_ROWS = 200_000

_IDS = [("TARGETID", pa.int64()), ("SURVEY", pa.string()), ("PROGRAM", pa.string()), ("RA", pa.float64()),
        ("DEC", pa.float64()), ("Z", pa.float64()), ("SPECTYPE", pa.string())]
AGN_SCHEMA = pa.schema([
    *_IDS,
    ("LOG_NII_HA", pa.float64()), ("LOG_OIII_HB", pa.float64()), ("BPT_NII", pa.int16()),
    ("BPT_NII_CLASS", pa.string()), ("HALPHA_BROAD_FWHM", pa.float64()), ("W1_W2_VEGA", pa.float64()),
    ("AGN_MASKBITS", pa.int64()), ("OPT_UV_TYPE", pa.int64()), ("IR_TYPE", pa.int64()),
])

# FITS layout of the catalog (strings fixed-width: DESI SURVEY is at most 7 characters, PROGRAM and SPECTYPE 6).
_FITS_COLS = [
    Col("TARGETID", "K"), Col("SURVEY", "7A"), Col("PROGRAM", "6A"), Col("RA", "D", "deg"), Col("DEC", "D", "deg"),
    Col("Z", "D"), Col("SPECTYPE", "6A"), Col("LOG_NII_HA", "D"), Col("LOG_OIII_HB", "D"),
    Col("BPT_NII", "I"), Col("BPT_NII_CLASS", "5A"), Col("HALPHA_BROAD_FWHM", "D", "km / s"),
    Col("W1_W2_VEGA", "D", "mag"), Col("AGN_MASKBITS", "K"), Col("OPT_UV_TYPE", "K"), Col("IR_TYPE", "K"),
]

_BPT_NAMES = np.array([c.name for c in sorted(agn.BPT)])
_WISE = ("FLUX_W1", "FLUX_IVAR_W1", "FLUX_W2", "FLUX_IVAR_W2")
_SELECT = ", ".join([*(f"f.{n.lower()}" for n, _ in _IDS),
                     *(f"{'r' if c in _WISE else 'f'}.{c.lower()}" for c in agn.INPUT_COLUMNS)])


def _bounds(catalog: SqlCatalog, lo: int, chunk_rows: int) -> int | None:
    """The largest TARGETID among the next `chunk_rows` fastspec rows above `lo` (None when none are left)."""
    rows = catalog.query(f"SELECT max(targetid) FROM (SELECT targetid FROM fastspec WHERE targetid > $lo "
                         f"ORDER BY targetid LIMIT {int(chunk_rows)}) AS next_ids", {"lo": lo})
    return rows.column(0)[0].as_py()


def read_agn_inputs(catalog: SqlCatalog, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """The fastspec rows with their WISE fluxes, in TARGETID order, about `chunk_rows` rows at a time.

    A chunk ends at a whole TARGETID (its rows in every survey/program travel together), so it can run a few rows
    over `chunk_rows`. Column names are upper case.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    lo = int(np.iinfo(np.int64).min)
    while (hi := _bounds(catalog, lo, chunk_rows)) is not None:
        chunk = catalog.query(
            f"SELECT {_SELECT} FROM fastspec f LEFT JOIN redshifts r ON r.targetid = f.targetid "
            "AND r.survey = f.survey AND r.program = f.program "
            "WHERE f.targetid > $lo AND f.targetid <= $hi ORDER BY f.targetid, f.survey, f.program",
            {"lo": lo, "hi": hi})
        yield chunk.rename_columns([n.upper() for n in chunk.column_names])
        lo = hi


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    # SQL NULL (no redshifts row, or a NULL in the catalog) becomes NaN: no diagnostic from it
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False)


def classify_chunk(chunk: pa.Table, snr_min: float = 3.0, fwhm_min: float = 1200.0, wise_cut: float = 0.8,
                   gpu: bool = False) -> pa.Table:
    """One chunk of `read_agn_inputs` as AGN catalog rows (`AGN_SCHEMA`; NaN results are SQL NULLs); with `gpu`
    classified on the GPU (cupy, imported only then)."""
    cols = {c: to_device(_floats(chunk[c]), gpu) for c in agn.INPUT_COLUMNS}
    out = {k: to_host(v) for k, v in agn.classify(cols, snr_min, fwhm_min, wise_cut).items()}
    out["BPT_NII_CLASS"] = _BPT_NAMES[out["BPT_NII"]]
    ids = {name: chunk[name].cast(dtype) for name, dtype in _IDS}
    derived = {f.name: pa.array(np.asarray(out[f.name]), type=f.type, from_pandas=True)
               for f in AGN_SCHEMA if f.name not in ids}
    return pa.table({**ids, **derived}, schema=AGN_SCHEMA)


def iter_agn_catalog(catalog: SqlCatalog, chunk_rows: int = CHUNK_ROWS, snr_min: float = 3.0,
                     fwhm_min: float = 1200.0, wise_cut: float = 0.8, client: Any | None = None,
                     gpu: bool = False) -> Iterator[pa.Table]:
    """The AGN catalog chunk by chunk, in TARGETID order (bounded memory). With a Dask client the chunks are
    classified on its workers (on their GPUs with `gpu`), a few in flight while the next are read."""
    chunks = read_agn_inputs(catalog, chunk_rows)
    if client is None:
        for chunk in chunks:
            yield classify_chunk(chunk, snr_min, fwhm_min, wise_cut, gpu)
        return
    in_flight: deque = deque()
    ahead = 2 * max(1, sum(client.nthreads().values()))
    for chunk in chunks:
        in_flight.append(client.submit(classify_chunk, chunk, snr_min, fwhm_min, wise_cut, gpu, pure=False))
        if len(in_flight) >= ahead:
            yield in_flight.popleft().result()
    while in_flight:
        yield in_flight.popleft().result()


def agn_catalog(catalog: SqlCatalog, chunk_rows: int = CHUNK_ROWS, snr_min: float = 3.0,
                fwhm_min: float = 1200.0, wise_cut: float = 0.8) -> pa.Table:
    """The whole AGN catalog as one Arrow table (`AGN_SCHEMA`); use `iter_agn_catalog` for surveys that don't fit."""
    chunks = list(iter_agn_catalog(catalog, chunk_rows, snr_min, fwhm_min, wise_cut))
    return pa.concat_tables(chunks) if chunks else AGN_SCHEMA.empty_table()


def _chunks(table: pa.Table | Iterable[pa.Table]) -> Iterable[pa.Table]:
    return [table] if isinstance(table, pa.Table) else table


def summarize(table: pa.Table | Iterable[pa.Table]) -> dict[str, int]:
    """Row counts: total, per BPT_NII class, and per AGN_MASKBITS bit."""
    bit_names = [cast(str, b.name) for b in agn.AgnMaskbits]  # iterating a Flag gives single bits, all named
    counts: Counter[str] = Counter({"rows": 0, **{c.name: 0 for c in agn.BPT}, **{name: 0 for name in bit_names}})
    for chunk in _chunks(table):
        counts["rows"] += chunk.num_rows
        codes = chunk["BPT_NII"].to_numpy()
        bits = chunk["AGN_MASKBITS"].to_numpy()
        for c in agn.BPT:
            counts[c.name] += int((codes == c).sum())
        for b, name in zip(agn.AgnMaskbits, bit_names):
            counts[name] += int(((bits & int(b)) != 0).sum())
    return dict(counts)


def _bit_keywords() -> list[tuple[str, object, str]]:
    return [(f"{prefix}{int(flag).bit_length() - 1:02d}", flag.name, f"{column} bit")
            for prefix, column, enum in (("AGNB", "AGN_MASKBITS", agn.AgnMaskbits),
                                         ("OPTB", "OPT_UV_TYPE", agn.OptUvType), ("IRB", "IR_TYPE", agn.IrType))
            for flag in enum]


def fits_rows(table: pa.Table | Iterable[pa.Table], path: Path, snr_min: float = 3.0, fwhm_min: float = 1200.0,
              wise_cut: float = 0.8) -> Iterator[pa.Table]:
    """Pass the catalog's chunks through, writing each into the FITS HDU `AGN` at `path` on the way (streamed; the
    file is moved into place when the last chunk has passed, never if the consumer stops early).

    The cuts are recorded in the header with the bit names.
    """
    keywords = [("SNRMIN", snr_min, "S/N cut on every line and WISE band"),
                ("FWHMMIN", fwhm_min, "[km/s] broad-line FWHM cut"),
                ("WISECUT", wise_cut, "[mag] Stern+12 W1-W2 (Vega) cut"),
                *[(f"BPT{c.name}", int(c), "BPT_NII code") for c in agn.BPT],
                *_bit_keywords()]
    with FitsWriter(Path(path)) as out:
        out.write_primary()
        out.begin_table(_FITS_COLS, "AGN", keywords)
        for chunk in _chunks(table):
            values = {c.name: chunk[c.name].to_numpy(zero_copy_only=False) for c in _FITS_COLS}
            out.write_rows(pack(_FITS_COLS, values, chunk.num_rows))
            yield chunk
        out.end_table()


def write_agn_fits(table: pa.Table | Iterable[pa.Table], path: Path, snr_min: float = 3.0,
                   fwhm_min: float = 1200.0, wise_cut: float = 0.8) -> int:
    """Write the catalog (a table or its chunks) as FITS HDU `AGN`; returns the row count."""
    return sum(chunk.num_rows for chunk in fits_rows(table, path, snr_min, fwhm_min, wise_cut))


def write_agn_table(catalog: SqlCatalog, table: pa.Table | Iterable[pa.Table]) -> int:
    """Replace the catalog's `agn` table with these rows, in one transaction (a failure keeps the old one)."""
    return catalog.replace_tables({TABLE: (AGN_SCHEMA, table)})[TABLE]
