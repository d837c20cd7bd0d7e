"""Void plots as PNG bytes: the void size function and a slice map of galaxies and holes (matplotlib Agg)."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.patches import Circle

from tasks.plots import figure, png


def size_function_png(radii: np.ndarray, volume: float, truth_radii: np.ndarray | None = None,
                      dpi: int = 100) -> bytes:
    """Cumulative void size function n(>R) [h^3 Mpc^-3] of `radii` (e.g. R_EFF) in a survey of this volume,
    with the planted voids' radii for comparison when given."""
    fig = figure((6.0, 4.5))
    ax = fig.add_subplot()
    for r, style, label in ((radii, "C0-", "found (R_EFF)"), (truth_radii, "k--", "planted")):
        if r is None or not len(r):
            continue
        r = np.sort(np.asarray(r, dtype=float))[::-1]
        ax.step(r, np.arange(1, len(r) + 1) / volume, style, where="post", label=f"{label}: {len(r)}")
    ax.set(yscale="log", xlabel=r"$R$ [$h^{-1}$ Mpc]", ylabel=r"$n(>R)$ [$h^3$ Mpc$^{-3}$]",
           title=f"Void size function (survey volume {volume:.3g} $h^{{-3}}$ Mpc$^3$)")
    if ax.has_data():
        ax.legend()
    return png(fig, dpi)


def slice_map_png(galaxies: np.ndarray, holes: np.ndarray, hole_void: np.ndarray, axis: int = 2,
                  center: float | None = None, thickness: float = 10.0, dpi: int = 100) -> bytes:
    """Galaxies (n, 3) within thickness/2 of the plane coordinate[axis] = center, and each hole's cross-section
    with that plane coloured by its void; center defaults to the largest hole's coordinate."""
    holes = np.reshape(holes, (-1, 4))
    if center is None:
        center = float(holes[np.argmax(holes[:, 3]), axis]) if len(holes) else float(np.median(galaxies[:, axis]))
    u, v = [a for a in range(3) if a != axis]
    near = np.abs(galaxies[:, axis] - center) < thickness / 2
    cut = np.abs(holes[:, axis] - center) < holes[:, 3]
    fig = figure((7.0, 7.0))
    ax = fig.add_subplot()
    radius = np.sqrt(holes[cut, 3] ** 2 - (holes[cut, axis] - center) ** 2)
    circles = PatchCollection([Circle((x, y), r) for x, y, r in zip(holes[cut, u], holes[cut, v], radius)],
                              cmap="tab20", alpha=0.35, linewidth=0)
    circles.set_array(np.asarray(hole_void)[cut] % 20)
    ax.add_collection(circles)
    ax.scatter(galaxies[near, u], galaxies[near, v], s=4, c="k", lw=0)
    names = "XYZ"
    ax.set(aspect="equal", xlabel=f"{names[u]} [$h^{{-1}}$ Mpc]", ylabel=f"{names[v]} [$h^{{-1}}$ Mpc]",
           title=f"{names[axis]} = {center:.1f} ± {thickness / 2:g} $h^{{-1}}$ Mpc: {int(near.sum())} galaxies, "
                 f"{len(np.unique(np.asarray(hole_void)[cut]))} voids")
    ax.autoscale_view()
    return png(fig, dpi)
