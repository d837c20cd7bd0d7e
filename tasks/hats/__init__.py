"""HATS: writing and reading HEALPix-partitioned Parquet catalogs."""
