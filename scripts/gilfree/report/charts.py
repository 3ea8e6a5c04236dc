"""Charts drawn without a display: the ratios behind the claims (the post's beside this run's, with each band and
interval), and one bar chart per table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gilfree.report.scaling import Analysis, Point, PointStatus
from gilfree.study import results
from gilfree.study.published import Figures
from gilfree.study.record import Record, Run
from gilfree.study.schema import free_threaded
from gilfree.study.studies import Cell, Study, Table


@cache
def _pyplot():
    """pyplot, imported on the first chart: it takes about a second, which every harness start would pay."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a benchmark machine or in CI; set before pyplot loads
    import matplotlib.pyplot

    return matplotlib.pyplot


PANELS = {"rps": "RPS", "ram_mb": "RAM (MiB)"}
BAR_WIDTH = 0.4
LOG_SCALE_SPREAD = 100  # a panel whose bars span more than this factor gets a log axis (table 3: 94 to 19377)


def _panel(axes, field: str, post: list[Figures | None], yours: list[Figures | None]) -> None:
    """One figure's bars: the post's at the left of each row where it gives one, this run's at the right where
    measured."""
    positions = range(len(post))
    published = [(x, getattr(f, field)) for x, f in zip(positions, post) if f is not None]
    posted = axes.bar(
        [x - BAR_WIDTH / 2 for x, _ in published],
        [value for _, value in published],
        BAR_WIDTH,
        label="post",
        color="0.65",
    )
    measured = [(x, getattr(f, field)) for x, f in zip(positions, yours) if f is not None]
    ours = axes.bar(
        [x + BAR_WIDTH / 2 for x, _ in measured],
        [value for _, value in measured],
        BAR_WIDTH,
        label="yours",
        color="tab:blue",
    )
    for bars in (posted, ours):
        axes.bar_label(bars, fmt="%.0f", fontsize=7)
    values = [bar.get_height() for bars in (posted, ours) for bar in bars]
    if values and max(values) > LOG_SCALE_SPREAD * min(values):
        axes.set_yscale("log")
    axes.set_ylabel(PANELS[field])


@dataclass(frozen=True)
class RatioRow:
    """One ratio: the band it must lie in, the source's value where it publishes one, and this run's with its
    interval."""

    label: str
    band_low: float
    band_high: float
    post: float | None
    yours: float | None
    interval: tuple[float, float] | None


def draw_ratios(path: Path, rows: list[RatioRow], title: str, axis_label: str) -> Path:
    """One row per ratio on a log axis (ratios run from 0.5 to 120): the band shaded, the post's value as a grey
    diamond, this run's as a blue dot with its interval as a bar."""
    values = [v for row in rows for v in (row.post, row.yours, *(row.interval or ())) if v]
    values += [edge for row in rows for edge in (row.band_low, row.band_high) if 0 < edge < math.inf]
    low, high = min(values) / 1.3, max(values) * 1.3
    figure, axes = _pyplot().subplots(figsize=(9, 0.42 * len(rows) + 1.6))
    positions = range(len(rows))[::-1]
    for y, row in zip(positions, rows):
        left, right = max(row.band_low, low), min(row.band_high, high)
        axes.barh(
            y,
            right - left,
            left=left,
            height=0.7,
            color="tab:green",
            alpha=0.18,
            label="band" if y == positions[0] else None,
        )
    posted = [(y, row.post) for y, row in zip(positions, rows) if row.post is not None]
    if posted:
        axes.scatter(
            [post for _, post in posted], [y for y, _ in posted], marker="D", color="0.45", zorder=3, label="source"
        )
    measured = [(y, row) for y, row in zip(positions, rows) if row.yours is not None]
    for y, row in measured:
        if row.interval:
            axes.plot(row.interval, [y, y], color="tab:blue", linewidth=2.5, zorder=2)
    axes.scatter(
        [row.yours for _, row in measured],
        [y for y, _ in measured],
        color="tab:blue",
        zorder=4,
        label="yours (bar: 95% interval)",
    )
    axes.axvline(1, color="0.3", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_xlim(low, high)
    axes.set_yticks(list(positions), [row.label for row in rows], fontsize=8)
    axes.set_xlabel(axis_label)
    axes.legend(fontsize=8, loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    try:
        results.replace_atomically(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    finally:
        _pyplot().close(figure)
    return path


def draw(
    path: Path, table: Table, names: list[str], post: list[Figures | None], yours: list[Figures | None], axis_name: str
) -> Path:
    """Write one PNG for the table: an RPS panel, and a RAM panel where the table has RAM."""
    fields = ["rps"] + (["ram_mb"] if "ram" in table.columns else [])
    figure, panels = _pyplot().subplots(
        1, len(fields), figsize=(1.6 * len(names) * len(fields) + 2, 4.8), squeeze=False
    )
    for axes, field in zip(panels[0], fields):
        _panel(axes, field, post, yours)
        axes.set_xticks(range(len(names)), names, fontsize=8)
        axes.set_xlabel(axis_name)
    panels[0][0].legend()
    figure.suptitle(f"Table {table.number}: {table.title}")
    figure.tight_layout()
    return _save(figure, path)


# RSS timelines, drawn without a display too: how the server tree's memory moved during the load, both variants
# of a cell on one chart.
def variant_colour(variant: str) -> str:
    """Free-threaded builds blue, GIL builds orange, in every chart."""
    return "tab:blue" if free_threaded(variant) else "tab:orange"


def timeline_path(results_dir: Path, cell: Cell) -> Path:
    """One file per cell of a variant table, shared by its two variants: charts/timelines/asgi-json-w1-...png."""
    return results_dir / "charts" / "timelines" / f"{cell.table}-{cell.key.removeprefix(cell.variant + '-')}.png"


def _run_label(label: str, number: int, run: Run) -> str:
    growth = run.resources.rss_growth_last_half if run.resources else None
    return f"{label} run {number}: " + (
        "growth unknown (load too short)" if growth is None else f"{growth:+.1%} over the second half"
    )


def rss_timeline(path: Path, title: str, records: list[Record]) -> Path:
    """RSS (MiB) and CPU (cores) over the seconds since the load began: one line per run that kept its series,
    one colour per variant; the second half, where the growth is fitted, shaded."""
    figure, (rss_axes, cpu_axes) = _pyplot().subplots(2, 1, sharex=True, figsize=(8, 6), height_ratios=(2, 1))
    ends = []
    for record in records:
        colour = variant_colour(record.cell.variant)
        runs = [run for run in record.runs if run.ok and run.timeline]
        for number, run in enumerate(runs, 1):
            series = run.timeline
            rss_axes.plot(
                series["t_s"],
                [size / 2**20 for size in series["rss_bytes"]],
                color=colour,
                alpha=0.8,
                label=_run_label(record.interpreter.label, number, run),
            )
            cpu_axes.plot(
                series["t_s"],
                [float("nan") if cores is None else cores for cores in series["cores"]],
                color=colour,
                alpha=0.8,
            )
            ends.append(series["t_s"][-1])
    for axes in (rss_axes, cpu_axes):
        axes.axvspan(max(ends) / 2, max(ends), color="0.93", zorder=0)
    rss_axes.set_ylabel("RSS of the server's tree (MiB)")
    rss_axes.legend(fontsize=7)
    cpu_axes.set_ylabel("CPU (cores)")
    cpu_axes.set_xlabel("seconds since the load began (second half shaded)")
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def write_timelines(results_dir: Path, study: Study, stored: dict[tuple[str, str], Record]) -> list[Path]:
    """One RSS timeline per cell of the tables that hold two variants, drawn where a run of it kept its series."""
    written = []
    if len(study.variants) != 2:
        return written
    for table in study.tables:
        for pair in table.variant_pairs(*study.variants):
            gil = pair[0]
            records = [
                record
                for cell in pair
                if (record := stored.get((table.id, cell.key))) and any(run.ok and run.timeline for run in record.runs)
            ]
            if records:
                threads = gil.blocking_threads or "default"
                title = (
                    f"Table {table.number}, {gil.endpoint}, workers {gil.workers}, threads {threads}, "
                    f"c={gil.concurrency}: memory over the load"
                )
                written.append(rss_timeline(timeline_path(results_dir, gil), title, records))
    return written


# Core scaling (scaling.analyse): one panel per app's endpoint, k on a log-2 axis, one line per variant. A point
# that is not OK, or whose figure is unknown, leaves a gap in its line, and the reason is written at its k: never
# drawn as zero.
SCALING_RPS_CHART = "scaling-rps.png"
SCALING_MEMORY_CHART = "scaling-memory.png"


def _gap_reason(point: Point) -> str:
    return "unknown" if point.status is PointStatus.OK else point.status.value


def _scaling_panels(analysis: Analysis, ylabel: str, value, ideal: bool, title: str, path: Path) -> Path:
    """One panel per (app, endpoint): `value(point)` against k for each variant (None: a gap), with the ideal
    line k x RPS(1) of each variant where `ideal`."""
    panels = list(dict.fromkeys((curve.app, curve.endpoint) for curve in analysis.curves()))
    ks = sorted({point.k for point in analysis.points})
    figure, axes_row = _pyplot().subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    for axes, (app, endpoint) in zip(axes_row[0], panels):
        curves = [curve for curve in analysis.curves() if (curve.app, curve.endpoint) == (app, endpoint)]
        gaps: dict[int, list[str]] = {}
        for curve in curves:
            colour = variant_colour(curve.variant)
            line = analysis.curve(curve)
            values = [value(point) for point in line]
            axes.plot(
                [p.k for p in line],
                [math.nan if v is None else v for v in values],
                marker="o",
                color=colour,
                label=curve.variant,
            )
            first = next((p for p in line if p.k == 1 and p.rps is not None), None)
            if ideal and first is not None:
                axes.plot(
                    ks,
                    [k * first.rps for k in ks],
                    linestyle="--",
                    color=colour,
                    alpha=0.5,
                    label=f"{curve.variant} ideal (k x RPS(1))",
                )
            for point, shown in zip(line, values):
                if shown is None:
                    gaps.setdefault(point.k, []).append(f"{curve.variant}: {_gap_reason(point)}")
        for k, reasons in gaps.items():
            axes.annotate(
                "\n".join(reasons),
                (k, 0.02),
                rotation=90,
                fontsize=7,
                color="0.35",
                xycoords=("data", "axes fraction"),
                va="bottom",
                ha="center",
            )
        axes.set_xscale("log", base=2)
        axes.set_xticks(ks, [str(k) for k in ks])
        axes.set_xlim(ks[0] / 1.3, ks[-1] * 1.3)
        axes.set_xlabel("k: CPUs the server may use")
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        axes.set_title(f"{app} /{endpoint}", fontsize=9)
        axes.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def scaling_rps(folder: Path, analysis: Analysis) -> Path:
    """RPS against k, with each variant's ideal linear line k x RPS(1)."""
    return _scaling_panels(
        analysis,
        "RPS",
        lambda point: point.rps,
        True,
        "Throughput against the CPUs the server may use",
        folder / SCALING_RPS_CHART,
    )


def scaling_memory(folder: Path, analysis: Analysis) -> Path:
    """The whole server tree's PSS (MiB) at the end of the load against k; unknown PSS leaves a gap."""
    return _scaling_panels(
        analysis,
        "PSS of the server's tree (MiB)",
        lambda point: None if point.pss_bytes is None else point.pss_bytes / 2**20,
        False,
        "Memory against the CPUs the server may use",
        folder / SCALING_MEMORY_CHART,
    )
