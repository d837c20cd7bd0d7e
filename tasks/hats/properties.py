"""hats.properties of the catalogs astrolab writes, as the ``hats`` package models and validates them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hats.catalog import CatalogType, TableProperties
from upath import UPath

HEALPIX_COLUMN = "_healpix_29"


def catalog_properties(out: Path, name: str, nrows: int, ra: str, dec: str,
                       catalog_type: CatalogType = CatalogType.OBJECT, **fields: Any) -> TableProperties:
    """A catalog's hats.properties as ``hats`` validates them (the type's required keys, provenance, size)."""
    values: dict[str, Any] = dict(
        catalog_name=name, catalog_type=catalog_type, total_rows=nrows, ra_column=ra, dec_column=dec,
        healpix_column=HEALPIX_COLUMN, healpix_order=29, npix_suffix=".parquet", obs_regime="Optical",
    )
    return TableProperties(**values, **fields, **TableProperties.new_provenance_dict(out, builder="astrolab"))


def write_properties(out: Path, properties: TableProperties) -> None:
    """Write ``hats.properties``: the last file of a build, so its presence marks the catalog complete."""
    properties.to_properties_file_path(UPath(out / "hats.properties"), initial_comments="HATS catalog")
