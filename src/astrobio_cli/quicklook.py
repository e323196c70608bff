"""Quick-look PNGs of fetched light curves and spectra (matplotlib, Agg, imported on first use).

    from astrobio_cli.quicklook import light_curve_png, spectrum_png

    ql = light_curve_png(lc, "tess-s0001.png", title="TIC 261136679  tess...-s_lc.fits")
    ql = spectrum_png([Segment(wl, flux, err, dq)], "w39.png", title="WASP-39  jw..._x1d.fits",
                      wavelength_unit="um", flux_unit="Jy")

- `light_curve_png(lc)`: a :class:`~astrobio_cli.data.lightcurves.LightCurve` (what
  `read_light_curve` returns, or one built from a single FITS product) as normalised flux (the
  flux and its error divided by the median of the finite, unflagged points: `lc.normalized()`)
  against time, points with a quality flag (quality != 0) or a non-finite time, flux or error
  left out; one colour per sector/quarter; error bars up to `ERRORBARS_UP_TO` points, dots
  beyond.
- `spectrum_png(segments)`: flux with one-sigma error bars against wavelength, one colour per
  segment (an x1d file's EXTRACT1D extensions); samples with a DQ flag or a non-finite value left
  out. Units as given (no conversion).

Both write the PNG atomically (temporary name beside it, then rename), 800 x 450 pixels
(`SIZE_IN` at `DPI`), titled with the caller's title, and return a :class:`QuickLook` with the
arrays exactly as plotted (for tests and for callers that want them). A source with no usable
point gets no PNG (:class:`QuickLook` with `path=None` and `skipped` saying why). Safe to call
from worker threads: no pyplot state, one Figure per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from astrobio_cli.data.lightcurves import LightCurve

DPI = 100
SIZE_IN = (8.0, 4.5)  # 800 x 450 pixels at DPI
ERRORBARS_UP_TO = 3000  # light curves with more points are drawn as dots only


@dataclass
class Segment:
    """One spectrum segment: wavelength, flux, error (and optional DQ flags, 0 = good)."""

    wavelength: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    dq: np.ndarray | None = None
    label: str = ""


@dataclass
class Series:
    """What was drawn: x, y, yerr (float64) of one colour."""

    x: np.ndarray
    y: np.ndarray
    yerr: np.ndarray
    label: str = ""


@dataclass
class QuickLook:
    path: Path | None  # None: nothing to draw (see `skipped`)
    title: str
    series: list[Series] = field(default_factory=list)
    dropped: int = 0  # points left out (flagged or not finite)
    skipped: str = ""


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, dest: Path) -> None:
    from astrobio_cli.net.files import atomic_path

    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    fig.clear()


def light_curve_png(lc: LightCurve, dest: Path | str, *, title: str) -> QuickLook:
    """Normalised flux against time, flagged and non-finite points left out; see the module doc."""
    dest = Path(dest)
    good = (
        (lc.quality == 0) & np.isfinite(lc.time) & np.isfinite(lc.flux) & np.isfinite(lc.flux_err)
    )
    if not good.any():
        return QuickLook(None, title, dropped=len(lc), skipped="no unflagged finite point")
    norm = lc.normalized()
    segments = lc.segments()
    series = []
    for g in np.unique(segments[good]):
        sel = good & (segments == g)
        s, q = int(lc.sector[sel][0]), int(lc.quarter[sel][0])
        label = f"sector {s}" if s >= 0 else f"quarter {q}" if q >= 0 else ""
        series.append(Series(lc.time[sel], norm.flux[sel], norm.flux_err[sel], label))
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    bars = sum(len(s.x) for s in series) <= ERRORBARS_UP_TO
    for s in series:
        if bars:
            ax.errorbar(
                s.x, s.y, yerr=s.yerr, fmt=".", ms=2, elinewidth=0.4, alpha=0.8, label=s.label
            )
        else:  # a whole sector (~20,000 points at 2 min): error bars would hide the curve
            ax.plot(s.x, s.y, ".", ms=1, alpha=0.6, label=s.label)
    ax.ticklabel_format(axis="both", useOffset=False)
    ax.set_xlabel(f"time [{lc.time_system}]" if lc.time_system else "time")
    ax.set_ylabel("normalised flux")
    if len(series) > 1:
        ax.legend(fontsize=7, markerscale=3)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, dest)
    return QuickLook(dest, title, series, dropped=int((~good).sum()))


def spectrum_png(
    segments: list[Segment],
    dest: Path | str,
    *,
    title: str,
    wavelength_unit: str = "",
    flux_unit: str = "",
) -> QuickLook:
    """Flux with error bars against wavelength, flagged and non-finite samples left out."""
    dest = Path(dest)
    series, dropped = [], 0
    for seg in segments:
        wl, fx, er = (
            np.asarray(a, dtype=np.float64) for a in (seg.wavelength, seg.flux, seg.error)
        )
        good = np.isfinite(wl) & np.isfinite(fx) & np.isfinite(er)
        if seg.dq is not None:
            good &= np.asarray(seg.dq) == 0
        dropped += int((~good).sum())
        if good.any():
            series.append(Series(wl[good], fx[good], er[good], seg.label))
    if not series:
        return QuickLook(None, title, dropped=dropped, skipped="no unflagged finite sample")
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for s in series:
        ax.errorbar(s.x, s.y, yerr=s.yerr, fmt="-", lw=0.7, elinewidth=0.4, label=s.label)
    ax.set_xlabel(f"wavelength [{wavelength_unit}]" if wavelength_unit else "wavelength")
    ax.set_ylabel(f"flux [{flux_unit}]" if flux_unit else "flux")
    if len(series) > 1:
        ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, dest)
    return QuickLook(dest, title, series, dropped=dropped)


def quicklook_dir(out: Path | str) -> Path:
    """Where a fetch writing `out` puts its quick-looks: `<out without suffix>.quicklook/`."""
    out = Path(out)
    return out.with_name(f"{out.stem}.quicklook")


def png_name(product: str) -> str:
    """`tess...-s_lc.fits` -> `tess...-s_lc.png` (a product file name, made safe)."""
    stem = Path(str(product).rsplit("/", 1)[-1]).stem or "product"
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)
    return f"{safe.lstrip('.') or 'product'}.png"


__all__ = [
    "DPI",
    "SIZE_IN",
    "QuickLook",
    "Segment",
    "Series",
    "light_curve_png",
    "png_name",
    "quicklook_dir",
    "spectrum_png",
]
