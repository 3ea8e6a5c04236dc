"""The post's figures beside this run's: the rows, the 3.14t / 3.14 ratios its claims rest on, one verdict per
claim with its tolerance, and diagnostics that say whether a measured row can be trusted at all.

Absolute numbers move with the hardware, so verdicts judge ratios only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from . import charts, render, results
from .matrix import TABLES, TABLES_BY_ID, Cell, Table
from .published import PUBLISHED, Figures
from .stats import LOADGEN_SATURATED_CORES

# Verdict tolerances; ratios are 3.14t / 3.14 unless a claim says otherwise.
PAR = 0.10  # "on par": within 1 +/- PAR. Any other change must leave this band to count.
SLOWDOWN = 0.20  # "about 20% slower": within 1 - SLOWDOWN +/- SLOWDOWN_TOLERANCE
SLOWDOWN_TOLERANCE = 0.10
FAR_FASTER = 1.5  # "far faster": at least this
MEMORY_MARGIN = 0.05  # "less" / "more" memory: at most 1 - MEMORY_MARGIN / at least 1 + MEMORY_MARGIN

# Diagnostics.
LITTLE_TOLERANCE = 0.01  # rps x latency avg may miss the connections by this fraction (sound rows of the post)
ONE_THREAD_LOADGENS = ("wrk", "rewrk")  # run from one thread here: near one core they are the bottleneck
IO_WAIT_S = 0.010  # what /io sleeps

TOLERANCES = f"""\
- On par: a ratio within 1 ± {PAR:.2f}. The post's own "on par" rows differ by at most 3%, and a load test
  repeated on one machine moves by a few percent; a change must leave this band to count as one.
- About 20% slower: a ratio within {1 - SLOWDOWN:.2f} ± {SLOWDOWN_TOLERANCE:.2f}, which meets the on-par band at
  its edge rather than overlapping it. The post measured 0.80 and 0.82.
- Far faster: a ratio of at least {FAR_FASTER:.2f}. The post measured 3.76 (1 worker) and 1.66 (2 workers);
  how far 3.14t can go depends on how many cores the machine has.
- Less / more memory: a RAM ratio at most {1 - MEMORY_MARGIN:.2f} / at least {1 + MEMORY_MARGIN:.2f}. The post's
  smallest gap is 10% (81MB against 90MB); peak RSS repeats within a few MB. Caveat: RAM is the RSS summed over
  the server's processes, which counts pages they share once per process. That inflates 3.14 runs (Granian's
  main process and one process per worker) against 3.14t runs (workers as threads of one process), in the
  post as here; the diagnostics show PSS, which splits shared pages, where it was recorded.
- Comparable: a ratio is only judged between rows measured alike (same settings but port and runs, profile,
  lock, machine and load generator), neither with load errors or non-2xx answers; otherwise "not comparable".
- Little's law: rps x latency avg within {LITTLE_TOLERANCE:.0%} of the connections, as in all but six of the
  post's rows. wrk and rewrk are flagged at {LOADGEN_SATURATED_CORES} cores or more (oha uses many threads)."""

SUMMED_RSS = "summed RSS: see the caveat below"
FIELD_NAMES = {"rps": "RPS", "latency_avg_ms": "Latency avg", "cpu": "CPU", "ram_mb": "RAM"}
SOURCE = "The future of Python web services looks GIL-free (2025-10-18): AMD Ryzen 7 5700X, rewrk 30s"


@dataclass(frozen=True)
class Side:
    """One side of the comparison: figures by cell, the interpreter that produced each, and the stored record
    behind each (none for the post's, whose rows count as measured alike)."""

    figures: dict[Cell, Figures]
    labels: dict[Cell, str]
    records: dict[Cell, dict] = field(default_factory=dict)

    def not_comparable(self, cells: list[Cell]) -> list[str]:
        """Why these cells' figures may not be divided: conditions that differ, or load faults in any of them."""
        records = {cell: self.records[cell] for cell in cells if cell in self.records}
        faults = [f"{name} in {cell.key}" for cell, record in records.items()
                  for key, name in (("errors", "errors"), ("non_2xx", "non-2xx")) if record["load"].get(key)]
        return render.condition_differences(list(records.values())) + faults


def post_side() -> Side:
    cells = [cell for table in TABLES for cell in table.cells]
    return Side({cell: PUBLISHED[(cell.table, cell.key)] for cell in cells}, {cell: cell.variant for cell in cells})


def measured_figures(record: dict) -> Figures:
    load, usage = record["load"], record["resources"]
    return Figures(load["rps"], load["latency_avg_ms"], load["latency_max_ms"], usage["cpu_cores"],
                   usage["peak_rss_bytes"] / 2**20)


def measured_side(stored: dict[tuple[str, str], dict]) -> Side:
    """This run's cells that were measured; failed ones are left out, as if not run."""
    ok = {Cell(**record["cell"]): record for record in stored.values() if record["status"] == "ok"}
    return Side({cell: measured_figures(record) for cell, record in ok.items()},
                {cell: record["interpreter"]["label"] for cell, record in ok.items()}, ok)


@dataclass(frozen=True)
class Ratio:
    """One figure of one cell over the same figure of another, and what the claim needs it to be."""

    name: str
    over: Cell
    under: Cell
    field: str
    holds: Callable[[float], bool]

    def value(self, figures: dict[Cell, Figures]) -> float:
        return getattr(figures[self.over], self.field) / getattr(figures[self.under], self.field)


@dataclass(frozen=True)
class Claim:
    text: str
    tolerance: str
    ratios: tuple[Ratio, ...]

    @property
    def cells(self) -> list[Cell]:
        return list(dict.fromkeys(cell for ratio in self.ratios for cell in (ratio.under, ratio.over)))


def on_par(ratio: float) -> bool:
    return abs(ratio - 1) <= PAR


def about_20_percent_slower(ratio: float) -> bool:
    return abs(ratio - (1 - SLOWDOWN)) <= SLOWDOWN_TOLERANCE


def far_faster(ratio: float) -> bool:
    return ratio >= FAR_FASTER


def less_memory(ratio: float) -> bool:
    return ratio <= 1 - MEMORY_MARGIN


def more_memory(ratio: float) -> bool:
    return ratio >= 1 + MEMORY_MARGIN


def helps(ratio: float) -> bool:
    return ratio >= 1 + PAR


def hurts(ratio: float) -> bool:
    return ratio <= 1 - PAR


def variant_pairs(table_id: str) -> list[tuple[Cell, Cell]]:
    """A variant table's (3.14, 3.14t) cells, one pair per worker count."""
    cells = TABLES_BY_ID[table_id].cells
    return list(zip(cells[0::2], cells[1::2]))


def free_threaded_over_gil(table_id: str, field: str, holds: Callable[[float], bool]) -> tuple[Ratio, ...]:
    return tuple(Ratio(f"{render.ENDPOINT_NAMES[gil.endpoint]} {FIELD_NAMES[field]} w{gil.workers}",
                       threaded, gil, field, holds)
                 for gil, threaded in variant_pairs(table_id))


def find(table_id: str, **attributes) -> Cell:
    return next(cell for cell in TABLES_BY_ID[table_id].cells
                if all(getattr(cell, name) == value for name, value in attributes.items()))


def threads_ratio(endpoint: str, holds: Callable[[float], bool]) -> Ratio:
    most, fewest = (find("wsgi-threads-gil", endpoint=endpoint, blocking_threads=n) for n in (128, 1))
    return Ratio(f"{render.ENDPOINT_NAMES[endpoint]} RPS t128/t1", most, fewest, "rps", holds)


def workers_ratio(workers: int, threads: int, against: tuple[int, int]) -> Ratio:
    table = "wsgi-workers-threads-ft"
    more_workers = find(table, workers=workers, blocking_threads=threads)
    more_threads = find(table, workers=against[0], blocking_threads=against[1])
    return Ratio(f"RPS {workers}x{threads}/{against[0]}x{against[1]}", more_workers, more_threads, "rps", on_par)


CLAIMS = (
    Claim("ASGI JSON: about 20% slower on 3.14t",
          f"RPS ratio {1 - SLOWDOWN - SLOWDOWN_TOLERANCE:.2f} to {1 - SLOWDOWN + SLOWDOWN_TOLERANCE:.2f}, "
          "per worker count",
          free_threaded_over_gil("asgi-json", "rps", about_20_percent_slower)),
    Claim("ASGI I/O: on par", f"RPS ratio 1 ± {PAR:.2f}, per worker count",
          free_threaded_over_gil("asgi-io", "rps", on_par)),
    Claim("ASGI: less memory on 3.14t",
          f"RAM ratio at most {1 - MEMORY_MARGIN:.2f}, both endpoints and worker counts; {SUMMED_RSS}",
          free_threaded_over_gil("asgi-json", "ram_mb", less_memory)
          + free_threaded_over_gil("asgi-io", "ram_mb", less_memory)),
    Claim("WSGI JSON: far faster on 3.14t", f"RPS ratio at least {FAR_FASTER:.2f}, per worker count",
          free_threaded_over_gil("wsgi-json", "rps", far_faster)),
    Claim("WSGI I/O: on par, with more memory on 3.14t",
          f"RPS ratio 1 ± {PAR:.2f} and RAM ratio at least {1 + MEMORY_MARGIN:.2f}, per worker count; {SUMMED_RSS}",
          free_threaded_over_gil("wsgi-io", "rps", on_par) + free_threaded_over_gil("wsgi-io", "ram_mb", more_memory)),
    Claim("WSGI on 3.14 (table 3): more threads help I/O and hurt JSON",
          f"RPS at 128 threads / 1 thread: at least {1 + PAR:.2f} for I/O, at most {1 - PAR:.2f} for JSON",
          (threads_ratio("io", helps), threads_ratio("json", hurts))),
    Claim("WSGI on 3.14t (table 4): workers and threads scale alike",
          f"RPS with more workers / more threads, same total, 1 ± {PAR:.2f}",
          (workers_ratio(2, 1, (1, 2)), workers_ratio(4, 1, (1, 4)), workers_ratio(2, 2, (1, 4)))),
)


def evidence(claim: Claim, side: Side) -> str:
    return ", ".join(f"{ratio.name} {ratio.value(side.figures):.2f}" for ratio in claim.ratios)


def not_comparable(claim: Claim, side: Side) -> list[str]:
    """Why some ratio of the claim divides figures that were not measured alike; empty when every one was."""
    return list(dict.fromkeys(reason for ratio in claim.ratios
                              for reason in side.not_comparable([ratio.under, ratio.over])))


def verdict(claim: Claim, side: Side) -> str:
    """'held', 'not held', 'not measured' or 'not comparable: why'; a stand-in interpreter is named, since it is
    not what the post ran."""
    if any(cell not in side.figures for cell in claim.cells):
        return "not measured"
    if reasons := not_comparable(claim, side):
        return "not comparable: " + "; ".join(reasons)
    held = all(ratio.holds(ratio.value(side.figures)) for ratio in claim.ratios)
    stand_ins = sorted({side.labels[cell] for cell in claim.cells if side.labels[cell] != cell.variant})
    return ("held" if held else "not held") + (f" (stand-in: {', '.join(stand_ins)})" if stand_ins else "")


def verdicts(side: Side) -> dict[str, str]:
    return {claim.text: verdict(claim, side) for claim in CLAIMS}


def verdict_section(post: Side, yours: Side) -> str:
    rows = []
    for claim in CLAIMS:
        missing = [cell.key for cell in claim.cells if cell not in yours.figures]
        measured = f"missing or failed: {', '.join(missing)}" if missing else evidence(claim, yours)
        rows.append([claim.text, claim.tolerance, evidence(claim, post), measured, verdict(claim, yours)])
    table = tabulate(rows, headers=["Claim", "Tolerance", "Post", "Yours", "Verdict"], tablefmt="github")
    return f"## Verdicts\n\n{table}\n\nTolerances, and why:\n\n{TOLERANCES}\n"


def post_values(table: Table, cell: Cell) -> list[str]:
    formats = render.formatted(**vars(PUBLISHED[(cell.table, cell.key)]))
    cells, _ = render.row(table, cell, None)
    return [formats.get(column, value) for column, value in zip(table.columns, cells)]


def rows_section(table: Table, stored: dict[tuple[str, str], dict]) -> str:
    rows = []
    for cell in table.cells:
        cells, notes = render.row(table, cell, stored.get((table.id, cell.key)))
        posted = post_values(table, cell)
        rows.append([*posted[:2], "post", *posted[2:], ""])
        rows.append([*cells[:2], "yours", *cells[2:], "; ".join(notes)])
    headers = [render.HEADERS[c] for c in table.columns[:2]] + ["Source"] + [
        render.HEADERS[c] for c in table.columns[2:]] + ["Notes"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def ratio_text(gil: Cell, threaded: Cell, field: str, side: Side) -> str:
    if gil not in side.figures or threaded not in side.figures:
        return "-"
    if reasons := side.not_comparable([gil, threaded]):
        return f"n/c ({'; '.join(reasons)})"
    ratio = getattr(side.figures[threaded], field) / getattr(side.figures[gil], field)
    labels = (side.labels[threaded], side.labels[gil])
    return f"{ratio:.2f}" + ("" if labels == (threaded.variant, gil.variant) else f" ({labels[0]} / {labels[1]})")


def ratios_section(table: Table, post: Side, yours: Side) -> str:
    headers = ["Workers"] + [f"{FIELD_NAMES[field]} {side}" for field in FIELD_NAMES for side in ("post", "yours")]
    rows = [[gil.workers] + [ratio_text(gil, threaded, field, side) for field in FIELD_NAMES for side in (post, yours)]
            for gil, threaded in variant_pairs(table.id)]
    return "3.14t / 3.14, per worker count:\n\n" + tabulate(rows, headers=headers, tablefmt="github",
                                                             disable_numparse=True)


def table_section(table: Table, stored: dict[tuple[str, str], dict], post: Side, yours: Side) -> str:
    parts = [f"## Table {table.number}: {table.title}", f"![Table {table.number}](charts/{table.id}.png)",
             rows_section(table, stored)]
    if "cpu" in table.columns:
        parts.append(ratios_section(table, post, yours))
    return "\n\n".join(parts) + "\n"


def in_flight(rps: float, latency_avg_ms: float) -> float:
    """Little's law: in a closed loop, requests per second x mean latency = connections busy on average."""
    return rps * latency_avg_ms / 1000


def ideal_io_rps(cell: Cell) -> float:
    """What /io could serve if only its 10 ms sleep counted: one request per sleep per slot that can wait."""
    slots = cell.concurrency if cell.interface == "asgi" else min(cell.concurrency,
                                                                  cell.workers * cell.blocking_threads)
    return slots / IO_WAIT_S


def diagnostic_flags(cell: Cell, in_flight_now: float, load: dict) -> list[str]:
    """What makes a row doubtful. Saturation only counts for one-thread generators: oha spreads over cores."""
    flags = []
    if in_flight_now < cell.concurrency * (1 - LITTLE_TOLERANCE):
        flags.append(f"stalled connections: {cell.concurrency - in_flight_now:.0f}")
    if in_flight_now > cell.concurrency * (1 + LITTLE_TOLERANCE):
        flags.append(f"more in flight than connections, by {in_flight_now - cell.concurrency:.0f}: "
                     "RPS and latency disagree")
    if load.get("generator") in ONE_THREAD_LOADGENS and load["loadgen_cpu_cores"] >= LOADGEN_SATURATED_CORES:
        flags.append("load generator saturated: likely the bottleneck")
    return flags


def megabytes(size: float | None) -> str:
    return "" if size is None else f"{size / 2**20:.0f}MB"


def diagnostic_row(table: Table, cell: Cell, record: dict, memory: bool) -> list[str]:
    """One measured row's diagnostics; with memory, its peak summed RSS beside its PSS at the end of the load."""
    load, usage, post = record["load"], record["resources"], PUBLISHED[(cell.table, cell.key)]
    in_flight_now = in_flight(load["rps"], load["latency_avg_ms"])
    efficiency = (f"{load['rps'] / ideal_io_rps(cell):.0%} ({post.rps / ideal_io_rps(cell):.0%})"
                  if cell.endpoint == "io" else "")
    threads = cell.blocking_threads or "default"
    sizes = [megabytes(usage["peak_rss_bytes"]), megabytes(usage.get("end_pss_bytes"))] if memory else []
    return [str(table.number), record["interpreter"]["label"],
            f"/{cell.endpoint}, workers {cell.workers}, threads {threads}", str(cell.concurrency),
            f"{in_flight_now:.1f} ({in_flight(post.rps, post.latency_avg_ms):.1f})", efficiency,
            f"{load['loadgen_cpu_cores']:.2f}", str(load["errors"]),
            "unknown" if load["non_2xx"] is None else str(load["non_2xx"]), *sizes,
            "; ".join(diagnostic_flags(cell, in_flight_now, load))]


def diagnostics_section(stored: dict[tuple[str, str], dict]) -> str:
    measured = [(table, cell, record) for table in TABLES for cell in table.cells
                if (record := stored.get((table.id, cell.key))) and record["status"] == "ok"]
    memory = any("end_pss_bytes" in record["resources"] for _, _, record in measured)
    rows = [diagnostic_row(table, cell, record, memory) for table, cell, record in measured]
    headers = ["Table", "Python", "Row", "Connections", "In flight (post)", "I/O efficiency (post)",
               "Load generator CPU", "Errors", "Non-2xx"] + (["Peak RSS", "PSS at end"] if memory else []) + ["Flags"]
    return "\n".join([
        "## Diagnostics of the measured rows",
        "",
        "- In flight: RPS x latency avg (Little's law); in a closed loop it equals the connections. Fewer means",
        "  connections sat stalled (the post's 3.14 WSGI JSON rows, 27 s max latency, show 13 and 49);",
        "  more means the load generator's RPS and latency cannot both be right.",
        f"- I/O efficiency: RPS over the ideal for /io, slots / {IO_WAIT_S * 1000:.0f} ms, where slots are the",
        "  connections (ASGI) or min(connections, workers x blocking threads) (WSGI).",
        "- Load generator CPU: cores used by the load generator. wrk and rewrk run one thread: near 1.0 they, not",
        "  the server, set the pace.",
        "- Peak RSS / PSS at end (where recorded): summed RSS counts pages shared between the server's processes",
        "  once per process; PSS splits them, so it compares one multi-process run with one multi-thread run fairly.",
        "",
        tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) if rows else "Nothing measured yet.",
        "",
    ])


def chart(results_dir: Path, table: Table, stored: dict[tuple[str, str], dict], yours: Side) -> Path:
    names = []
    for cell in table.cells:
        record = stored.get((table.id, cell.key))
        ran = "not run" if record is None else "failed" if record["status"] != "ok" else yours.labels[cell]
        leading = render.row(table, cell, None)[0][:2]
        names.append(", ".join(leading) + ("" if ran == cell.variant else f"\nyours: {ran}"))
    return charts.draw(results_dir / "charts" / f"{table.id}.png", table, names,
                       [PUBLISHED[(table.id, cell.key)] for cell in table.cells],
                       [yours.figures.get(cell) for cell in table.cells],
                       ", ".join(render.HEADERS[column] for column in table.columns[:2]))


def write_report(results_dir: Path) -> list[Path]:
    """Write COMPARISON.md and one chart per table; return their paths, the report first."""
    stored = results.load(results_dir)
    post, yours = post_side(), measured_side(stored)
    chart_paths = [chart(results_dir, table, stored, yours) for table in TABLES]
    report = "\n".join([
        "# The post beside this run",
        "",
        f"Post: {SOURCE}. This run: {render.setups(list(stored.values())) or 'nothing measured yet'}.",
        "Absolute numbers move with the hardware; the claims, and the verdicts, rest on ratios only.",
        "",
        verdict_section(post, yours),
        *(table_section(table, stored, post, yours) for table in TABLES),
        diagnostics_section(stored),
    ])
    path = results_dir / "COMPARISON.md"
    results.write_text_atomic(path, report)
    return [path, *chart_paths]
