"""The ``astrolab`` command: sample, ingest, demo, query, cone, lake, docs, settings, compliance, backups.

Exit codes: 0 done; 2 a user error (one line on stderr saying what to do; --debug adds the traceback); 3 ingest
quarantined a file; 4 ingest found nothing; 1 an unexpected error (a bug: rerun with --debug and report it), and
for ``backups status`` also: an asset is not inside its RPO or not known to be (see its help).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from astrolab import progress
from astrolab.settings import Settings, SettingsError, load_settings
from tasks.catalog.base import CatalogError
from tasks.errors import did_you_mean
from tasks.redact import install_log_redaction, redact
from tasks.storage.s3 import ObjectStoreError

console = Console(stderr=True)

EXIT_OK, EXIT_BUG, EXIT_USER_ERROR, EXIT_QUARANTINED, EXIT_NOTHING_FOUND = 0, 1, 2, 3, 4
EXIT_BACKUP_PROBLEM = 1  # backups status: an asset in warning, breach, never or unknown (or a failed check/drill)
EPHEMERAL_TIMEOUT_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


class UserError(Exception):
    """A mistake the user can fix (bad argument, refused SQL, missing path): exit code 2 and one line."""


@contextmanager
def _bar(description: str, total: int | None):
    """Show a rich progress bar fed by astrolab.progress while the body runs."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        progress.install(lambda name: bar.update(task, description=f"{description}: {name}"),
                         lambda rows: bar.advance(task, rows))
        try:
            yield
        finally:
            progress.install(None, None)


TERMINAL_ROWS = 50  # rows a terminal shows when --limit is not given; a pipe or a file gets every row


def _print_table(table: pa.Table, limit: int | None) -> None:
    """A rich table on a terminal (one block per row when the columns do not fit its width, like psql's
    ``\\x auto``); CSV when the output goes to a pipe or a file. ``limit`` None: 50 rows on a terminal, all in CSV."""
    terminal = sys.stdout.isatty()
    shown = limit if limit is not None else TERMINAL_ROWS if terminal else table.num_rows
    rows = table.slice(0, shown)
    if not terminal:
        pa_csv.write_csv(rows, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        out_console = Console()
        cells = [["" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()]
                 for row in rows.to_pylist()]
        if _table_width(table.schema.names, cells) <= out_console.width:
            out = Table(show_lines=False)
            for name in table.schema.names:
                out.add_column(name)
            for row_cells in cells:
                out.add_row(*row_cells)
            out_console.print(out)
        else:
            out_console.print(_expanded(table.schema.names, cells), highlight=False, soft_wrap=True)
    if table.num_rows > shown:
        console.print(f"({table.num_rows} rows, first {shown} shown; use --limit)")


def _table_width(names: Sequence[str], cells: Sequence[Sequence[str]]) -> int:
    """Characters a rich table with these columns needs on one line (borders and padding included)."""
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    return sum(widths) + 3 * len(widths) + 1


def _expanded(names: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """Rows as blocks of ``column | value`` lines, as psql prints in expanded mode."""
    pad = max(len(name) for name in names)
    blocks = []
    for number, row_cells in enumerate(cells, start=1):
        lines = [f"-[ RECORD {number} ]" + "-" * max(0, pad - 8)]
        lines += [f"{name.ljust(pad)} | {value}" for name, value in zip(names, row_cells, strict=True)]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def cmd_sample(args: argparse.Namespace) -> int:
    from flows.sample import desi_sample

    with _prefect(args), _bar("sample rows", args.rows):
        desi_sample(str(Path(args.out).absolute()), n_rows=args.rows, seed=args.seed, spectra=not args.no_spectra,
                    config=args.config)
    return 0


def ingest_exit_code(summary: dict[str, Any]) -> int:
    """From the desi-ingest flow's summary: 3 when a file was quarantined, 4 when nothing was found, else 0."""
    if summary.get("quarantined"):
        return EXIT_QUARANTINED
    if not summary.get("files"):
        return EXIT_NOTHING_FOUND
    return EXIT_OK


def _check_source(source: str) -> None:
    if "://" not in source and not Path(source).exists():
        raise UserError(f"{source}: no such file or directory; give a DESI FITS file, a directory of them or "
                        "s3://bucket/prefix")


def _report_ingest(summary: dict[str, Any], source: str) -> int:
    quarantined = summary.get("quarantined") or {}
    for path, reason in quarantined.items():
        console.print(f"[yellow]quarantined[/] {redact(str(path))}: {redact(str(reason))}", markup=True,
                      highlight=False, soft_wrap=True)
    console.print(f"ingested {summary.get('ingested', 0)} files ({summary.get('rows', 0):,} rows), skipped "
                  f"{summary.get('skipped', 0)}, quarantined {len(quarantined)}", highlight=False)
    code = ingest_exit_code(summary)
    if code == EXIT_NOTHING_FOUND:
        _error_line(f"no DESI files found under {redact(source)}; check the path and --kinds (file names as in DR1: "
                    "zpix-*, zall-*, fastspec-*, coadd-*, redrock-*)")
    elif code == EXIT_QUARANTINED:
        _error_line(f"{len(quarantined)} file(s) quarantined (reasons above and in the ingest_lineage table); "
                    "fix or replace them and ingest again")
    return code


def cmd_ingest(args: argparse.Namespace) -> int:
    _check_source(str(args.source))
    from flows.ingest import desi_ingest

    with _prefect(args), _bar("ingest rows", None):
        summary = desi_ingest(str(args.source), kinds=args.kinds or None, config=args.config)
    return _report_ingest(summary, str(args.source))


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.ingest import desi_ingest
    from flows.sample import desi_sample

    settings = load_settings(args.config)
    sample_dir = (settings.home / "desi-sample").absolute()
    with _prefect(args):
        with _bar("sample rows", args.rows):
            desi_sample(str(sample_dir), n_rows=args.rows, seed=args.seed, config=args.config)
        with _bar("ingest rows", None):
            summary = desi_ingest(str(sample_dir), config=args.config)
    from astrolab.resources import build_lake, report_url

    lake = build_lake(settings)
    console.print(f"\n[bold green]done[/]: {summary['rows']:,} rows ingested from {summary['ingested']} files "
                  f"({len(summary['quarantined'])} quarantined)")
    console.print(f"  HATS lake:  {lake.url}/hats")
    console.print(f"  catalog:    {redact(settings.catalog_url, settings.secret_values())}")
    console.print(f"  Data Docs:  {report_url(settings, lake, lake.data_docs_dir() / 'index.html')} "
                  "(`astrolab docs` serves it)")
    console.print("  try:       astrolab query \"SELECT spectype, count(*) FROM zcat_primary GROUP BY 1\"")
    return ingest_exit_code(summary)


def _catalog(args: argparse.Namespace):
    from astrolab.resources import build_catalog

    return build_catalog(load_settings(args.config), read_only=True)


ALLOWED_SQL = "SELECT, WITH, VALUES, FROM, TABLE, EXPLAIN, DESCRIBE, SHOW and SUMMARIZE"
# functions that read or write files, reach the network or the server's environment (DuckDB and PostgreSQL)
_FILE_FUNCTION = re.compile(
    r"(read_|write_|pg_read_|pg_ls_|pg_stat_file|lo_|dblink|iceberg_|delta_|st_read|sqlite_|postgres_|mysql_)\w*|"
    r"\w*_scan|glob|getenv|sniff_csv|parquet_\w+|query|query_table|load_aws_credentials|copy_\w+",
    re.IGNORECASE)


def check_read_only_sql(sql: str) -> None:
    """Refuse (UserError) what is not a read over the catalog: statements other than queries, table functions
    and scalar functions that reach files, and file names in FROM (DuckDB reads 'x.parquet' as a table)."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise UserError(f"query: cannot parse the SQL ({_sql_reason(exc)})") from None
    if not statements:
        raise UserError("query: no SQL statement given")
    con = duckdb.connect()  # an in-memory database, only to parse: json_serialize_sql gives the syntax tree
    try:
        for statement in statements:
            text = statement.query.strip().rstrip(";")
            kind = statement.type.name
            if kind == "EXPLAIN":
                text = re.sub(r"^\s*EXPLAIN(\s+ANALYZE)?\s+", "", text, flags=re.IGNORECASE)
                inner = duckdb.extract_statements(text)
                kind = inner[0].type.name if len(inner) == 1 else "MULTI"
            if kind != "SELECT":
                raise UserError(f"query: refused {kind}: `astrolab query` runs read-only SQL over the "
                                f"catalog ({ALLOWED_SQL}); write with the flows, export with the lake's files")
            tree = con.execute("SELECT json_serialize_sql($q)", {"q": text}).fetchall()[0][0]
            _check_tree(json.loads(tree))
    finally:
        con.close()


def _check_tree(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _check_tree(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("error") is True:
        raise UserError(f"query: cannot check the SQL ({node.get('error_message', 'unknown parse error')})")
    name = node.get("function_name")
    if isinstance(name, str) and _FILE_FUNCTION.fullmatch(name):
        raise UserError(f"query: refused {name}(): it reaches files, the network or the environment; "
                        f"`astrolab query` reads the catalog's tables and views only (lake_* views read the lake)")
    table = node.get("table_name")
    if node.get("type") == "BASE_TABLE" and isinstance(table, str) and re.search(r"[./\\:*?]", table):
        raise UserError(f"query: refused FROM {table!r}: it names a file; `astrolab query` reads the catalog's "
                        "tables and views only (lake_* views read the lake)")
    for value in node.values():
        _check_tree(value)


def _sql_reason(exc: BaseException) -> str:
    """A database error as one line: DuckDB's message without its 'LINE 1: ...' pointer lines."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = []
    for line in lines:
        if line.startswith("LINE "):
            break
        if line:
            kept.append(line)
    return " ".join(kept) or type(exc).__name__


def cmd_query(args: argparse.Namespace) -> int:
    check_read_only_sql(args.sql)
    with _catalog(args) as catalog:
        _print_table(catalog.query(args.sql), args.limit)
    return 0


CONE_COLUMNS = ["targetid", "survey", "program", "target_ra", "target_dec", "z", "zwarn", "spectype", "sep_deg"]


def check_cone(ra: float, dec: float, radius: float) -> None:
    """Refuse (UserError) a position or radius outside the sky: 0 <= ra < 360, -90 <= dec <= 90, 0 < radius <= 180,
    all finite."""
    for name, value, ok, rule in (("RA", ra, 0 <= ra < 360, "0 <= RA < 360"),
                                  ("DEC", dec, -90 <= dec <= 90, "-90 <= DEC <= 90"),
                                  ("RADIUS", radius, 0 < radius <= 180, "0 < RADIUS <= 180")):
        if not math.isfinite(value) or not ok:
            raise UserError(f"cone: {name} {value:g} is outside {rule} (degrees, finite)")


def cmd_cone(args: argparse.Namespace) -> int:
    check_cone(args.ra, args.dec, args.radius)
    with _catalog(args) as catalog:
        found = catalog.cone(args.ra, args.dec, args.radius, table=args.table)
    if not args.all_columns and set(CONE_COLUMNS) <= set(found.schema.names):
        found = found.select(CONE_COLUMNS)
    _print_table(found, args.limit)
    return 0


def cmd_lake(args: argparse.Namespace) -> int:
    from astrolab.resources import build_lake
    from tasks.ingest.products import PRODUCTS

    for product in args.products:
        if product not in PRODUCTS:
            raise UserError(f"lake: unknown product {product!r}{did_you_mean(product, PRODUCTS)}")
    lake = build_lake(load_settings(args.config))
    rows = []
    for product in args.products or list(PRODUCTS):
        version = lake.published_version(product)
        where = "" if version is None else lake.version_dir(product, version) if args.download \
            else lake.catalog_path(product)
        rows.append({"product": product, "version": version or "(none published)", "catalog": str(where)})
    _print_table(pa.Table.from_pylist(rows), len(rows))
    return 0


def cmd_compliance_scan(args: argparse.Namespace) -> int:
    from infra_flows.compliance import compliance_scan

    out = compliance_scan(inventory=args.inventory, hosts=args.host or None, roles=args.role or None,
                          policies=args.policies or None, config=args.config)
    for problem in out["problems"]:
        console.print(f"[yellow]policy skipped[/] {problem}")
    for host in out["unreachable"]:
        console.print(f"[yellow]unreachable[/] {host}")
    console.print(f"scanned {out['hosts']} hosts: {len(out['unreachable'])} unreachable, "
                  f"{out['regressions']} regressions; report: {out['files']['compliance.json']}")
    return 0


def cmd_compliance_report(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from tasks.compliance.store import drift_since, latest_scans, scan_results

    since = datetime.fromisoformat(args.since) if args.since else datetime.now(UTC) - timedelta(days=7)
    with _catalog(args) as catalog:
        scans = latest_scans(catalog, args.host)
        if not scans:
            raise ValueError("no compliance scans stored" + (f" for host {args.host!r}" if args.host else "")
                             + ": run `astrolab compliance scan` or the compliance-scan deployment first")
        changes = drift_since(catalog, since, args.host)
        failed = scan_results(catalog, [str(s["scan_id"]) for s in scans], "failed") if args.host else []
    console.print(f"[bold]Changes since {since:%Y-%m-%d %H:%M}[/] ({len(changes)}; regressions first)")
    changes.sort(key=lambda c: c["change"] != "regression")
    _print_table(pa.Table.from_pylist(changes or [{"change": "none"}]), args.limit)
    console.print("[bold]Latest scan per host and policy[/]")
    columns = ["host", "policy_id", "source", "status", "score", "passed", "failed", "not_applicable", "finished_at"]
    _print_table(pa.Table.from_pylist([{c: s[c] for c in columns} for s in scans]), args.limit)
    if failed:
        console.print(f"[bold]Failed checks on {args.host}[/] (evidence, then how to fix)")
        _print_table(pa.Table.from_pylist(failed).select(["policy_id", "check_id", "title", "safeguards", "evidence",
                                                          "remediation"]), args.limit)
    return 0


def serve_reports(directory: Path, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for the lake's reports directory: Data Docs, plots, run files."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

    return ThreadingHTTPServer((host, port), partial(Quiet, directory=str(directory)))


def anonymous_read_problem(url: str, timeout: float = 5.0) -> str | None:
    """Why a browser with no credentials cannot read ``url`` ("HTTP 403", "unreachable: ..."), or None."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout):  # GET: moto refuses an anonymous HEAD that S3 allows
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"unreachable: {getattr(exc, 'reason', exc)}"


def cmd_docs(args: argparse.Namespace) -> int:
    from astrolab.resources import build_lake

    settings = load_settings(args.config)
    if settings.lake_url.startswith("s3://"):
        index = f"{settings.reports_url}/data_docs/index.html"
        problem = anonymous_read_problem(index)
        if problem == "HTTP 404":
            raise UserError(f"no Data Docs yet at {index}; run an ingest first")
        if problem in ("HTTP 401", "HTTP 403"):
            raise UserError(f"docs: {index} answers {problem} to a browser, so the Prefect UI's report links do not "
                            f"open; give the lake's reports/ prefix an anonymous read-only policy (e.g. `mc anonymous "
                            f"set download ALIAS/{settings.lake_url[len('s3://'):].strip('/')}/reports`)")
        checked = f" (not checked: {problem})" if problem else ""
        console.print(f"the lake is on S3; its reports are served at {index} (reports.base_url){checked}",
                      highlight=False, soft_wrap=True)
        return 0
    reports = build_lake(settings).data_docs_dir().parent
    if not (reports / "data_docs" / "index.html").exists():
        raise UserError(f"no Data Docs yet under {reports}; run an ingest first")
    port = args.port if args.port is not None else settings.reports.port
    try:
        server = serve_reports(reports, port, args.bind)
    except OSError as exc:
        raise UserError(f"docs: cannot listen on {args.bind}:{port} ({exc.strerror}); choose another --port") from None
    console.print(f"serving {reports} at http://{args.bind}:{port}/data_docs/index.html (Ctrl-C stops)",
                  highlight=False, soft_wrap=True)
    with server:
        server.serve_forever()
    return 0
BackupRecords = dict[str, dict[str, Any]] | None


def _backup_records(args: argparse.Namespace) -> tuple[BackupRecords, BackupRecords, BackupRecords]:
    """The newest verification per repository, drill and prune per asset from the catalog, opened read-only (never
    upgraded); None, shown as unknown with one line saying why, for what the catalog cannot give, since the
    repositories alone still answer the RPO question."""
    import duckdb
    import psycopg

    from tasks.backup.records import status_records
    from tasks.catalog.schema import SCHEMA_VERSION

    try:
        with _catalog(args) as catalog:
            records = status_records(catalog)
            missing = [what for what, rows in zip(("verification", "drill", "prune"), records) if rows is None]
            if missing:
                version = catalog.schema_version()
                at = "has no astrolab schema yet" if version is None else f"is at schema version {version}"
                console.print(f"[yellow]catalog {catalog.name} {at}, older "
                              f"than this astrolab's {SCHEMA_VERSION}[/]: it has no {', '.join(missing)} records "
                              "(shown as unknown); read-only, it is not upgraded here: the next backup or ingest "
                              "run upgrades it", highlight=False, soft_wrap=True)
            return records
    except (CatalogError, duckdb.Error, psycopg.Error) as exc:
        reason = redact(_sql_reason(exc), _known_secrets(args))
        console.print(f"[yellow]no backup records read from the catalog[/] ({reason}); verification, drill and "
                      "prune columns are unknown", highlight=False, soft_wrap=True)
        return None, None, None


def cmd_backups_status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from astrolab.resources import build_freshness_readers
    from tasks.backup.registry import registry_of
    from tasks.backup.rpo import check_rpo
    from tasks.backup.status import problems, status_rows

    settings = load_settings(args.config)
    registry = registry_of(args.assets, settings)
    statuses = check_rpo(registry, datetime.now(UTC), readers=build_freshness_readers(settings))
    verifications, drills, prunes = _backup_records(args)
    rows = status_rows(statuses, verifications, drills, prunes)
    _print_table(pa.Table.from_pylist(rows or [{"asset": "(no enabled assets)"}]), max(len(rows), 1))
    found = problems(statuses, verifications, drills, prunes)
    for line in found:
        console.print(f"[red]problem[/] {line}", highlight=False, soft_wrap=True)
    return EXIT_BACKUP_PROBLEM if found else EXIT_OK


def cmd_settings(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    text = json.dumps(settings.effective(), indent=2)
    if sys.stdout.isatty():
        Console().print_json(text)
    else:
        print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser; every argument's help says its unit and default."""
    parser = argparse.ArgumentParser(prog="astrolab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="settings YAML file (default: $ASTROLAB_CONFIG, else none)")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the traceback too (default: off, one line on stderr)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("sample", cmd_sample, "write a synthetic DESI DR1 sample")
    p.add_argument("out", type=Path, help="directory to write the sample to (created; no default)")
    p.add_argument("--rows", type=int, default=10_000, help="redshift rows to generate (count; default: 10000)")
    p.add_argument("--seed", type=int, default=42, help="random seed (integer; default: 42)")
    p.add_argument("--no-spectra", action="store_true", help="skip coadd/redrock files (default: write them)")
    p = add("ingest", cmd_ingest, "ingest DESI files under a path or an s3:// prefix (the desi-ingest flow); exit "
                                  "code 3 when a file was quarantined, 4 when none was found")
    p.add_argument("source", help="a FITS file, a directory, or s3://bucket/prefix (no default)")
    p.add_argument("--kinds", nargs="*", help="only these kinds, any of: zpix zall fastspec coadd redrock "
                                              "(default: all)")
    p = add("demo", cmd_demo, "generate a sample and ingest it on the embedded defaults")
    p.add_argument("--rows", type=int, default=100_000, help="redshift rows to generate (count; default: 100000)")
    p.add_argument("--seed", type=int, default=42, help="random seed (integer; default: 42)")
    p = add("query", cmd_query, f"run read-only SQL on the catalog ({ALLOWED_SQL}); CSV when piped")
    p.add_argument("sql", help="the SQL statement (quote it; no default)")
    p.add_argument("--limit", type=int, help="rows to print (count; default: 50 on a terminal, every row when "
                                            "piped or redirected)")
    p = add("cone", cmd_cone, "rows within RADIUS degrees of RA DEC (nearest first)")
    p.add_argument("ra", type=float, help="right ascension (degrees, 0 <= RA < 360; no default)")
    p.add_argument("dec", type=float, help="declination (degrees, -90 <= DEC <= 90; no default)")
    p.add_argument("radius", type=float, help="search radius (degrees, 0 < RADIUS <= 180; no default)")
    p.add_argument("--table", default="zcat_primary",
                   help="zcat_primary or a product table: redshifts fastspec spectra (default: zcat_primary)")
    p.add_argument("--limit", type=int, help="rows to print (count; default: 50 on a terminal, every row when "
                                            "piped or redirected)")
    p.add_argument("--all-columns", action="store_true", help="print every column (default: the usual few)")
    p = add("lake", cmd_lake, "the published HATS catalogs: version and where to open each (resolves S3 pointers)")
    p.add_argument("products", nargs="*", help="any of: redshifts fastspec spectra (default: all)")
    p.add_argument("--download", action="store_true",
                   help="print a local copy's path, downloaded from S3 once (default: print the lake path)")
    add("settings", cmd_settings, "print the settings in effect (defaults resolved, secrets masked)")
    p = add("docs", cmd_docs, "serve the lake's reports (Data Docs, plots) over HTTP, where the Prefect UI's links "
                              "point (reports.base_url)")
    p.add_argument("--port", type=int, help="TCP port (default: the reports.port setting, 8765)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")

    comp = sub.add_parser("compliance", help="compliance scans (Wazuh SCA policies, CIS Controls v8)")
    comp_sub = comp.add_subparsers(dest="action", required=True)
    p = comp_sub.add_parser("scan", help="scan the inventory's hosts now (the compliance-scan flow)")
    p.set_defaults(func=cmd_compliance_scan)
    p.add_argument("--inventory", help="inventory YAML file (default: the compliance.inventory setting)")
    p.add_argument("--host", action="append", help="only this host (repeatable; default: every host)")
    p.add_argument("--role", action="append", help="only hosts with this role (repeatable; default: every role)")
    p.add_argument("--policies", action="append", help="policy directory or file (repeatable; default: the "
                                                           "compliance.policy_dirs setting)")
    p = comp_sub.add_parser("report", help="latest scores per host and policy, and what changed since a date")
    p.set_defaults(func=cmd_compliance_report)
    p.add_argument("--host", help="one host: also its failed checks with evidence and remediation "
                                  "(default: every host)")
    p.add_argument("--since", help="changes since this date/time (ISO 8601; default: 7 days ago)")
    p.add_argument("--limit", type=int, help="rows to print per table (count; default: 50 on a terminal, every "
                                            "row when piped or redirected)")
    _add_backups(sub)
    return parser


def _add_backups(sub: Any) -> None:
    backups = sub.add_parser("backups", help="backups: RPO state of every asset, verifications, restore drills")
    backups_sub = backups.add_subparsers(dest="action", required=True)
    help_ = ("per asset: class, kind, last backup and its age against the RPO (read from the repositories), state "
             "(ok, warning over 75 percent of the RPO, breach, never, unknown: the repository could not be read), the "
             "repository's last verification and the last restore drill's time against the RTO (from the catalog); "
             "CSV when piped. Exit code 0 when every asset is ok, 1 when any is warning, breach, never or unknown, "
             "or a repository's last verification or an asset's last drill failed; 2 for a bad registry")
    p = backups_sub.add_parser("status", help=help_, description=help_)
    p.set_defaults(func=cmd_backups_status)
    p.add_argument("--assets", type=Path,
                   help="asset registry YAML (default: the backup.assets setting; infra/backup/assets.example.yaml "
                        "shows the format)")


@contextmanager
def _prefect(args: argparse.Namespace) -> Iterator[None]:
    """Around flow runs: give the ephemeral Prefect server ``prefect.ephemeral_timeout`` seconds to start, unless
    the user set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS; a Prefect API that is not there is a UserError."""
    users = os.environ.get(EPHEMERAL_TIMEOUT_VAR)
    timeout = users or f"{load_settings(args.config).prefect.ephemeral_timeout:g}"
    try:
        if users:
            yield
        else:
            from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

            os.environ[EPHEMERAL_TIMEOUT_VAR] = timeout  # for processes started from here
            try:  # and for this process: Prefect read its settings when it was imported
                with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: math.ceil(float(timeout))}):
                    yield
            finally:
                os.environ.pop(EPHEMERAL_TIMEOUT_VAR, None)
    except Exception as exc:
        problem = _prefect_problem(exc, timeout)
        if problem:
            raise UserError(problem) from exc
        raise


def _prefect_problem(exc: BaseException, timeout: str | None = None) -> str | None:
    """What to do when the Prefect API is not there (ephemeral server did not start, PREFECT_API_URL unreachable)."""
    text = str(exc)
    point = "point at a running server instead: PREFECT_API_URL=http://host:4200/api (start one with " \
            "`prefect server start`)"
    if "ephemeral Prefect API server" in text:
        waited = f" within {timeout} s" if timeout else ""
        return (f"the ephemeral Prefect server did not start{waited}; raise ASTROLAB_PREFECT_EPHEMERAL_TIMEOUT "
                f"(prefect.ephemeral_timeout) or {point}")
    found = re.search(r"Failed to reach API at (\S+?)\.?$", text.strip())
    if found or type(exc).__module__.startswith("httpx"):
        where = found.group(1) if found else os.environ.get("PREFECT_API_URL", "the Prefect API")
        return f"cannot reach the Prefect server at {where}; start it, or {point}"
    if "No Prefect API URL provided" in text:
        return f"no Prefect server: {point}"
    return None


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug."""
    import duckdb
    import psycopg

    if isinstance(exc, UserError | SettingsError | CatalogError | ObjectStoreError):
        return str(exc)
    if isinstance(exc, duckdb.Error | psycopg.Error):
        return f"SQL: {_sql_reason(exc)}; check table and column names (the catalog's tables are listed in the " \
               "README; `astrolab query \"SHOW TABLES\"` on DuckDB)"
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or str(exc)
        return f"{name}: no such file or directory" if exc.filename else str(exc)
    if isinstance(exc, PermissionError):
        return f"{exc.filename or exc}: permission denied"
    problem = _prefect_problem(exc)
    if problem:
        return problem
    if isinstance(exc, ValueError):
        return str(exc)
    return None


def _error_line(message: str, secrets: Sequence[str] = ()) -> None:
    """One line on stderr: ``error: <message>``, passwords masked."""
    line = " ".join(redact(message, secrets).split())
    print(f"error: {line}", file=sys.stderr, flush=True)


def _known_secrets(args: argparse.Namespace) -> list[str]:
    try:
        settings: Settings = load_settings(args.config)
    except SettingsError:
        return []
    return settings.secret_values()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``astrolab`` console script; returns the exit code (see the module's docstring)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    secrets = _known_secrets(args)
    install_log_redaction(secrets)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _error_line("interrupted")
        return 130
    except Exception as exc:  # every error ends here: one line, the traceback only with --debug
        message = _user_error(exc)
        if args.debug:
            print(redact("".join(traceback.format_exception(exc)), secrets), file=sys.stderr, end="")
        if message is None:
            _error_line(f"unexpected {type(exc).__name__}: {exc} (a bug? rerun with --debug for the traceback "
                        "and report it)", secrets)
            return EXIT_BUG
        _error_line(message, secrets)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
