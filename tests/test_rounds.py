"""How many rounds a session runs and in which order: shuffled per round by a recorded seed, and --repeat auto,
which adds rounds until the compared intervals are settled, stopping by its rule or at its caps."""

import json
import subprocess
import sys

import pytest
from conftest import POST_APPS_TOML, REAL_313_HEAD, ROOT, free_port

from gilfree.run import rounds
from gilfree.run.rounds import AutoRepeat, Compared, Stop
from gilfree.study.studies import article

CELLS = list(article().tables_by_id["asgi-json"].cells)  # 3.14, 3.14t, 3.14, 3.14t
RULE = AutoRepeat(target_width=0.10, band=0.10, max_rounds=6, budget_s=100.0)


def test_every_due_cell_runs_once_a_round_in_an_order_the_seed_repeats():
    orders = [rounds.round_order(CELLS, dict.fromkeys(CELLS, 0), round_, seed=7) for round_ in range(8)]
    assert all(sorted(order, key=CELLS.index) == CELLS for order in orders)
    assert orders == [rounds.round_order(CELLS, dict.fromkeys(CELLS, 0), round_, seed=7) for round_ in range(8)]
    assert len({tuple(order) for order in orders}) > 1  # shuffled: 8 rounds of 4 cells are not all alike
    assert [rounds.round_order(CELLS, dict.fromkeys(CELLS, 0), 0, seed) for seed in range(8)] != [orders[0]] * 8


def test_cells_with_runs_stored_skip_the_rounds_they_already_have():
    done = {CELLS[0]: 2, CELLS[1]: 1, CELLS[2]: 1, CELLS[3]: 0}
    assert rounds.round_order(CELLS, done, 0, seed=1) == [CELLS[3]]
    assert sorted(rounds.round_order(CELLS, done, 1, seed=1), key=CELLS.index) == CELLS[1:]
    assert sorted(rounds.round_order(CELLS, done, 2, seed=1), key=CELLS.index) == CELLS


def ratio(low, high):
    return Compared("r", (low, high), True)


@pytest.mark.parametrize(
    "found, rounds_run, elapsed, expected",
    [
        ([ratio(0.98, 1.02)], 2, 0, None),  # below 3 rounds there is no interval
        ([ratio(0.98, 1.02), ratio(0.70, 0.75)], 3, 0, Stop.SETTLED),  # both narrower than 10%
        ([ratio(0.98, 1.02), ratio(1.5, 2.5)], 3, 0, Stop.DECIDED),  # wide, but wholly above the band
        ([ratio(0.9, 1.2)], 3, 0, None),  # straddles the band and wider than the target: one more round
        ([ratio(0.9, 1.2)], 6, 0, Stop.MAX_ROUNDS),
        ([ratio(0.9, 1.2)], 4, 85.0, Stop.BUDGET),  # 85 s for 4 rounds: a fifth would end past 100 s
        ([ratio(0.9, 1.2)], 4, 60.0, None),
        ([Compared("r", None, True)], 6, 0, Stop.MAX_ROUNDS),  # no interval (a failed cell): never settled
        ([Compared("cell", (900.0, 1100.0), False)], 3, 0, None),  # one variant: a cell's RPS, never "outside a band"
    ],
)
def test_auto_stops_by_its_rule(found, rounds_run, elapsed, expected):
    assert rounds.decide(found, RULE, rounds_run, elapsed, elapsed / rounds_run) is expected


def test_a_compared_ratio_is_between_cells_that_differ_in_the_variant_only():
    records = {
        cell: {
            "runs": [
                {"status": "ok", "load": {"rps": rps}, "started_at": None, "finished_at": None}
                for rps in (1000.0 * (1 + cell.workers), 1010.0 * (1 + cell.workers), 990.0 * 2)
            ]
        }
        for cell in CELLS
    }
    found = rounds.compared(CELLS, records, article().comparison)
    assert [item.label for item in found] == [f"{CELLS[1].key} / {CELLS[0].key}", f"{CELLS[3].key} / {CELLS[2].key}"]
    assert all(item.is_ratio and item.interval is not None for item in found)


STUDY = (
    'title = "--repeat auto on the real 3.13 and 3.13t"\n'
    + REAL_313_HEAD
    + POST_APPS_TOML["asgi"]
    + """
[tables.asgi]
number = 1
title = "ASGI /json"
columns = ["python", "workers", "rps", "cpu", "ram"]
cell = {{ app = "asgi", endpoint = "json", loop = "asyncio", workers = 1, concurrency = 16 }}
grid = {{ variant = ["3.13", "3.13t"] }}
"""
)


def auto_session(tmp_path, real_environments, session, variants, *extra):
    tmp_path.mkdir()
    study = tmp_path / "auto.toml"
    study.write_text(STUDY.format(root=ROOT))
    pythons = [f"--python=asgi:{variant}={real_environments['asgi', variant]}" for variant in variants]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilfree",
            "run",
            session,
            "--study",
            str(study),
            *pythons,
            "--loadgen",
            "wrk",
            "--port",
            str(free_port()),
            "--repeat",
            "auto",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    stored = [json.loads(path.read_text()) for path in (tmp_path / "out" / "raw").glob("*/*.json")]
    assert len(stored) == len(variants)
    return done, stored


def test_repeat_auto_stops_by_its_rule_and_at_its_cap_and_records_why(real_environments, tmp_path):
    """3.13t against 3.13 with a target any three rounds meet stops at three, settled. One variant (each cell's
    RPS, which is never "outside the band") with a target no run can meet stops at the cap, and says so on the
    console, in every record and in the table."""
    done, stored = auto_session(
        tmp_path / "loose", real_environments, "auto", ("3.13", "3.13t"), "--target-width", "1000", "--order-seed", "5"
    )
    for record in stored:
        assert record["rounds"]["stopped_by"] == "settled" and record["rounds"]["rounds_run"] == 3
        assert record["rounds"]["auto"]["target_width"] == 1000 and record["rounds"]["order_seed"] == 5
        assert [run["round"] for run in record["runs"]] == [0, 1, 2] and record["status"] == "ok"
        assert record["settings"]["repeat"] == "auto"
    assert "--repeat auto stopped after 3 round(s): every compared interval is narrower" in done.stderr

    done, stored = auto_session(
        tmp_path / "tight", real_environments, "auto-3.13", ("3.13",), "--target-width", "0.000001", "--max-rounds", "4"
    )
    for record in stored:
        chosen = record["rounds"]
        assert (chosen["stopped_by"], chosen["rounds_run"], len(record["runs"])) == ("max_rounds", 4, 4)
        [width] = chosen["widths"].values()
        assert width > 0.000001  # why it went on to the cap: the one cell's interval, as measured
    assert "--repeat auto stopped after 4 round(s): the most rounds allowed were run" in done.stderr
    table = (tmp_path / "tight" / "out" / "tables" / "asgi.md").read_text()
    assert "--repeat auto: 4 round(s), stopped because the most rounds allowed were run" in table


def test_the_rule_refuses_what_makes_no_sense_in_one_line(tmp_path):
    common = [
        sys.executable,
        "-m",
        "gilfree",
        "run",
        "asgi-3.14",
        "--python",
        sys.executable,
        "--results-dir",
        str(tmp_path),
    ]
    for extra, said in (
        (["--max-rounds", "5"], "--max-rounds is for --repeat auto; add that, or leave it out"),
        (["--repeat", "auto", "--max-rounds", "2"], "--max-rounds 2 is below the 3 rounds"),
        (["--repeat", "sometimes"], "invalid repeat 'sometimes'"),
        (["--repeat", "auto", "--target-width", "-1"], "invalid width '-1'"),
    ):
        done = subprocess.run(common + extra, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 2 and said in done.stderr and len(done.stderr.strip().splitlines()) == 1, extra
