"""Find DESI DR1 files under a path and read them as product batches in the product's lake schema."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from tasks.fits_reader import FitsFormatError, TableLayout, iter_table, table_layout
from tasks.products import PRODUCT_OF_KIND, Product, classify


@dataclass(frozen=True)
class SourceFile:
    """A DESI file recognised by its DR1 file name."""

    path: Path
    kind: str
    survey: str | None = None
    program: str | None = None
    healpix: int | None = None

    @property
    def product(self) -> Product:
        """The product this file feeds."""
        return PRODUCT_OF_KIND[self.kind]


def discover(root: str | Path, kinds: set[str] | None = None) -> list[SourceFile]:
    """All DESI files under ``root`` (a file or a directory), recognised by their DR1 file-name patterns."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or directory")
    candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*.fits") if p.is_file())
    found = []
    for path in candidates:
        match = classify(path.name)
        if match is None or (kinds and match[0] not in kinds):
            continue
        kind, fields = match
        pix = fields.get("healpix")
        found.append(SourceFile(path, kind, fields.get("survey"), fields.get("program"),
                                int(pix) if pix is not None else None))
    return found


def file_sha256(path: Path, block: int = 1 << 24) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ProductReader:
    """Reads one source file as batches of its product's columns (lake schema minus derived columns)."""

    src: SourceFile
    layouts: list[TableLayout] = field(init=False)
    constants: dict[str, object] = field(init=False)

    def __post_init__(self) -> None:
        product = self.src.product
        self.layouts = [table_layout(self.src.path, hdu) for hdu in product.hdus]
        first = self.layouts[0]
        for other in self.layouts[1:]:
            if other.nrows != first.nrows:
                raise FitsFormatError(self.src.path, f"HDUs {first.extname} and {other.extname} are not row-matched "
                                      f"({first.nrows} vs {other.nrows} rows)")
        for column, kind in product.required.items():
            if column in self.constants_from_file():
                continue
            owner = next((lay for lay in self.layouts if column in lay.columns), first)
            owner.require(column, kind)
        self.constants = self.constants_from_file()

    def constants_from_file(self) -> dict[str, object]:
        """Columns whose value comes from the file name or header rather than from the table."""
        header = self.layouts[0].header
        values: dict[str, object] = {}
        survey = self.src.survey or header.get("SURVEY")
        program = self.src.program or header.get("PROGRAM")
        in_table = {c for lay in self.layouts for c in lay.columns}
        if survey and ("SURVEY" not in in_table or self.src.kind == "fastspec"):
            values["SURVEY"] = str(survey).strip().lower()
        if program and ("PROGRAM" not in in_table or self.src.kind == "fastspec"):
            values["PROGRAM"] = str(program).strip().lower()
        if self.src.product.name == "spectra":
            values.update(FILE_KIND=self.src.kind, FILE=str(self.src.path), HEALPIX=self.src.healpix)
        return values

    @property
    def nrows(self) -> int:
        """Rows in the file."""
        return self.layouts[0].nrows

    @property
    def extra_columns(self) -> list[str]:
        """Columns in the file that the product's lake schema does not keep."""
        known = {name for name, _ in self.src.product.columns}
        return sorted({c for lay in self.layouts for c in lay.columns} - known)

    def batches(self, chunk_rows: int) -> Iterator[tuple[int, pa.Table]]:
        """Yield (first row, table) per chunk, columns in the product's order and types."""
        product = self.src.product
        wanted: list[list[str]] = []
        taken: set[str] = set(self.constants)
        for lay in self.layouts:
            names = [n for n, _ in product.columns if n in lay.columns and n not in taken]
            taken.update(names)
            wanted.append(names)
        iterators = [iter_table(lay, names, chunk_rows) for lay, names in zip(self.layouts, wanted, strict=True)]
        start = 0
        for pieces in zip(*iterators, strict=True):
            n = pieces[0].num_rows
            by_name = {name: col for piece in pieces for name, col in zip(piece.schema.names, piece.columns)}
            yield start, self._conform(by_name, n, start)
            start += n

    def _conform(self, by_name: dict[str, pa.Array], n: int, start: int) -> pa.Table:
        arrays = []
        for name, dtype in self.src.product.columns:
            if name == "ROW" and self.src.product.name == "spectra":  # row number within the source HDU
                arrays.append(pa.array(range(start, start + n), type=dtype))
            elif name in self.constants:
                arrays.append(pa.array([self.constants[name]] * n, type=dtype))
            elif name in by_name:
                arrays.append(self._cast(by_name[name], dtype, name))
            else:
                arrays.append(pa.nulls(n, type=dtype))
        return pa.Table.from_arrays(arrays, schema=pa.schema(self.src.product.columns))

    def _cast(self, array: pa.Array, dtype: pa.DataType, name: str) -> pa.Array:
        if array.type == dtype:
            return array
        try:
            return array.cast(dtype)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            hdu = next((lay.extname for lay in self.layouts if name in lay.columns), self.layouts[0].extname)
            raise FitsFormatError(self.src.path, f"cannot convert {array.type} to {dtype} ({exc})", hdu, name) from exc
