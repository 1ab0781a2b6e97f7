"""The layering each package's __init__ states, checked on the imports of every module."""
import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ml_api"
WEB = {"flask", "werkzeug", "markupsafe"}
IO = {"sqlalchemy", "redis", "alembic", "pymysql", "logstash_async", "prometheus_client"}


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:` (annotations only, never imported)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(path: Path) -> set[str]:
    """Top-level names this module imports: 'flask', or 'ml_api.records' for ml_api's own."""
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            names.add(".".join(parts[:2]) if parts[0] == "ml_api" else parts[0])
    return names


def modules(*packages: str, root: Path = PACKAGE) -> list[Path]:
    found = []
    for package in packages:
        where = root / package
        found += [where] if where.suffix == ".py" else sorted(where.rglob("*.py"))
    return [p for p in found if "migrations" not in p.parts]


# ml_api's packages and top-level modules, bottom layer first. A module imports only from its
# own package and from the layers below; the units of one layer do not import each other.
LAYERS = [
    {"domain", "errors"},                               # shared values, the error tree
    {"settings", "validation", "stats", "telemetry"},   # configuration, input checks, maths, reports
    {"records"},                                        # the SQL adapter
    {"assignment"},                                     # which group a uid is in
    {"experiments"},                                    # experiment use cases
    {"serving"},                                        # /predict and /feedback use cases
    {"http"},                                           # Flask
    {"wiring"},                                         # builds everything above
    {"__init__", "cli", "gunicorn_conf", "gunicorn_worker"},  # app factory, CLI, gunicorn's
    {"__main__"},                                       # python -m ml_api
]


def unit_of(path: Path, root: Path = PACKAGE) -> str:
    """The package or top-level module a file belongs to: 'records', 'settings'."""
    return path.relative_to(root).parts[0].removesuffix(".py")


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, set[str]]]:
    """unit -> unit it imports -> the files (relative to root) that import it."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in modules(".", root=root):
        source = unit_of(path, root)
        arrows = graph.setdefault(source, {})
        for name in imports_of(path):
            if name.startswith("ml_api.") and (target := name.split(".")[1]) != source:
                arrows.setdefault(target, set()).add(str(path.relative_to(root)))
    return graph


def layer_violations(graph: dict[str, dict[str, set[str]]], layers: list[set[str]]) -> list[str]:
    """Units without a layer, and every import of a unit in the same layer or one above."""
    level = {unit: i for i, layer in enumerate(layers) for unit in layer}
    found = [f"{unit} has no layer" for unit in sorted(set(graph) - set(level))]
    for source, arrows in sorted(graph.items()):
        for target, files in sorted(arrows.items()):
            if source in level and level.get(target, len(layers)) >= level[source]:
                found.append(f"{', '.join(sorted(files))} imports {target}, not below {source}")
    return found


def two_way_pairs(graph: dict[str, dict[str, set[str]]]) -> list[tuple[str, str]]:
    """Pairs of units that import each other."""
    return sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, {}))


def test_every_import_points_down_the_layers():
    violations = layer_violations(import_graph(), LAYERS)
    assert not violations


def test_no_two_packages_import_each_other():
    pairs = two_way_pairs(import_graph())
    assert not pairs


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_layer_check_reports_a_planted_upward_import(tmp_path):
    root = _plant(tmp_path / "ml_api", {
        "domain/__init__.py": "",
        "domain/values.py": "from ml_api.records.store import Store\n",
        "records/__init__.py": "", "records/store.py": "from ml_api.domain import values\n",
        "extra.py": "import json\n"})
    graph = import_graph(root)
    assert layer_violations(graph, [{"domain"}, {"records"}]) == [
        "extra has no layer", "domain/values.py imports records, not below domain"]
    assert two_way_pairs(graph) == [("domain", "records")]
    assert layer_violations(graph, [{"domain", "records"}, {"extra"}]) == [
        "domain/values.py imports records, not below domain",
        "records/store.py imports domain, not below records"]


def test_the_layer_check_passes_imports_that_point_down(tmp_path):
    root = _plant(tmp_path / "ml_api", {
        "domain.py": "from dataclasses import dataclass\n",
        "records/__init__.py": "from ml_api import domain\nfrom ml_api.records import store\n",
        "records/store.py": "from ml_api.domain import Value\n"})
    graph = import_graph(root)
    assert not layer_violations(graph, [{"domain"}, {"records"}])
    assert not two_way_pairs(graph)


RULES = [  # (modules, what they must not import, why)
    (("assignment", "domain", "experiments", "records", "serving", "stats", "telemetry",
      "validation.py", "settings.py", "errors.py", "wiring.py", "cli.py"),
     WEB, "only the HTTP layer knows Flask"),
    (("stats", "validation.py"), IO, "pure: no I/O"),
]


@pytest.mark.parametrize("packages,forbidden,why", RULES, ids=[r[2] for r in RULES])
def test_packages_keep_to_their_layer(packages, forbidden, why):
    broken = {str(p.relative_to(PACKAGE)): sorted(imports_of(p) & forbidden)
              for p in modules(*packages) if imports_of(p) & forbidden}
    assert not broken, f"{why}: {broken}"


def test_the_domain_imports_the_standard_library_only():
    outside = {str(p.relative_to(PACKAGE)): sorted(names)
               for p in modules("domain")
               if (names := {n for n in imports_of(p) if n not in sys.stdlib_module_names
                             and not n.startswith("ml_api.domain")})}
    assert not outside


def test_no_module_is_over_250_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in modules(".")
            if (n := len(p.read_text().splitlines())) > 250}
    assert not long
