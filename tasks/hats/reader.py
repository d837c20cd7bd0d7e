"""Reading HATS catalogs from a file system: properties, partition list, partition files, row counts, and the
margin catalog published inside a catalog's directory (the widest, when there are several)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from hats.io import paths
from hats.pixel_math import HealpixPixel

Partition = tuple[int, int]  # (order, pixel), NESTED


@dataclass(frozen=True)
class HatsCatalog:
    """A HATS catalog on a file system: its root, sky-position columns and partitions."""

    root: Path
    ra: str
    dec: str
    partitions: tuple[Partition, ...]
    healpix: str = "_healpix_29"
    margin: HatsCatalog | None = None
    margin_arcsec: float = 0.0

    def partition_file(self, partition: Partition) -> Path:
        """The Parquet file of one partition."""
        return partition_path(self.root, partition)


def partition_path(root: Path, partition: Partition) -> Path:
    """Where HATS keeps one partition's Parquet file under a catalog root (``dataset/Norder=K/Dir=D/Npix=N``)."""
    return Path(paths.pixel_catalog_file(root, HealpixPixel(*partition)).path)


def _properties(props_file: Path) -> dict[str, str]:
    props = dict(line.split("=", 1) for line in props_file.read_text().splitlines()
                 if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in props.items()}


def open_hats(path: str | Path, with_margin: bool = True) -> HatsCatalog:
    """Read a HATS catalog's properties and partition list (and its margin catalog's, if it has one inside its
    directory); a clear error when `path` is not one."""
    root = Path(path)
    props_file, info_file = root / "hats.properties", root / "partition_info.csv"
    for needed in (props_file, info_file):
        if not needed.exists():
            raise FileNotFoundError(f"{root} is not a HATS catalog: {needed.name} is missing")
    props = _properties(props_file)
    for key in ("hats_col_ra", "hats_col_dec"):
        if key not in props:
            raise ValueError(f"{props_file}: no {key} (which columns hold the sky position)")
    with open(info_file, newline="") as fh:
        parts = tuple((int(r["Norder"]), int(r["Npix"])) for r in csv.DictReader(fh))
    margin, margin_arcsec = None, 0.0
    if with_margin:
        margins = [(float(p["hats_margin_threshold"]), sub) for sub in sorted(root.iterdir())
                   if (sub / "hats.properties").exists() and (sub / "partition_info.csv").exists()
                   and (p := _properties(sub / "hats.properties")).get("dataproduct_type") == "margin"]
        if margins:
            margin_arcsec, where = max(margins)
            margin = open_hats(where, with_margin=False)
    return HatsCatalog(root, props["hats_col_ra"], props["hats_col_dec"], parts,
                       props.get("hats_col_healpix", "_healpix_29"), margin, margin_arcsec)


def catalog_rows(catalog: HatsCatalog) -> int:
    """Rows of a HATS catalog, from its Parquet footers."""
    return sum(pq.ParquetFile(catalog.partition_file(p)).metadata.num_rows for p in catalog.partitions)
