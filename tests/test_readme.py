"""README, CONTRIBUTING and docs/ against the code: the sessions they list are the noxfile's, the options they
name parse in the harness's parsers, their links lead to files and headings that exist, README's test command is
the one .ci/run runs, and README stays a front page. No test here pins wording."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from conftest import ROOT

from gilfree import calibrate, cli, gil_audit, guard, overhead
from gilfree.core.arguments import OneLineParser
from gilfree.run import tools
from gilfree.study import results, schema, studies

README = ROOT / "README.md"
DOCS = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
FRONT_PAGE_LINES = 200

# Options the docs name that belong to other programs, not to the harness: each with its program.
OTHER_PROGRAMS_OPTIONS = {
    "--compile-bytecode": "uv",
    "--group": "uv run",
    "--require-hashes": "uv pip sync",
    "--locked": "cargo install, uv",
    "--root": "cargo install",
    "--version": "cargo install",
    "--rm": "docker run",
    "--disable-gil": "CPython's ./configure",
    "--timeout": "wrk",
    "--pct": "rewrk",
    "--latency-correction": "oha",
    "--interface": "granian",
    "--loop": "granian",
    "--host": "granian",
    "--metrics-address": "granian",
    "--metrics-port": "granian",
    "--metrics-scrape-interval": "granian",
}
# An option, not a glob such as `--ssh-*` nor the bare `--` that ends nox's own options.
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?![\w*-])")


def text(path: Path) -> str:
    return path.read_text()


def code_lines(path: Path) -> list[str]:
    """The lines of the fenced code blocks of a Markdown file."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text(path), re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines()]


def section(path: Path, heading: str) -> str:
    """The body of the `## heading` section, up to the next heading of its level or above."""
    body = text(path).split(f"\n## {heading}\n", 1)[1]
    return re.split(r"^#{1,2} ", body, flags=re.M)[0]


def nox_sessions() -> set[str]:
    """What `nox -l` lists: the noxfile's own sessions and every study's (studies/*.toml)."""
    found, refused = studies.discover()
    assert not refused, refused
    return set(schema.reserved_sessions()) | {name for study in found.values() for name in study.sessions}


def readme_sessions() -> list[str]:
    """The sessions README's list names: each item's backquoted names before its colon."""
    items = [line for line in section(README, "Sessions").splitlines() if line.startswith("- `")]
    return [name for item in items for name in re.findall(r"`([a-z0-9.-]+)`", item.split(": ", 1)[0])]


def setup_sessions() -> list[str]:
    """The sessions docs/setup.md's table names, in its first column."""
    rows = [line for line in section(ROOT / "docs" / "setup.md", "Sessions").splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([a-z0-9.-]+)`", row.split("|")[1])]


def test_readme_is_a_front_page():
    assert len(text(README).splitlines()) <= FRONT_PAGE_LINES


@pytest.mark.parametrize("listed", [readme_sessions, setup_sessions], ids=["README", "docs/setup.md"])
def test_the_sessions_listed_are_the_noxfiles(listed):
    names = listed()
    assert len(names) == len(set(names)), names
    assert set(names) == nox_sessions()


# --- every option the docs name parses ---------------------------------------------------------------------


class Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def parser_of(main, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command's main builds, caught as it is about to parse (before anything runs)."""

    def capture(self, args=None, namespace=None):
        raise Captured(self)

    with monkeypatch.context() as patched:
        patched.setattr(OneLineParser, "parse_args", capture)
        with pytest.raises(Captured) as caught:
            main([])
    return caught.value.parser


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    """Every option of a parser and of its subcommands."""
    found = set()
    for action in parser._actions:
        found |= {option for option in action.option_strings if option.startswith("--")}
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                found |= options_of(command)
    return found


@pytest.fixture
def harness_options(monkeypatch) -> set[str]:
    """The options of every harness command the sessions run: `python -m gilfree` (run, prepare, tables,
    compare, lock, machine), gilfree.calibrate, gilfree.overhead, gilfree.gil_audit; and --debug, which
    guard.guarded takes off any of their command lines."""
    parsers = [cli.parser(), calibrate.parser(), parser_of(overhead.main, monkeypatch)]
    parsers.append(parser_of(gil_audit.main, monkeypatch))
    seen = []
    guard.guarded(lambda argv: seen.append(argv) or 0, ["--debug"])
    assert seen == [[]]
    return {"--debug", "--help"}.union(*map(options_of, parsers))


def named_options() -> dict[str, list[str]]:
    """option -> the files that name it."""
    named: dict[str, list[str]] = {}
    for path in DOCS:
        for option in sorted(set(OPTION.findall(text(path)))):
            named.setdefault(option, []).append(str(path.relative_to(ROOT)))
    return named


def test_every_option_the_docs_name_parses(harness_options):
    unknown = {
        option: files
        for option, files in named_options().items()
        if option not in harness_options and option not in OTHER_PROGRAMS_OPTIONS
    }
    assert not unknown, f"options no harness parser takes: {unknown}"


def test_the_other_programs_options_are_named_and_not_the_harnesss(harness_options):
    """The list above holds only what the docs name and the harness does not take, so it cannot hide one."""
    assert set(OTHER_PROGRAMS_OPTIONS) <= set(named_options())
    assert not set(OTHER_PROGRAMS_OPTIONS) & harness_options


# --- links ----------------------------------------------------------------------------------------------------


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    body = re.sub(r"^```.*?^```", "", text(path), flags=re.M | re.S)
    return {anchor(heading) for heading in re.findall(r"^#+ (.+)$", body, re.M)}


def links(path: Path) -> list[str]:
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text(path)) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_leads_to_a_file_and_heading_that_exist(path):
    for target in links(path):
        file, _, heading = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.name} links to {target}, which does not exist"
        if heading:
            assert heading in anchors(linked), f"{path.name} links to {target}: no such heading"


def test_readme_links_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    pages = {*(ROOT / "docs").glob("*.md"), ROOT / "CONTRIBUTING.md"}
    assert {page.resolve() for page in pages} <= linked


# --- README's commands ----------------------------------------------------------------------------------------


def test_ci_runs_the_readmes_set_up_and_test_commands():
    """.ci/run runs the lint session, README's tools command, then README's test command, and nothing else of nox."""
    commands = [line.split("#")[0].strip() for line in code_lines(README) if line.startswith("uvx nox")]
    [set_up] = [command for command in commands if command.split()[2:] == ["-s", "tools"]]
    [tests] = [command for command in commands if command.split()[2:4] == ["-s", "tests"]]
    ci = [line.strip() for line in text(ROOT / ".ci" / "run").splitlines() if line.strip().startswith("uvx nox")]
    assert ci == ["uvx nox -s lint", set_up, tests]
    assert code_lines(ROOT / "CONTRIBUTING.md")[0].split("#")[0].strip() == tests


def test_every_nox_command_in_the_docs_names_a_session_nox_has(tmp_path):
    """Or one of docs/own-study.md's example study, studies/mine.toml."""
    sessions = nox_sessions() | set(studies.load(example_study(tmp_path)).sessions)
    for path in DOCS:
        for line in code_lines(path) + re.findall(r"`((?:uvx )?nox [^`]+)`", text(path)):
            words = line.split()
            named = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-s"]
            if "nox" in words[:2]:
                assert set(named) <= sessions, f"{path.name}: {line}"


# --- figures the docs give that the code decides --------------------------------------------------------------


def test_troubleshooting_names_the_result_schemas_the_harness_reads():
    troubleshooting = text(ROOT / "docs" / "troubleshooting.md")
    assert re.findall(r"this harness reads (\d+) to (\d+)", troubleshooting) == [
        (str(results.OLDEST_READABLE), str(results.SCHEMA))
    ]
    assert re.findall(r"The estimate is (\d+) KiB per run plus (\d+) KiB for the tables", troubleshooting) == [
        (str(results.RUN_BYTES // 1024), str(results.TABLES_BYTES // 1024))
    ]


def test_every_cargo_tool_version_the_docs_name_is_the_one_installed():
    versions = {tool.name: tool.version for tool in tools.TOOLS}
    for path in DOCS:
        for name, version in re.findall(r"\b(rewrk|oha)`? (\d+\.\d+\.\d+)", text(path)):
            assert version == versions[name], f"{path.name}: {name} {version}"


# --- docs/own-study.md's example study ------------------------------------------------------------------------

OWN_STUDY = ROOT / "docs" / "own-study.md"
EXAMPLE_HOME = "/home/you"  # the example's checkout is /home/you/gilfree, its service /home/you/src/shop


def example_study(tmp_path: Path, change: tuple[str, str] | None = None) -> Path:
    """docs/own-study.md's TOML blocks as one studies/mine.toml, in a checkout under tmp_path laid out as the
    example's: the study file in gilfree/studies/, the service's folder ../../src/shop from it."""
    toml = "\n".join(re.findall(r"^```toml\n(.*?)^```", text(OWN_STUDY), re.M | re.S))
    if change:
        assert change[0] in toml
        toml = toml.replace(*change)
    (tmp_path / "src" / "shop").mkdir(parents=True)
    path = tmp_path / "gilfree" / "studies" / "mine.toml"
    path.parent.mkdir(parents=True)
    path.write_text(toml)
    return path


def test_the_example_study_loads_with_the_sessions_and_lock_the_docs_name(tmp_path):
    study = studies.load(example_study(tmp_path))
    assert set(study.sessions) == {"mine", "mine-3.14", "mine-3.14t"}
    assert study.lock_path("default", "shop") == study.path.parent / "mine-locks" / "default" / "shop.txt"
    assert "studies/mine-locks/default/shop.txt" in text(OWN_STUDY)
    assert [claim.text for claim in study.claims] and all(claim.ratios for claim in study.claims)


@pytest.mark.parametrize(
    "change",
    [
        ("concurrency = 128 }", "concurrency = 128, workers = 0 }"),
        ('band = "at least 1.2"', 'band = "much faster"'),
    ],
    ids=["workers", "band"],
)
def test_the_refusals_the_docs_show_are_the_harnesss(tmp_path, change):
    """Each refusal docs/own-study.md shows is the one line the harness gives for that mistake in its example
    (its `...` standing for what the docs leave out)."""
    path = example_study(tmp_path, change)
    with pytest.raises(schema.StudyError) as refused:
        studies.load(path)
    key = str(refused.value).removeprefix(f"{path}: ").split(":")[0]
    prose = re.sub(r"^```.*?^```", "", text(OWN_STUDY), flags=re.M | re.S)
    [shown] = [line for line in re.findall(r"`([^`\n]+)`", prose) if f"mine.toml: {key}:" in line]
    pattern = ".*".join(map(re.escape, shown.replace(EXAMPLE_HOME, str(tmp_path)).split("...")))
    assert re.match(pattern, str(refused.value)), (shown, str(refused.value))
