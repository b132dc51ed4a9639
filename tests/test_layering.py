"""The package's layer order holds: every module imports only from its own
package or from packages of a LOWER layer (docs/architecture.md).

    core -> estimators -> spaces, tasks -> engine -> searching, training -> analysis -> layers
      -> api

Packages in the same layer do not import each other.  Library code never
imports ``flags``, ``trainers`` or ``data_tf`` -- except ``api``, the top, which
reads the caller's data through ``data_tf``.  The checks read the source
with ``ast``; nothing is imported.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "datanas"

#: Lowest first.  ``layers`` is the public re-export of Keras layers.
LAYERS = (
    ("core",),
    ("estimators",),
    ("spaces", "tasks"),
    ("engine",),
    ("searching", "training"),
    ("analysis",),
    ("layers",),
    ("api",),
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
OUTSIDE_THE_LIBRARY = ("flags", "trainers", "data_tf", "benchmarks", "examples", "tests")


def _modules():
    return sorted(path for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE)


def _imported_names(path):
    """(line, dotted name) of every absolute import in `path`, also inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            if node.module == "datanas":   # from datanas import spaces
                for alias in node.names:
                    yield node.lineno, f"datanas.{alias.name}"


def _violations(path, package=PACKAGE):
    own = path.relative_to(package).parts[0]
    found = []
    for line, name in _imported_names(path):
        parts = name.split(".")
        where = f"{path.relative_to(package.parent)}:{line}"
        if parts[0] in OUTSIDE_THE_LIBRARY and not (own == "api" and parts[0] == "data_tf"):
            found.append(f"{where} imports {name} (outside the library)")
        if parts[0] != "datanas" or len(parts) < 2 or parts[1] == own:
            continue
        target = parts[1]
        if target not in RANK:
            found.append(f"{where} imports {name}: datanas.{target} has no layer")
        elif RANK[target] >= RANK[own]:
            found.append(f"{where} imports {name}: {own} (layer {RANK[own]}) may not import "
                         f"{target} (layer {RANK[target]})")
    return found


def test_only_the_api_sits_above_the_packages_and_reads_data_tf():
    """The package top is __init__.py; the api package is the top layer: it
    may import any layer and data_tf (the caller's data), and nothing in the
    library imports it (the command-line trainers, outside, do)."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py"], top
    for path in _modules():
        if path.relative_to(PACKAGE).parts[0] == "api":
            continue
        assert not any(name == "datanas.api" or name.startswith("datanas.api.")
                       for _, name in _imported_names(path)), path
        assert not any(name.split(".")[0] == "data_tf" for _, name in _imported_names(path)), path


def test_every_package_of_datanas_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"


def test_no_module_imports_against_the_layer_order():
    violations = [v for path in _modules() for v in _violations(path)]
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


@pytest.mark.parametrize("source, expected", [
    ("from datanas.searching.config import X\n", "may not import search"),
    ("import datanas.engine.loop\n", "may not import engine"),
    ("from flags import core\n", "outside the library"),
])
def test_the_check_names_an_upward_import(tmp_path, source, expected):
    module = tmp_path / "datanas" / "spaces" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text(source)
    (message,) = _violations(module, package=tmp_path / "datanas")
    assert expected in message and "datanas/spaces/bad.py:1" in message


@pytest.mark.parametrize("page", ["README.md", "docs/architecture.md"])
def test_the_docs_state_the_order_this_test_checks(page):
    """The one-line layer order the README and the architecture page show is
    the order checked here."""
    text = (ROOT / page).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip().startswith(("core ->",
                                                                            "datanas/  core ->"))]
    assert lines, f"{page} states no layer order"
    order = lines[0].replace("datanas/", "").replace(" / ", ",")
    stated = [tuple(sorted(p.strip() for p in step.split(","))) for step in order.split("->")]
    assert stated == [tuple(sorted(packages)) for packages in LAYERS]
