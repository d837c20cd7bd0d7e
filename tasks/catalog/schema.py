"""The catalog's logical schema, shared by every SQL backend (DuckDB here, PostgreSQL in production).

Column names are the DESI names in lower case (PostgreSQL folds unquoted identifiers to lower case, DuckDB
ignores case), so ``SELECT targetid, z FROM zcat_primary`` works on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from tasks.ingest.products import PRODUCTS, Product

SCHEMA_VERSION = 6

DONE_STATUSES = ("loaded", "published")  # lineage statuses of a file whose rows are in the catalog

# Versioned migrations: MIGRATIONS[n] takes a catalog from version n - 1 to n. New catalogs are created at the
# latest version directly (the CREATE statements below always describe the latest schema).
MIGRATIONS: dict[int, list[str]] = {
    2: [  # lineage learns each file's size and mtime (a rerun hashes unchanged files instead of staging them)
        # and where its staged parts are (each run stages under its own key, so concurrent runs never collide)
        "ALTER TABLE ingest_lineage ADD COLUMN IF NOT EXISTS file_size BIGINT",
        "ALTER TABLE ingest_lineage ADD COLUMN IF NOT EXISTS file_mtime DOUBLE PRECISION",
        "ALTER TABLE ingest_lineage ADD COLUMN IF NOT EXISTS staging_key TEXT",
    ],
    3: [],  # compliance scans: new tables only (COMPLIANCE_DDL), which table_ddls creates on every open
    4: [],  # backup runs, repository verifications and restore drills: new tables only (BACKUP_DDL)
    5: [],  # cluster build: role applies per host (CLUSTER_DDL), a new table only
    6: [],  # prune runs per asset (backup_prunes in BACKUP_DDL), a new table only
}

_SQL_TYPES = {
    pa.int8(): "SMALLINT", pa.uint8(): "SMALLINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER",
    pa.int64(): "BIGINT", pa.float32(): "REAL", pa.float64(): "DOUBLE PRECISION", pa.bool_(): "BOOLEAN",
    pa.string(): "TEXT",
}

LINEAGE_COLUMNS: list[tuple[str, str]] = [
    ("file_hash", "TEXT PRIMARY KEY"),    # sha256 of the file's bytes
    ("path", "TEXT NOT NULL"),
    ("file_size", "BIGINT"),
    ("file_mtime", "DOUBLE PRECISION"),       # seconds since the epoch, as os.stat gives it
    ("kind", "TEXT NOT NULL"),             # zpix, zall, fastspec, coadd, redrock
    ("product", "TEXT NOT NULL"),
    ("survey", "TEXT"),
    ("program", "TEXT"),
    ("n_rows", "BIGINT"),
    ("status", "TEXT NOT NULL"),           # loaded (in catalog, not yet in lake), published, quarantined
    ("error", "TEXT"),                     # why a file was quarantined: file, HDU, column, what was expected
    ("notes", "TEXT"),                     # e.g. extra columns left out of the lake
    ("run_id", "TEXT"),
    ("started_at", "TIMESTAMP"),
    ("finished_at", "TIMESTAMP"),
    ("read_s", "DOUBLE PRECISION"),
    ("validate_s", "DOUBLE PRECISION"),
    ("stage_s", "DOUBLE PRECISION"),
    ("load_s", "DOUBLE PRECISION"),
    ("hats_version", "TEXT"),
    ("staging_key", "TEXT"),               # lake staging directory of a loaded, not yet published file
]


@dataclass(frozen=True)
class LineageRecord:
    """One row of ingest_lineage."""

    file_hash: str
    path: str
    kind: str
    product: str
    survey: str | None
    program: str | None
    n_rows: int | None
    status: str
    error: str | None = None
    notes: str | None = None
    run_id: str | None = None
    started_at: object = None
    finished_at: object = None
    read_s: float | None = None
    validate_s: float | None = None
    stage_s: float | None = None
    load_s: float | None = None
    hats_version: str | None = None
    file_size: int | None = None
    file_mtime: float | None = None
    staging_key: str | None = None


def sql_type(dtype: pa.DataType) -> str:
    """SQL type for an Arrow type."""
    return _SQL_TYPES[dtype]


def table_ddl(product: Product) -> str:
    """CREATE TABLE statement of a product's catalog table."""
    cols = ",\n  ".join(f"{name.lower()} {sql_type(t)}" for name, t in product.sql_columns)
    return f"CREATE TABLE IF NOT EXISTS {product.name} (\n  {cols}\n)"


def lineage_ddl() -> str:
    """CREATE TABLE statement of ingest_lineage."""
    cols = ",\n  ".join(f"{n} {t}" for n, t in LINEAGE_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS ingest_lineage (\n  {cols}\n)"


HATS_VERSIONS_DDL = """CREATE TABLE IF NOT EXISTS hats_versions (
  product TEXT PRIMARY KEY,
  version TEXT NOT NULL,
  nrows BIGINT,
  published_at TIMESTAMP
)"""

SCHEMA_VERSION_DDL = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"

# Compliance scans (tasks/compliance): one row per (host, policy) scan, one per check result, the drift of each
# scan against the previous scan of the same host and policy, and the packages a host reported (CIS 2.1).
COMPLIANCE_DDL = [
    """CREATE TABLE IF NOT EXISTS compliance_scans (
  scan_id TEXT PRIMARY KEY,
  run_id TEXT,
  host TEXT NOT NULL,
  policy_id TEXT NOT NULL,
  policy_name TEXT,
  policy_file TEXT,
  policy_hash TEXT,
  source TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT,
  passed INTEGER,
  failed INTEGER,
  not_applicable INTEGER,
  score DOUBLE PRECISION,
  started_at TIMESTAMP,
  finished_at TIMESTAMP
)""",
    """CREATE TABLE IF NOT EXISTS compliance_results (
  scan_id TEXT NOT NULL,
  host TEXT NOT NULL,
  policy_id TEXT NOT NULL,
  check_id BIGINT NOT NULL,
  title TEXT,
  result TEXT NOT NULL,
  reason TEXT,
  evidence TEXT,
  safeguards TEXT,
  remediation TEXT,
  PRIMARY KEY (scan_id, check_id)
)""",
    """CREATE TABLE IF NOT EXISTS compliance_drift (
  scan_id TEXT NOT NULL,
  previous_scan_id TEXT,
  host TEXT NOT NULL,
  policy_id TEXT NOT NULL,
  check_id BIGINT NOT NULL,
  change TEXT NOT NULL,
  previous TEXT,
  current TEXT,
  PRIMARY KEY (scan_id, check_id)
)""",
    """CREATE TABLE IF NOT EXISTS compliance_safeguards (
  scan_id TEXT NOT NULL,
  check_id BIGINT NOT NULL,
  safeguard TEXT NOT NULL,
  PRIMARY KEY (scan_id, check_id, safeguard)
)""",
    """CREATE TABLE IF NOT EXISTS host_packages (
  scan_id TEXT NOT NULL,
  host TEXT NOT NULL,
  package TEXT NOT NULL,
  version TEXT,
  PRIMARY KEY (scan_id, package)
)""",
]

# Backups (tasks/backup/records.py): one row per asset backed up by a run, per repository check, per restore drill,
# per asset pruned by a run. Times are UTC; row_counts and errors are JSON text.
BACKUP_DDL = [
    """CREATE TABLE IF NOT EXISTS backup_runs (
  run_id TEXT NOT NULL,
  asset TEXT NOT NULL,
  asset_class TEXT NOT NULL,
  kind TEXT NOT NULL,
  repository TEXT NOT NULL,
  snapshot_id TEXT,
  started_at TIMESTAMP NOT NULL,
  finished_at TIMESTAMP NOT NULL,
  duration_s DOUBLE PRECISION,
  bytes_added BIGINT,
  files_new BIGINT,
  total_files BIGINT,
  total_bytes BIGINT,
  sha256 TEXT,
  row_counts TEXT,
  status TEXT NOT NULL,
  error TEXT,
  PRIMARY KEY (run_id, asset)
)""",
    """CREATE TABLE IF NOT EXISTS backup_verifications (
  repository TEXT NOT NULL,
  checked_at TIMESTAMP NOT NULL,
  read_data_subset TEXT,
  ok BOOLEAN NOT NULL,
  errors TEXT,
  duration_s DOUBLE PRECISION,
  run_id TEXT,
  PRIMARY KEY (repository, checked_at)
)""",
    """CREATE TABLE IF NOT EXISTS restore_drills (
  asset TEXT NOT NULL,
  kind TEXT,
  snapshot_id TEXT NOT NULL,
  started_at TIMESTAMP NOT NULL,
  restore_s DOUBLE PRECISION,
  rto_s DOUBLE PRECISION NOT NULL,
  result TEXT NOT NULL,
  detail TEXT,
  run_id TEXT,
  PRIMARY KEY (asset, started_at)
)""",
    """CREATE TABLE IF NOT EXISTS backup_prunes (
  run_id TEXT NOT NULL,
  asset TEXT NOT NULL,
  repository TEXT NOT NULL,
  started_at TIMESTAMP NOT NULL,
  finished_at TIMESTAMP NOT NULL,
  dry_run BOOLEAN NOT NULL,
  snapshots_kept BIGINT,
  snapshots_removed BIGINT,
  bytes_freed BIGINT,
  status TEXT NOT NULL,
  error TEXT,
  PRIMARY KEY (run_id, asset)
)""",
]

# Cluster build (tasks/cluster/state.py): one row per (run, role, host) applied, with the hash of its inputs, which a
# rerun compares to skip what is unchanged. Times are UTC.
CLUSTER_DDL = [
    """CREATE TABLE IF NOT EXISTS cluster_role_applies (
  run_id TEXT NOT NULL,
  phase TEXT NOT NULL,
  role TEXT NOT NULL,
  host TEXT NOT NULL,
  input_hash TEXT NOT NULL,
  status TEXT NOT NULL,
  ok INTEGER,
  changed INTEGER,
  failed INTEGER,
  skipped INTEGER,
  unreachable INTEGER,
  started_at TIMESTAMP NOT NULL,
  finished_at TIMESTAMP NOT NULL,
  error TEXT,
  PRIMARY KEY (run_id, role, host)
)""",
]

# DESI's ZCAT_PRIMARY rule (desispec.zcatalog.find_primary_spectra), recomputed over everything ingested:
# per TARGETID prefer ZWARN == 0, then the highest TSNR2_LRG; ties broken by survey, program for determinism.
_REDSHIFT_COLS = [n.lower() for n, _ in PRODUCTS["redshifts"].sql_columns if n not in ("ZCAT_NSPEC", "ZCAT_PRIMARY")]


def primary_select(source: str, extra: Sequence[str] = ()) -> str:
    """SELECT of the primary spectrum per TARGETID among the rows of ``source`` (a table or a subquery)."""
    return f"""SELECT {", ".join([*_REDSHIFT_COLS, *extra])}, zcat_nspec_all AS zcat_nspec
FROM (
  SELECT *,
         count(*) OVER (PARTITION BY targetid) AS zcat_nspec_all,
         row_number() OVER (
           PARTITION BY targetid
           ORDER BY (zwarn = 0) DESC, tsnr2_lrg DESC NULLS LAST, survey, program
         ) AS zcat_rank
  FROM {source}
) ranked
WHERE zcat_rank = 1"""


PRIMARY_VIEW_DDL = f"CREATE OR REPLACE VIEW zcat_primary AS\n{primary_select('redshifts')}"


def table_ddls() -> list[str]:
    """The statements that create every table (latest schema), in order."""
    return [SCHEMA_VERSION_DDL, lineage_ddl(), HATS_VERSIONS_DDL, *[table_ddl(p) for p in PRODUCTS.values()],
            *COMPLIANCE_DDL, *BACKUP_DDL, *CLUSTER_DDL]


def view_ddls() -> list[str]:
    """The statements that (re)create the views, run after tables and migrations."""
    return [PRIMARY_VIEW_DDL]
