"""Ingest: DESI file discovery, FITS reading, validation, enrichment, the per-file pipeline and its report."""
