"""PostgreSQL catalog benchmark: the project's load path versus psql COPY, and cone searches, in one run.

    ASTROLAB_TEST_PG_URL=postgresql://astrolab@127.0.0.1:55432/astrolab_test python bench/catalog.py [--rows 2000000]

(`scripts/services.sh start` starts that server.) Steps, each on a fresh database with the project's schema:
- load: the 2M-row zpix file read and enriched first (not timed), then loaded through PostgresCatalog.load_file
  (COPY of each chunk into a temporary table, then INSERT, one transaction with the lineage row) versus
  `psql -c "\\copy redshifts (...) FROM file.csv CSV"` of the same rows and columns into the same table;
- cone: radius 1 degree on the loaded rows: q3c index versus a declination band versus a full scan.
Writes bench/out/catalog.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import pyarrow.csv as pa_csv  # noqa: E402

from bench.ingest import OUT, make_sample  # noqa: E402
from tasks.catalog.base import separation_sql  # noqa: E402
from tasks.catalog.postgres_store import PostgresCatalog  # noqa: E402
from tasks.catalog.schema import LineageRecord  # noqa: E402
from tasks.ingest.enrich import enrich  # noqa: E402
from tasks.ingest.products import REDSHIFTS  # noqa: E402
from tasks.ingest.sources import ProductReader, discover  # noqa: E402


def fresh_database(admin_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    admin = os.environ.get("ASTROLAB_TEST_PG_URL")
    if not admin:
        sys.exit("set ASTROLAB_TEST_PG_URL (scripts/services.sh start writes it to /tmp/astrolab-services/env)")

    (src,) = discover(make_sample(args.rows))
    columns = [name for name, _ in REDSHIFTS.sql_columns]
    chunks = [enrich(batch, REDSHIFTS).select(columns) for _, batch in ProductReader(src).batches(120_000)]
    rows = sum(c.num_rows for c in chunks)
    csv_path = OUT / "catalog-rows.csv"
    with pa_csv.CSVWriter(csv_path, chunks[0].schema, write_options=pa_csv.WriteOptions(include_header=False)) as w:
        for chunk in chunks:
            w.write_table(chunk)
    print(f"{rows:,} rows, CSV {csv_path.stat().st_size / 2**20:.0f} MiB", file=sys.stderr)

    project, psql = [], []
    for i in range(args.repeats):
        url = fresh_database(admin)
        with PostgresCatalog(url) as catalog:
            t0 = time.perf_counter()
            catalog.load_file(REDSHIFTS, chunks, LineageRecord(file_hash=f"bench{i}", path=str(src.path), kind="zpix",
                                                                product="redshifts", survey="main", program="dark",
                                                                n_rows=rows, status="loaded"))
            project.append(time.perf_counter() - t0)
        drop_database(admin, url)

        url = fresh_database(admin)
        PostgresCatalog(url).close()  # same schema and indexes
        cols = ", ".join(c.lower() for c in columns)
        t0 = time.perf_counter()
        subprocess.run(["psql", url, "-qc", f"\\copy redshifts ({cols}) FROM '{csv_path}' CSV"], check=True)
        psql.append(time.perf_counter() - t0)
        if i < args.repeats - 1:
            drop_database(admin, url)
        print(f"  repeat {i + 1}: project {project[-1]:.2f} s, psql COPY {psql[-1]:.2f} s", file=sys.stderr)

    result = {"rows": rows, "project_s": statistics.median(project), "psql_copy_s": statistics.median(psql)}
    result["ratio"] = result["psql_copy_s"] / result["project_s"]
    print(f"load {rows:,} rows: project {result['project_s']:.2f} s ({rows / result['project_s']:,.0f} rows/s), "
          f"psql COPY {result['psql_copy_s']:.2f} s ({rows / result['psql_copy_s']:,.0f} rows/s): "
          f"project at {result['ratio']:.0%} of psql COPY (target >= 70%)")

    with PostgresCatalog(url) as catalog:
        catalog._execute("ANALYZE redshifts")
        params = {"ra": 185.0, "dec": 30.0, "r": 1.0}
        sep = separation_sql("target_ra", "target_dec")
        queries = {
            "q3c": f"SELECT count(*) FROM redshifts WHERE q3c_radial_query(target_ra, target_dec, $ra, $dec, $r) "
                   f"AND {sep} <= $r",
            "dec band": f"SELECT count(*) FROM redshifts WHERE target_dec BETWEEN $dec - $r AND $dec + $r "
                        f"AND {sep} <= $r",
            "full scan": f"SELECT count(*) FROM redshifts WHERE {sep} <= $r",
        }
        cone = {}
        for name, sql in queries.items():
            times, found = [], None
            for _ in range(5):
                t0 = time.perf_counter()
                found = catalog._rows(sql, params)[0][0]
                times.append(time.perf_counter() - t0)
            cone[name] = {"median_s": statistics.median(times), "rows": found}
            print(f"cone r=1 deg ({name}): {cone[name]['median_s'] * 1000:.1f} ms, {found} rows")
        assert len({c["rows"] for c in cone.values()}) == 1, "cone methods disagree"
        result["cone"] = cone
    drop_database(admin, url)
    (OUT / "catalog.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
