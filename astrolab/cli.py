"""The ``astrolab`` command: sample, ingest, demo, query, cone, lake, settings."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from astrolab import progress
from astrolab.settings import SettingsError, load_settings
from tasks.catalog.base import CatalogError
from tasks.storage.s3 import ObjectStoreError

console = Console(stderr=True)


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


def _print_table(table: pa.Table, max_rows: int) -> None:
    """A rich table on a terminal; CSV when the output goes to a pipe or a file."""
    if not sys.stdout.isatty():
        pa_csv.write_csv(table.slice(0, max_rows), sys.stdout.buffer)
        sys.stdout.flush()
        return
    out = Table(show_lines=False)
    for name in table.schema.names:
        out.add_column(name)
    for row in table.slice(0, max_rows).to_pylist():
        out.add_row(*("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()))
    Console().print(out)
    if table.num_rows > max_rows:
        console.print(f"({table.num_rows} rows, first {max_rows} shown; use --limit)")


def cmd_sample(args: argparse.Namespace) -> int:
    from flows.sample import desi_sample

    with _bar("sample rows", args.rows):
        desi_sample(str(args.out), n_rows=args.rows, seed=args.seed, spectra=not args.no_spectra)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from flows.ingest import desi_ingest

    with _bar("ingest rows", None):
        summary = desi_ingest(str(args.source), kinds=args.kinds or None, config=args.config)
    for path, reason in summary["quarantined"].items():
        console.print(f"[yellow]quarantined[/] {path}: {reason}")
    console.print(f"ingested {summary['ingested']} files ({summary['rows']:,} rows), skipped {summary['skipped']}, "
                  f"quarantined {len(summary['quarantined'])}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.ingest import desi_ingest
    from flows.sample import desi_sample

    settings = load_settings(args.config)
    sample_dir = settings.home / "desi-sample"
    with _bar("sample rows", args.rows):
        desi_sample(str(sample_dir), n_rows=args.rows, seed=args.seed)
    with _bar("ingest rows", None):
        summary = desi_ingest(str(sample_dir), config=args.config)
    from astrolab.resources import build_lake

    lake = build_lake(settings)
    console.print(f"\n[bold green]done[/]: {summary['rows']:,} rows ingested from {summary['ingested']} files "
                  f"({len(summary['quarantined'])} quarantined)")
    console.print(f"  HATS lake:  {lake.url}/hats")
    console.print(f"  catalog:    {settings.catalog_url}")
    console.print(f"  Data Docs:  {lake.url_of(lake.data_docs_dir() / 'index.html')}")
    console.print("  try:       astrolab query \"SELECT spectype, count(*) FROM zcat_primary GROUP BY 1\"")
    return 0


def _catalog(args: argparse.Namespace):
    from astrolab.resources import build_catalog

    return build_catalog(load_settings(args.config), read_only=True)


def cmd_query(args: argparse.Namespace) -> int:
    with _catalog(args) as catalog:
        _print_table(catalog.query(args.sql), args.limit)
    return 0


CONE_COLUMNS = ["targetid", "survey", "program", "target_ra", "target_dec", "z", "zwarn", "spectype", "sep_deg"]


def cmd_cone(args: argparse.Namespace) -> int:
    with _catalog(args) as catalog:
        found = catalog.cone(args.ra, args.dec, args.radius, table=args.table)
    if not args.all_columns and set(CONE_COLUMNS) <= set(found.schema.names):
        found = found.select(CONE_COLUMNS)
    _print_table(found, args.limit)
    return 0


def cmd_lake(args: argparse.Namespace) -> int:
    from astrolab.resources import build_lake
    from tasks.ingest.products import PRODUCTS

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


def cmd_settings(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    Console().print_json(settings.model_dump_json())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="astrolab", description=__doc__)
    parser.add_argument("--config", help="settings YAML (default: $ASTROLAB_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        return p

    p = add("sample", cmd_sample, "write a synthetic DESI DR1 sample")
    p.add_argument("out", type=Path)
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-spectra", action="store_true", help="skip coadd/redrock files")
    p = add("ingest", cmd_ingest, "ingest DESI files under a path or an s3:// prefix (the desi-ingest flow)")
    p.add_argument("source", help="a file, a directory, or s3://bucket/prefix")
    p.add_argument("--kinds", nargs="*", help="only these kinds: zpix zall fastspec coadd redrock")
    p = add("demo", cmd_demo, "generate a sample and ingest it on the embedded defaults")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p = add("query", cmd_query, "run SQL on the catalog")
    p.add_argument("sql")
    p.add_argument("--limit", type=int, default=50, help="rows to print")
    p = add("cone", cmd_cone, "rows within RADIUS degrees of RA DEC (nearest first)")
    p.add_argument("ra", type=float)
    p.add_argument("dec", type=float)
    p.add_argument("radius", type=float)
    p.add_argument("--table", default="zcat_primary")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--all-columns", action="store_true", help="print every column, not the usual few")
    p = add("lake", cmd_lake, "the published HATS catalogs: version and where to open each (resolves S3 pointers)")
    p.add_argument("products", nargs="*", help="redshifts fastspec spectra (default: all)")
    p.add_argument("--download", action="store_true", help="print a local copy's path (downloaded from S3 once)")
    add("settings", cmd_settings, "print the effective settings")

    comp = sub.add_parser("compliance", help="compliance scans (Wazuh SCA policies, CIS Controls v8)")
    comp_sub = comp.add_subparsers(dest="action", required=True)
    p = comp_sub.add_parser("scan", help="scan the inventory's hosts now (the compliance-scan flow)")
    p.set_defaults(func=cmd_compliance_scan)
    p.add_argument("--inventory", help="inventory YAML (default: compliance.inventory)")
    p.add_argument("--host", action="append", help="only this host (repeatable)")
    p.add_argument("--role", action="append", help="only hosts with this role (repeatable)")
    p.add_argument("--policies", action="append", help="policy directory or file (repeatable; default: "
                                                           "compliance.policy_dirs)")
    p = comp_sub.add_parser("report", help="latest scores per host and policy, and what changed since a date")
    p.set_defaults(func=cmd_compliance_report)
    p.add_argument("--host", help="one host: also its failed checks with evidence and remediation")
    p.add_argument("--since", help="changes since this date/time (ISO 8601, default: 7 days ago)")
    p.add_argument("--limit", type=int, default=200, help="rows to print per table (default 200)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``astrolab`` console script."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SettingsError, CatalogError, ObjectStoreError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
