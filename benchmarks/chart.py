"""The chart of a run: ``python -m benchmarks --chart FILE.png``.

One figure, two rows:

* top: a grouped bar chart of the ratio to asyncio of every runtime on every
  workload of the main table (log scale: 2x faster and 2x slower are the same
  distance from the line at 1.0, which is asyncio);
* bottom: one line chart per scaling series against the size, both axes on
  log scales: the median rate for the timer scaling (with the ceiling
  N / delay as a dashed line), the median CPU time per operation for the
  live-task series (``Series.chart``), whose legends give each runtime's
  value at the largest size divided by the value at the smallest.

matplotlib is imported only here, only when a chart is asked for; it is not a
dependency of the suite otherwise.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .registry import SERIES, Runtime, Workload
from .report import Row, main_rows

__all__ = ["COLORS", "write_chart"]

#: One color per runtime, the same in every panel.
COLORS = {
    "yieldloop": "#1f77b4",
    "asyncio": "#7f7f7f",
    "uvloop": "#2ca02c",
    "trio": "#9467bd",
    "curio": "#8c564b",
    "tinyio": "#e377c2",
    "anyio": "#ff7f0e",
    "bare": "#000000",
}
_MARKERS = {"yieldloop": "o", "asyncio": "s", "uvloop": "^", "trio": "D", "anyio": "v"}


def _color(name: str, i: int) -> str:
    if name in COLORS:
        return COLORS[name]
    spare = ("#17becf", "#bcbd22", "#d62728")
    return spare[i % len(spare)]


def _fmt_ratio(v: float) -> str:
    return f"{v:.1f}" if v >= 0.995 else f"{v:.2f}"


def _fmt_rate(v: float, _pos: Any = None) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def write_chart(
    path: str | Path,
    rows: Sequence[Row],
    workloads: Sequence[Workload],
    runtimes: Sequence[Runtime],
    meta: dict[str, Any],
) -> None:
    """Draw the chart of ``rows`` (from :func:`benchmarks.report.summarize`) into
    the PNG file ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    series_names = [s for s in SERIES if any(r.series == s and r.median for r in rows)]
    ncols = max(1, len(series_names))
    fig = plt.figure(figsize=(max(13.0, 4.6 * ncols), 11.5), dpi=110)
    grid = fig.add_gridspec(2, ncols, height_ratios=[1.2, 1.0], hspace=0.5, wspace=0.3)

    _bars(fig.add_subplot(grid[0, :]), rows, runtimes, FuncFormatter)
    for i, name in enumerate(series_names):
        _series_panel(fig.add_subplot(grid[1, i]), name, rows, runtimes, FuncFormatter, LogLocator)

    footer = (
        f"{meta.get('command', '')}  |  {meta.get('date', '')}  |  {meta.get('python', '')}  |  "
        f"{meta.get('cpu', '')}, nproc={meta.get('nproc', '?')}  |  median of "
        f"{meta.get('reps', '?')} runs"
    )
    if meta.get("yieldloop_commit"):
        footer += f"  |  yieldloop {meta['yieldloop_commit']}"
    fig.text(0.5, 0.0, footer, ha="center", va="top", fontsize=7.5, color="#555555")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _bars(ax: Any, rows: Sequence[Row], runtimes: Sequence[Runtime], formatter: Any) -> None:
    """The grouped bars: ratio to asyncio per workload per runtime."""
    main = [r for r in main_rows(rows) if r.vs_asyncio]
    names = list(dict.fromkeys(r.workload for r in main))
    shown = [
        rt
        for rt in runtimes
        if rt.name != "asyncio" and not rt.reference and any(r.runtime == rt.name for r in main)
    ]
    if not names or not shown:
        ax.text(0.5, 0.5, "no ratios to asyncio to show", ha="center", va="center")
        ax.set_axis_off()
        return
    width = 0.8 / len(shown)
    ratios = [r.vs_asyncio for r in main if r.vs_asyncio]
    top = max(ratios + [1.0])
    bottom = min(ratios + [1.0])
    for j, rt in enumerate(shown):
        by_name = {r.workload: r for r in main if r.runtime == rt.name}
        xs, vs = [], []
        for i, name in enumerate(names):
            row = by_name.get(name)
            if row is not None and row.vs_asyncio:
                xs.append(i - 0.4 + width * (j + 0.5))
                vs.append(row.vs_asyncio)
        # Bars grow from the line at 1.0, up for faster and down for slower.
        ax.bar(
            xs,
            [v - 1.0 for v in vs],
            width * 0.92,
            bottom=1.0,
            color=_color(rt.name, j),
            label=rt.name,
            zorder=3,
        )
        for x, v in zip(xs, vs, strict=True):
            ax.annotate(
                _fmt_ratio(v),
                (x, v),
                xytext=(0, 2 if v >= 1 else -2),
                textcoords="offset points",
                ha="center",
                va="bottom" if v >= 1 else "top",
                fontsize=6.5,
                zorder=4,
            )
    ax.set_yscale("log")
    ax.set_ylim(bottom / 1.6, top * 1.6)
    ax.axhline(1.0, color="#333333", linewidth=1.2, zorder=2, label="asyncio = 1")
    ax.yaxis.set_major_formatter(formatter(lambda v, _pos: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(formatter(lambda v, _pos: ""))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=25, ha="right", fontsize=9)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("throughput / asyncio's (log scale)")
    ax.set_title("Ratio to asyncio per workload (higher is faster; median of the runs)")
    ax.grid(axis="y", which="major", color="#dddddd", zorder=0)
    ax.legend(loc="upper right", ncols=len(shown) + 1, fontsize=9, frameon=False)


def _value(row: Row, what: str) -> float | None:
    """What a series panel plots for ``row``: ops/s, or CPU microseconds per op."""
    if what == "cpu":
        return None if row.cpu_per_op is None else row.cpu_per_op * 1e6
    return row.median


def _fmt_us(v: float, _pos: Any = None) -> str:
    return f"{v:g} µs"


def _series_panel(
    ax: Any,
    name: str,
    rows: Sequence[Row],
    runtimes: Sequence[Runtime],
    formatter: Any,
    LogLocator: Any,
) -> None:
    """One scaling series: rate (or CPU cost per operation) against size, one
    line per runtime."""
    series = SERIES[name]
    what = series.chart
    mine = [r for r in rows if r.series == name and r.x and _value(r, what)]
    xs_all = sorted({r.x for r in mine if r.x})
    for j, rt in enumerate(runtimes):
        points = sorted((r.x, v) for r in mine if r.runtime == rt.name and (v := _value(r, what)))
        if not points:
            continue
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        label = rt.name
        if series.ideal is None and len(points) > 1 and xs[0] == xs_all[0]:
            label += f"  {ys[-1] / ys[0]:.2f}"
        ax.plot(
            xs,
            ys,
            marker=_MARKERS.get(rt.name, "o"),
            markersize=4.5,
            color=_color(rt.name, j),
            label=label,
            linewidth=1.6,
        )
    if series.ideal is not None and what == "rate":
        ideal = sorted({(r.x, r.ideal) for r in mine if r.x and r.ideal})
        if ideal:
            ax.plot(
                [p[0] for p in ideal],
                [p[1] for p in ideal],
                linestyle="--",
                color="#999999",
                linewidth=1,
                label="ceiling",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    if xs_all:
        ax.set_xticks(xs_all)
        ax.set_xticklabels([series.label(x) for x in xs_all], fontsize=8)
        ax.set_xlim(xs_all[0] / 1.6, xs_all[-1] * 1.6)
        ax.minorticks_off()
    values = [v for r in mine if (v := _value(r, what))]
    if values and series.ideal is None:
        # A flat line is the goal: keep at least a decade in view so small
        # changes are not blown up into cliffs.
        lo, hi = min(values), max(values)
        mid = math.sqrt(lo * hi)
        span = max(hi / lo, 10.0)
        ax.set_ylim(mid / math.sqrt(span) / 1.3, mid * math.sqrt(span) * 1.3)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(formatter(_fmt_us if what == "cpu" else _fmt_rate))
    ax.yaxis.set_minor_formatter(formatter(lambda v, _pos: ""))
    ax.set_xlabel(series.axis, fontsize=9)
    if what == "cpu":
        ax.set_ylabel("CPU time per operation (log; lower is better)", fontsize=9)
    else:
        ax.set_ylabel("ops/s (log; higher is better)", fontsize=9)
    title = "\n".join(textwrap.wrap(series.title, 46))
    ax.set_title(f"{name}\n{title}", fontsize=9.5)
    ax.grid(which="major", color="#e5e5e5")
    legend_title = None
    if series.ideal is None and len(xs_all) > 1:
        quantity = "cost" if what == "cpu" else "rate"
        legend_title = f"{quantity} at {series.label(xs_all[-1])} / at {series.label(xs_all[0])}"
    ax.legend(
        fontsize=7.5,
        title=legend_title,
        title_fontsize=7.5,
        frameon=False,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncols=2,
    )
