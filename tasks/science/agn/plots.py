"""The [NII]-BPT diagram of an AGN catalog as PNG bytes, with the Kewley+01, Kauffmann+03 and Schawinski+07 lines."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kernels import agn
from tasks.plots import figure, png

_STYLE = {agn.BPT.SF: ("tab:blue", "star-forming"), agn.BPT.COMP: ("tab:green", "composite"),
          agn.BPT.SY: ("tab:red", "Seyfert"), agn.BPT.LINER: ("tab:orange", "LINER")}
X_RANGE, Y_RANGE = (-2.0, 1.0), (-1.5, 1.5)


def bpt_diagram_png(table: pa.Table, max_points: int = 100_000, seed: int = 0, dpi: int = 100) -> bytes:
    """PNG of the classified rows (BPT_NII != NONE) on the [NII]-BPT plane; at most `max_points`, drawn at random."""
    codes = table["BPT_NII"].to_numpy()
    x = table["LOG_NII_HA"].to_numpy(zero_copy_only=False)
    y = table["LOG_OIII_HB"].to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(codes != agn.BPT.NONE)
    if len(rows) > max_points:  # a fixed seed keeps the artifact the same for the same catalog
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))

    fig = figure((6.4, 5.2))
    ax = fig.add_subplot()
    for code, (colour, label) in _STYLE.items():
        sel = rows[codes[rows] == code]
        ax.scatter(x[sel], y[sel], s=3, alpha=0.5, color=colour, lw=0,
                   label=f"{label} ({int((codes == code).sum()):,})")
    grid = np.linspace(*X_RANGE, 600)
    kewley, kauffmann, schawinski = agn.kewley01(grid), agn.kauffmann03(grid), agn.schawinski07(grid)
    ax.plot(grid, kewley, "k-", label="Kewley+01")
    ax.plot(grid, kauffmann, "k--", label="Kauffmann+03")
    agn_side = (schawinski >= kewley) | (grid >= agn.KEWLEY01_X_MAX)  # the Seyfert/LINER line lives above Kewley
    ax.plot(grid[agn_side], schawinski[agn_side], "k:", label="Schawinski+07")
    ax.set(xlim=X_RANGE, ylim=Y_RANGE, xlabel=r"log [NII]6584 / H$\alpha$", ylabel=r"log [OIII]5007 / H$\beta$",
           title=f"[NII] BPT: {len(rows):,} of {int((codes != agn.BPT.NONE).sum()):,} classified rows shown")
    ax.legend(loc="lower left", fontsize=7, markerscale=3)
    return png(fig, dpi)
