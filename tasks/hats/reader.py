"""Reading HATS catalogs from a file system: properties, partition list, partition files and row counts."""

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

    def partition_file(self, partition: Partition) -> Path:
        """The Parquet file of one partition."""
        return partition_path(self.root, partition)


def partition_path(root: Path, partition: Partition) -> Path:
    """Where HATS keeps one partition's Parquet file under a catalog root (``dataset/Norder=K/Dir=D/Npix=N``)."""
    return Path(paths.pixel_catalog_file(root, HealpixPixel(*partition)).path)


def open_hats(path: str | Path) -> HatsCatalog:
    """Read a HATS catalog's properties and partition list; a clear error when `path` is not one."""
    root = Path(path)
    props_file, info_file = root / "hats.properties", root / "partition_info.csv"
    for needed in (props_file, info_file):
        if not needed.exists():
            raise FileNotFoundError(f"{root} is not a HATS catalog: {needed.name} is missing")
    props = dict(line.split("=", 1) for line in props_file.read_text().splitlines()
                 if "=" in line and not line.lstrip().startswith("#"))
    props = {k.strip(): v.strip() for k, v in props.items()}
    for key in ("hats_col_ra", "hats_col_dec"):
        if key not in props:
            raise ValueError(f"{props_file}: no {key} (which columns hold the sky position)")
    with open(info_file, newline="") as fh:
        parts = tuple((int(r["Norder"]), int(r["Npix"])) for r in csv.DictReader(fh))
    return HatsCatalog(root, props["hats_col_ra"], props["hats_col_dec"], parts)


def catalog_rows(catalog: HatsCatalog) -> int:
    """Rows of a HATS catalog, from its Parquet footers."""
    return sum(pq.ParquetFile(catalog.partition_file(p)).metadata.num_rows for p in catalog.partitions)
