"""The core-scaling report in Markdown: where each variant stops scaling, 3.14t / 3.14 at each k, and the figures
of every point. Formatting only: every judgement comes from scaling.analyse()."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from gilfree.report.scaling import KNEE_MARGINAL_EFFICIENCY, Analysis, Knee, KneeKind, Point, PointStatus, VariantRatio
from gilfree.study import results

TITLE = "Core scaling: throughput and memory against the CPUs the server may use"


def _unknown(value: float | None, form: str) -> str:
    return "unknown" if value is None else format(value, form)


def _not_measured(point: Point) -> str:
    """A point that is not OK, said as what it is: failed (with its reason), incomplete, or not run."""
    reason = f" ({point.failure})" if point.failure else ""
    return f"k={point.k} {point.status.value}{reason}"


def knee_text(knee: Knee) -> str:
    if knee.kind is KneeKind.STOPS:
        text = (
            f"stops scaling after k={knee.k}: the step to k={knee.step_to} brought "
            f"{knee.marginal_efficiency:.0%} of the ideal gain"
        )
        return text + (
            " (the load generator was saturated there: the limit may be its own)" if knee.paced_by_loadgen else ""
        )
    gap = f"; {_not_measured(knee.gap)}" if knee.gap else ""
    if knee.kind is KneeKind.SCALES:
        return f"scales to k={knee.k}, the largest k measured{gap}"
    return f"not enough points (k=1 and k=2 measured in a row are needed){gap}"


def ratio_text(ratio: VariantRatio) -> str:
    if ratio.value is not None:
        return f"{ratio.value:.2f}x"
    return ", ".join(
        f"{point.curve.variant} {point.status.value}"
        for point in (ratio.over, ratio.under)
        if point.status is not PointStatus.OK
    )


def _knee_table(analysis: Analysis) -> str:
    rows = [[k.curve.app, k.curve.endpoint, k.curve.variant, knee_text(k)] for k in analysis.knees]
    return tabulate(rows, headers=["App", "Endpoint", "Variant", "Where it stops scaling"], tablefmt="github")


def _ratio_table(analysis: Analysis) -> str:
    ks = sorted({ratio.k for ratio in analysis.ratios})
    lines = {}
    for ratio in analysis.ratios:
        name = (ratio.app, ratio.endpoint, f"{ratio.over.curve.variant} / {ratio.under.curve.variant}")
        lines.setdefault(name, {})[ratio.k] = ratio_text(ratio)
    rows = [[*name, *(by_k.get(k, "") for k in ks)] for name, by_k in lines.items()]
    return tabulate(rows, headers=["App", "Endpoint", "RPS ratio", *(f"k={k}" for k in ks)], tablefmt="github")


def _figures(point: Point) -> list[str]:
    if point.status is not PointStatus.OK:
        return [point.status.value] * 6 + [point.failure or ""]
    mib = None if point.pss_bytes is None else point.pss_bytes / 2**20
    return [
        f"{point.rps:.0f}",
        _unknown(point.p99_ms, ".2f"),
        _unknown(point.cores_used, ".2f"),
        _unknown(mib, ".0f"),
        _unknown(point.efficiency, ".0%"),
        _unknown(point.rps_per_gb_pss, ".0f"),
        "load generator saturated" if point.loadgen_saturated else "",
    ]


def _points_table(analysis: Analysis) -> str:
    rows = [[p.curve.app, p.curve.endpoint, p.curve.variant, p.k, *_figures(p)] for p in analysis.points]
    headers = [
        "App",
        "Endpoint",
        "Variant",
        "k",
        "RPS",
        "p99 (ms)",
        "Cores used",
        "PSS (MiB)",
        "Efficiency",
        "RPS per GB of PSS",
        "Notes",
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def markdown(analysis: Analysis) -> str:
    return (
        "\n\n".join(
            [
                f"# {TITLE}",
                "The server ran on the first k CPUs of the machine, the load generator on all the others. Efficiency is "
                "RPS(k) / (k x RPS(1)): 100% is the ideal linear line. A variant stops scaling after the first k whose "
                f"next measured step brings less than {KNEE_MARGINAL_EFFICIENCY:.0%} of the ideal gain, "
                "(k' - k) x RPS(1). PSS is the whole server tree's, read as the load ended; a GB is 10^9 bytes. "
                "Unknown figures say so; failed and unrun points are never counted as zero.",
                "## Where each variant stops scaling",
                _knee_table(analysis),
                "## 3.14t / 3.14 at each k",
                _ratio_table(analysis),
                "## Figures per point",
                _points_table(analysis),
            ]
        )
        + "\n"
    )


def write(path: Path, analysis: Analysis) -> Path:
    results.write_text_atomic(path, markdown(analysis))
    return path
