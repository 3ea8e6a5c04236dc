"""The package's folders are its layers: a module imports only from its own layer or one below it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scripts" / "gilfree"
# Bottom to top; the modules at the package's top level are the commands.
LAYERS = ("core", "study", "run", "report", "")


def layer(module: str) -> int:
    """A dotted gilfree module's rank in LAYERS (gilfree.run.server -> 2; gilfree.cli -> 4). The package itself
    (its PROJECT_ROOT) is below them all."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    return LAYERS.index(parts[1]) if parts[1] in LAYERS[:-1] else len(LAYERS) - 1


def imported(module: str, name: str) -> str:
    """`from MODULE import NAME`: the module NAME is where it names one, else MODULE itself."""
    candidate = PACKAGE.parent.joinpath(*f"{module}.{name}".split("."))
    return f"{module}.{name}" if candidate.with_suffix(".py").exists() or candidate.is_dir() else module


def gilfree_imports(path: Path) -> set[str]:
    """Every gilfree module the file imports, wherever in the file the import stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; write `from gilfree.<layer> import ...`")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gilfree"):
            found |= {imported(node.module, alias.name) for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("gilfree")}
    return found


def module_name(path: Path) -> str:
    return ".".join(("gilfree", *path.relative_to(PACKAGE).with_suffix("").parts))


def test_no_module_imports_from_a_layer_above_its_own():
    climbs = [
        f"{module_name(path)} imports {target}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for target in sorted(gilfree_imports(path))
        if layer(target) > layer(module_name(path))
    ]
    assert climbs == []


def test_the_rule_would_catch_a_climb(tmp_path):
    """The check itself: a run module that imports a report module is caught."""
    assert layer("gilfree.run.runner") < layer("gilfree.report.render")
    assert layer("gilfree.study.studies") < layer("gilfree.run.server") < layer("gilfree.cli")
    climbing = tmp_path / "climb.py"
    climbing.write_text("from gilfree.report import render\nfrom gilfree import PROJECT_ROOT\nimport gilfree.cli\n")
    assert gilfree_imports(climbing) == {"gilfree.report.render", "gilfree", "gilfree.cli"}
    assert [layer(module) for module in sorted(gilfree_imports(climbing))] == [0, 4, 3]


def test_every_layer_holds_modules():
    assert all(list((PACKAGE / name).glob("*.py")) for name in LAYERS if name)


def test_reports_read_records_and_import_nothing_from_the_running_code():
    """Reports re-render from the raw JSON: what they need of the instruments is the study layer's."""
    reaching = [
        f"{module_name(path)} imports {target}"
        for path in sorted((PACKAGE / "report").rglob("*.py"))
        for target in sorted(gilfree_imports(path))
        if target.startswith("gilfree.run")
    ]
    assert reaching == []
