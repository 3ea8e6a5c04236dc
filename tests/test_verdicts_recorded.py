"""The comparison on real records: a whole study on a 2-core VM with CPython 3.14.7 and 3.14.7t, one run per
cell, and the interleaved sessions with three runs per cell (tests/recorded/real-3.14.7-2core/README.md says
how they were made). Interleaved sessions need a free-threaded build, which CI cannot have, so the ratio
intervals are tested here."""

import dataclasses
import json
import shutil

import pytest
from conftest import ROOT

from gilfree.report import compare, render, verdicts
from gilfree.report.verdicts import CpuBound, Flag, TooFewCores, Verdict
from gilfree.study import results
from gilfree.study.claims import Ratio
from gilfree.study.studies import Cell, article

RECORDED = ROOT / "tests" / "recorded" / "real-3.14.7-2core"
ASGI_IO, WSGI_JSON, WSGI_IO = (article().claims[i] for i in (1, 3, 4))


def _plain(value):
    """A reason's field as the snapshot stores it."""
    if isinstance(value, Ratio):
        return [value.over.table, value.over.key, value.under.key, value.figure]
    if isinstance(value, Cell):
        return [value.table, value.key]
    if isinstance(value, Flag):
        return [
            value.kind.name,
            round(value.value, 6),
            round(value.limit, 6),
            None if value.bias is None else round(value.bias, 6),
        ]
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _reason(reason) -> dict:
    return {"type": type(reason).__name__} | {
        f.name: _plain(getattr(reason, f.name)) for f in dataclasses.fields(reason)
    }


def _estimate(e: verdicts.Estimate) -> dict:
    def rounded(v):
        return None if v is None else round(v, 6)

    return {
        "over": [e.ratio.over.table, e.ratio.over.key],
        "under": [e.ratio.under.table, e.ratio.under.key],
        "figure": e.ratio.figure,
        "band": [rounded(e.ratio.band.low), None if e.ratio.band.high == float("inf") else rounded(e.ratio.band.high)],
        "value": rounded(e.value),
        "runs": e.runs,
        "interval": None if e.interval is None else [rounded(x) for x in e.interval],
        "outcome": e.outcome.value,
        "on_pss": e.on_pss,
        "summed_rss": rounded(e.summed_rss),
        "reasons": [_reason(r) for r in e.reasons],
    }


def snapshot(folder) -> list[dict]:
    """Every claim's verdict on a folder, in plain values: what the fixture verdicts-ba830e9.json holds."""
    return [
        {
            "claim": j.claim.text,
            "verdict": j.verdict.value,
            "stand_ins": list(j.stand_ins),
            "reasons": [_reason(r) for r in j.reasons],
            "estimates": [_estimate(e) for e in j.estimates],
        }
        for j in verdicts.judge_all(article(), results.load(folder))
    ]


def test_the_claims_written_as_data_judge_as_the_claims_written_in_python_did(copy_of):
    """The seven claims moved from verdicts.py into studies/article.toml: same verdicts, ratios, bands, values,
    intervals and reasons on both real folders as the code before the move gave (ba830e9)."""
    before = json.loads((RECORDED / "verdicts-ba830e9.json").read_text())
    assert {name: snapshot(copy_of(name)) for name in before} == before
    assert sum(len(claim["estimates"]) for claim in before["study"]) == 19  # the fixture is not empty


@pytest.fixture
def copy_of(tmp_path):
    def copy(name):
        shutil.copytree(RECORDED / name, tmp_path / name)
        return tmp_path / name

    return copy


def verdict_row(text: str, claim: verdicts.Claim) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {claim.text} "))
    return [cell.strip() for cell in line.split("|")[1:-1]]


def test_the_single_run_study_is_inconclusive_where_this_machine_cannot_tell(copy_of):
    study = copy_of("study")
    judged = {j.claim: j for j in verdicts.judge_all(article(), results.load(study))}
    for claim, reason in ((ASGI_IO, CpuBound), (WSGI_IO, CpuBound), (WSGI_JSON, TooFewCores)):
        assert judged[claim].verdict == Verdict.INCONCLUSIVE
        assert judged[claim].runs == 1
        assert {type(r) for r in judged[claim].all_reasons} == {reason}
    cores = [r for r in judged[WSGI_JSON].all_reasons]
    assert [(r.needed, round(r.available, 1)) for r in cores] == [(6.5, 1.8), (6.56, 1.8)]
    efficiency = {(r.cell.variant, r.cell.workers): round(r.efficiency, 2) for r in judged[ASGI_IO].all_reasons}
    assert efficiency[("3.14", 1)] == 0.32  # the 1.75 "not held" of the old report was a CPU-bound row

    compare.write_report(study, article())
    text = (study / "COMPARISON.md").read_text()
    for claim in (ASGI_IO, WSGI_IO, WSGI_JSON):
        assert verdict_row(text, claim)[-1].startswith("**inconclusive, single run**")
    assert "needs ≥ 6.5 free cores for the server; this run had 1.8." in text
    assert text.count("build flags unknown") == 2  # schema-2 records do not say how 3.14 and 3.14t were built
    assert "## Can this machine test the post?" in text.split("## Verdicts")[0]
    assert max(len(line) for line in text.split("## Verdicts")[1].split("1. **")[0].splitlines()) < 200


def test_the_interleaved_repeats_give_every_measured_ratio_its_interval(copy_of):
    interleaved = copy_of("interleaved-repeat3")
    judged = verdicts.judge_all(article(), results.load(interleaved))
    measured = [j for j in judged if j.verdict != Verdict.NOT_MEASURED]
    assert len(measured) == 5
    for judgement in measured:
        for estimate in judgement.estimates:
            assert estimate.runs == 3 and len(estimate.pairwise) == 3
            low, high = estimate.interval
            assert low < min(estimate.pairwise) and max(estimate.pairwise) < high  # t, 3 runs: wider than their range
    asgi_io_w1 = next(j for j in judged if j.claim == ASGI_IO).estimates[0]
    assert [round(r, 2) for r in asgi_io_w1.pairwise] == [0.95, 0.99, 0.91]  # the figures

    compare.write_report(interleaved, article())
    text = (interleaved / "COMPARISON.md").read_text()
    rows = [line for line in text.split("## Verdicts")[1].split("\n1. ")[0].splitlines() if line.startswith("| ")]
    ratio_rows = [row for row in rows[1:] if "not measured" not in row and "| -  " not in row]
    assert len(ratio_rows) == sum(len(j.estimates) for j in measured) == 14
    assert all(" [" in row.split("|")[5] for row in ratio_rows)
    assert "`nox -s wsgi-threads-3.14` measures them" in text


def test_older_records_gain_their_spread_and_stability_from_their_runs_and_keep_their_warnings(copy_of):
    interleaved = copy_of("interleaved-repeat3")
    stored = results.load(interleaved)
    record = stored["asgi-json", "3.14-w1-tdefault-json-c128"]  # schema 2: RPS 7316.31, 8404.43, 8468.28
    assert record.spread["rps"]["rsd"] == pytest.approx(0.0803, abs=1e-4)
    # Run 1 lies 11.5 robust standard deviations below the other two (MAD 63.85); three runs: no drift verdict.
    assert record.stability == {"outliers": [{"run": 1, "rps": 7316.31}], "drift": None}
    assert [w["kind"] for w in record.warnings] == ["rps_varied", "other_release"]  # what that harness found
    render.write_all(interleaved, article())
    table = (interleaved / "tables" / "asgi-json.md").read_text()
    assert "| 7316-8468 (n=3, RSD 8.0%, geometric mean 95% CI " in table
    assert "RPS varied 14% across 3 runs (limit 10%)" in table and "RPS spread" not in table
