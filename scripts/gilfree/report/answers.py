"""The comparison's Markdown for any study: the answer first, the best configurations, then every ratio per
figure with its interval and outcome, and the same ratios side by side for several machines. The outcomes
are decided in outcomes.py; only the words are made here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from gilfree.report import charts, verdicts, words
from gilfree.report.outcomes import Best, Finding, Outcome, Tally, uncompared
from gilfree.report.verdicts import NotRecorded
from gilfree.study.claims import Verdict
from gilfree.study.figures import FIGURES
from gilfree.study.record import Record
from gilfree.study.studies import Study


def versus(study: Study, value) -> str:
    """'3.14t against 3.14', 'uvloop against asyncio', 'w2 against w1', 't8 against t default'."""
    setting = study.comparison.setting
    return f"{words.setting_text(setting, value)} against {words.setting_text(setting, study.comparison.baseline)}"


def stand_ins(records: list[Record]) -> str:
    """' (3.12 standing in for 3.14)' where a record's interpreter was not its variant's: the ratios measure it."""
    found = dict.fromkeys(
        f"{r.interpreter.label} standing in for {r.cell.variant}"
        for r in records
        if r.interpreter.label != r.cell.variant
    )
    return f" ({'; '.join(found)})" if found else ""


def over_text(study: Study, value) -> str:
    return (
        f"{words.setting_text(study.comparison.setting, value)} / "
        f"{words.setting_text(study.comparison.setting, study.comparison.baseline)}"
    )


def machines_text(records: list[Record]) -> str:
    identities = dict.fromkeys(record.machine.identity for record in records if record.machine)
    return "; ".join(identities) or "no machine"


def _most(study: Study, finding: Finding) -> str:
    interval = (
        f", interval {words.percent_interval(finding.estimate.interval)}"
        if finding.estimate and finding.estimate.interval
        else ""
    )
    table = f"{finding.ratio.over.table}: " if len(study.tables) > 1 else ""
    return f"most: {table}{words.pair_name(finding.ratio)}, {finding.change:+.0%}{interval}"


def tally_text(study: Study, tally: Tally) -> str:
    """'RPS: faster in 3 of 8 configurations (most: ...), on par in 2, slower in 1, can't tell in 2 (why)'."""
    above, below = FIGURES[tally.figure].directions
    parts = []
    for outcome in Outcome:
        count = tally.counts[outcome]
        if not count:
            continue
        if outcome in (Outcome.BETTER, Outcome.WORSE):
            change = tally.largest[outcome].change
            name = above if change > 0 else below
            parts.append(f"{name} in {count} ({_most(study, tally.largest[outcome])})")
        elif outcome in tally.why:
            why = ", ".join(f"{words.REASON_WORDS[kind]}: {n}" for kind, n in tally.why[outcome].items())
            if NotRecorded in tally.why[outcome]:
                why += f"; {FIGURES[tally.figure].missing_why}"
            parts.append(f"{outcome.value} in {count} ({why})")
        else:
            parts.append(f"{outcome.value} in {count}")
    return f"{words.figure_name(tally.figure)}, of {tally.total} configurations: " + "; ".join(parts) + "."


def best_section(study: Study, bests: list[Best]) -> str:
    if not bests:
        return ""
    budget = study.comparison.p99_budget_ms
    rows = []
    for best in bests:
        row = [
            best.app,
            f"/{best.endpoint}",
            words.setting_text(study.comparison.setting, best.value),
            words.cell_name(best.cell),
            f"{best.rps:.0f}",
        ]
        if budget is not None:
            row.append(
                f"{words.cell_name(best.within_budget)}, {best.within_budget_rps:.0f} RPS"
                if best.within_budget
                else "none within it"
                if best.p99_known
                else "unknown: no p99 recorded"
            )
        rows.append(row)
    headers = ["App", "Endpoint", study.comparison.setting, "Most RPS", "RPS"] + (
        [f"Most RPS with p99 ≤ {budget:g} ms"] if budget is not None else []
    )
    return (
        "The best configuration measured, by RPS (geometric mean over the runs)"
        + (
            f", and the best within the study's p99 budget of {budget:g} ms (median p99 over the runs)"
            if budget is not None
            else ""
        )
        + ":\n\n"
        + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    )


def answer_section(study: Study, tallies: list[Tally], bests: list[Best], records: list[Record]) -> str:
    lines = ["## The answer", ""]
    if not records:
        return "\n".join(lines + ["Nothing measured yet.", ""])
    band = study.comparison.band
    for value in dict.fromkeys(tally.value for tally in tallies):
        lines.append(
            f"**{versus(study, value)}**{stand_ins(records)} on {machines_text(records)}, on par meaning "
            f"within ±{band:.0%}:"
        )
        lines.append("")
        lines += [f"- {tally_text(study, tally)}" for tally in tallies if tally.value == value]
        lines.append("")
    if not tallies:
        lines += [f"No two cells of the study differ in {study.comparison.setting} only: nothing to compare.", ""]
    if alone := uncompared(study):
        lines += [
            f"Compared with nothing, since no cell differs from them in {study.comparison.setting} only with "
            f"the baseline's value ({words.setting_text(study.comparison.setting, study.comparison.baseline)}; "
            f"every other setting, concurrency included, must match): "
            f"{', '.join(f'{table} ({n} cells)' for table, n in Counter(c.table for c in alone).items())}.",
            "",
        ]
    return "\n".join(lines + [best_section(study, bests), ""])


def why_text(finding: Finding) -> str:
    return " ".join(words.reason_text(reason) for reason in finding.reasons)


def finding_row(study: Study, finding: Finding) -> list[str]:
    estimate = finding.estimate
    return [
        finding.ratio.over.table,
        words.pair_name(finding.ratio),
        over_text(study, getattr(finding.ratio.over, study.comparison.setting)),
        words.value_text(estimate) if estimate else "-",
        str(estimate.runs) if estimate else "-",
        words.outcome_text(finding),
        why_text(finding),
    ]


def figures_section(study: Study, found: dict[str, list[Finding]]) -> str:
    band = study.comparison.band
    parts = [
        "## Every comparison",
        "",
        f"Each figure of each cell over the same figure of the cell that differs only in "
        f"{study.comparison.setting}, with {words.setting_text(study.comparison.setting, study.comparison.baseline)}"
        f" instead, the ratio of the geometric means over the runs "
        f"with its 95% interval (paired where the runs were interleaved). Faster, slower, more or less: the "
        f"whole interval lies outside 1 ± {band:.2f}. On par: the whole interval lies inside it, an "
        f'equivalence test, not "no difference found". Can\'t tell: the reason is given.',
        "",
    ]
    headers = ["Table", "Configuration", "Ratio of", "Ratio [95% interval]", "Runs", "Outcome", "Why"]
    for figure, these in found.items():
        if all(f.outcome == Outcome.NOT_MEASURED for f in these):
            continue
        parts += [
            f"### {words.figure_name(figure)}",
            "",
            tabulate([finding_row(study, f) for f in these], headers=headers, tablefmt="github", disable_numparse=True),
            "",
        ]
    if len(parts) == 4:
        parts += ["Nothing compared yet.", ""]
    return "\n".join(parts)


def ratio_chart(path: Path, study: Study, found: list[Finding]) -> Path | None:
    rows = [
        charts.RatioRow(
            f"{f.ratio.over.table}: {words.pair_name(f.ratio)} "
            f"{over_text(study, getattr(f.ratio.over, study.comparison.setting))}",
            f.ratio.band.low,
            f.ratio.band.high,
            verdicts.post_value(study, f.ratio),
            f.estimate.value,
            f.estimate.interval,
        )
        for f in found
        if f.estimate
    ]
    if not rows:
        return None
    return charts.draw_ratios(
        path,
        rows,
        f"{study.title}: RPS ratios",
        f"RPS ratio ({study.comparison.setting} over {study.comparison.baseline}), log scale",
    )


# --- several machines ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """One results folder of the study: its machine's identity, its findings and its claims' verdicts."""

    folder: Path
    identity: str
    found: dict[str, list[Finding]]
    judged: list[verdicts.ClaimVerdict]


def finding_cell(finding: Finding) -> str:
    if finding.estimate is None:
        return finding.outcome.value
    return f"{words.value_text(finding.estimate)} {words.outcome_text(finding)}"


def machines_section(study: Study, machines: list[Machine]) -> str:
    """Every ratio and outcome (RPS, p99, memory) and every claim's verdict, one column per machine, the
    source's own as one more column where it publishes the figure."""
    names = [f"{index}. {m.identity}" for index, m in enumerate(machines, 1)]
    parts = [
        f"# {study.title}: {len(machines)} machines side by side",
        "",
        "Machines (each one results folder of this study):",
        "",
        *[f"{name} (`{m.folder}`)" for name, m in zip(names, machines)],
        "",
    ]
    if study.claims:
        rows = [
            [claim.text, *[judged[i].verdict.value for judged in (m.judged for m in machines)]]
            for i, claim in enumerate(study.claims)
        ]
        decided = (Verdict.HELD.value, Verdict.NOT_HELD.value)
        same = ["yes" if len(set(row[1:])) == 1 and row[1] in decided else "no" for row in rows]
        parts += [
            "## Claims",
            "",
            tabulate(
                [row + [alike] for row, alike in zip(rows, same)],
                headers=["Claim", *[f"Machine {i}" for i in range(1, len(machines) + 1)], "Same on every machine?"],
                tablefmt="github",
                disable_numparse=True,
            ),
            "",
        ]
    with_post = any(verdicts.post_value(study, f.ratio) is not None for f in machines[0].found["rps"])
    for figure in ("rps", "latency_p99", "pss", "rss"):
        columns = list(zip(*(m.found[figure] for m in machines)))
        if not columns or all(f.outcome == Outcome.NOT_MEASURED for column in columns for f in column):
            continue
        rows = []
        for column in columns:
            ratio = column[0].ratio
            post = verdicts.post_value(study, ratio) if figure in ("rps", "rss") else None
            outcomes = {f.outcome for f in column}
            rows.append(
                [
                    ratio.over.table,
                    words.pair_name(ratio),
                    over_text(study, getattr(ratio.over, study.comparison.setting)),
                    *([f"{post:.2f}" if post is not None else "-"] if with_post else []),
                    *[finding_cell(f) for f in column],
                    "yes"
                    if len(outcomes) == 1 and Outcome.CANT_TELL not in outcomes and Outcome.NOT_MEASURED not in outcomes
                    else "no",
                ]
            )
        headers = [
            "Table",
            "Configuration",
            "Ratio of",
            *(["Source"] if with_post else []),
            *[f"Machine {i}" for i in range(1, len(machines) + 1)],
            "Same outcome everywhere?",
        ]
        parts += [
            f"## {words.figure_name(figure)}",
            "",
            tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
            "",
        ]
    return "\n".join(parts)
