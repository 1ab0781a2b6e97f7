"""The layering each package's __init__ states, checked on the imports of every module."""
import ast
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


def modules(*packages: str) -> list[Path]:
    found = []
    for package in packages:
        where = PACKAGE / package
        found += [where] if where.suffix == ".py" else sorted(where.rglob("*.py"))
    return [p for p in found if "migrations" not in p.parts]


RULES = [  # (modules, what they must not import, why)
    (("assignment", "experiments", "records", "serving", "stats", "telemetry", "validation.py",
      "settings.py", "errors.py", "wiring.py", "cli.py"),
     WEB | {"ml_api.http"}, "only the HTTP layer knows Flask"),
    (("stats", "validation.py"), IO | {"ml_api.records", "ml_api.assignment", "ml_api.serving",
                                       "ml_api.telemetry", "ml_api.wiring"},
     "pure: no I/O"),
    (("records",), {"ml_api.assignment", "ml_api.wiring"}, "the adapter knows no use case"),
    (("telemetry",), {"ml_api.assignment", "ml_api.experiments", "ml_api.records",
                      "ml_api.serving", "ml_api.stats", "ml_api.wiring"},
     "telemetry reports, it decides nothing"),
    (("assignment", "experiments", "records", "serving", "stats", "telemetry", "http"),
     {"ml_api.wiring"}, "only the app factory and the CLI wire"),
]


@pytest.mark.parametrize("packages,forbidden,why", RULES, ids=[r[2] for r in RULES])
def test_packages_keep_to_their_layer(packages, forbidden, why):
    broken = {str(p.relative_to(PACKAGE)): sorted(imports_of(p) & forbidden)
              for p in modules(*packages) if imports_of(p) & forbidden}
    assert not broken, f"{why}: {broken}"


def test_no_module_is_over_250_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in modules(".")
            if (n := len(p.read_text().splitlines())) > 250}
    assert not long
