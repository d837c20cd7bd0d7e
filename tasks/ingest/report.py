"""The data-quality report of an ingest run: summary text, file table, n(z) histogram and sky-density map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import healpy as hp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tasks.crashpoints import crash_point  # noqa: E402
from tasks.ingest.docs_assets import links_cdn, make_self_contained  # noqa: E402
from tasks.ingest.pipeline import FileResult, PublishResult  # noqa: E402

NSIDE = 64
Z_BIN = 0.02


def file_table(results: Sequence[FileResult]) -> list[dict[str, object]]:
    """One row per source file: name, kind, status, rows, reason."""
    return [
        {"file": Path(r.path).name, "kind": r.kind, "product": r.product, "status": r.status, "rows": r.rows,
         "reason": r.error or r.notes or "",
         "seconds": round(sum(r.timings.values()), 2)}
        for r in results
    ]


NOT_RECOGNISED_SHOWN = 50


def summary_markdown(results: Sequence[FileResult], published: Sequence[PublishResult], docs_index: str | None,
                     primary_rows: int, not_recognised: Sequence[str] = ()) -> str:
    """Markdown summary of a run; ``not_recognised``: FITS files found whose names match no DESI DR1 product."""
    count = {s: sum(r.status == s for r in results) for s in ("ingested", "skipped", "quarantined")}
    rows = sum(r.rows for r in results if r.status == "ingested")
    lines = [
        "# DESI ingest report", "",
        f"- files: **{len(results)}** ({count['ingested']} ingested, {count['skipped']} skipped as already ingested, "
        f"{count['quarantined']} quarantined)",
        f"- rows ingested this run: **{rows:,}**",
        f"- unique targets in the primary view (`zcat_primary`): **{primary_rows:,}**",
        f"- not recognised: **{len(not_recognised)}** FITS files whose names match no DESI DR1 product"
        + (" (nothing matched)" if not results and not_recognised else ""),
    ]
    for p in published:
        lines.append(f"- HATS catalog `{p.product}`: {p.nrows:,} rows in {p.partitions} partitions, "
                     f"version `{p.version}` at `{p.path}`")
    if docs_index:
        lines.append(f"- Great Expectations Data Docs: [{docs_index}](<{docs_index}>)")
    bad = [r for r in results if r.status == "quarantined"]
    if bad:
        lines += ["", "## Quarantined files", ""] + [f"- `{r.path}`: {r.error}" for r in bad]
    if not_recognised:
        lines += ["", "## Not recognised", ""] + [f"- `{p}`" for p in not_recognised[:NOT_RECOGNISED_SHOWN]]
        if len(not_recognised) > NOT_RECOGNISED_SHOWN:
            lines.append(f"- ... and {len(not_recognised) - NOT_RECOGNISED_SHOWN} more")
    return "\n".join(lines) + "\n"


def plot_nz(z: np.ndarray, spectype: np.ndarray, counts: np.ndarray, out: Path) -> Path:
    """Step histogram of n(z) per SPECTYPE from binned counts (z = bin lower edges)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind in sorted(set(spectype.tolist())):
        sel = spectype == kind
        order = np.argsort(z[sel])
        ax.step(z[sel][order], counts[sel][order], where="post", label=str(kind))
    ax.set_xlabel("redshift z")
    ax.set_ylabel(f"targets per Δz = {Z_BIN}")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("n(z) of the primary redshifts")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_sky(healpix: np.ndarray, counts: np.ndarray, out: Path) -> Path:
    """Mollweide map of targets per deg² on the nside-64 NESTED grid."""
    density = np.full(hp.nside2npix(NSIDE), hp.UNSEEN)
    density[healpix] = counts / hp.nside2pixarea(NSIDE, degrees=True)
    hp.mollview(density, nest=True, title="targets per deg² (primary redshifts)", unit="deg⁻²", cmap="viridis")
    plt.savefig(out, dpi=90)
    plt.close("all")
    return out


def plots(catalog, out_dir: Path) -> list[Path]:
    """Aggregate n(z) and sky density in the catalog (SQL) and draw both plots into ``out_dir``."""
    nz = catalog.query(
        f"SELECT floor(z / {Z_BIN}) * {Z_BIN} AS zbin, spectype, count(*) AS n FROM zcat_primary "
        "WHERE z IS NOT NULL GROUP BY 1, 2"
    )
    sky = catalog.query("SELECT healpix, count(*) AS n FROM zcat_primary GROUP BY healpix")
    if nz.num_rows == 0:
        return []
    nz_plot = plot_nz(nz["zbin"].to_numpy(), np.asarray(nz["spectype"].to_pylist()), nz["n"].to_numpy(),
                      out_dir / "nz.png")
    crash_point("during-report")
    return [nz_plot, plot_sky(sky["healpix"].to_numpy(), sky["n"].to_numpy(), out_dir / "sky_density.png")]


def join_data_docs(docs_dir: Path, indexes: Sequence[str]) -> Path:
    """An index.html in ``docs_dir`` linking the Data Docs sites that Dask workers built below it; a site built
    where the CDN files were not installed gets this machine's copies (see ``docs_assets``)."""
    import html

    for rel in indexes:
        if (docs_dir / rel).is_file() and links_cdn(docs_dir / rel):
            make_self_contained((docs_dir / rel).parent)
    items = "\n".join(f'<li><a href="{html.escape(rel)}">{html.escape(rel.rsplit("/", 1)[0])}</a></li>'
                      for rel in sorted(indexes))
    # a page with no icon makes browsers ask the server root for /favicon.ico: a failed load on every visit
    icons = [f"{rel.rsplit('/', 1)[0]}/static/images/favicon.ico" for rel in sorted(indexes)]
    icon = next((i for i in icons if (docs_dir / i).is_file()), "data:,")
    docs_dir.mkdir(parents=True, exist_ok=True)
    index = docs_dir / "index.html"
    index.write_text("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>astrolab Data Docs</title>"
                     f"<link rel=\"icon\" href=\"{html.escape(icon)}\"></head>"
                     f"<body><h1>Great Expectations Data Docs</h1><p>One site per Dask worker of the last ingest "
                     f"run:</p><ul>\n{items}\n</ul></body></html>\n")
    return index
