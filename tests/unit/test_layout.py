"""The package arrows run one way: the service (`app/`) never imports the offline packages.

`ml/`, `seed/`, `bench/` and `tools/` build on `app/`; if `app/` imported them back,
the API image would have to ship them and the server would load their heavy
dependencies. Inside `app/`, the scenario families and the shared parts do not
import the HTTP layer: `app/api/` turns their results into HTTP structs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
OFFLINE = ("ml", "seed", "bench", "tools", "tests")
#: Packages under app/ that must not know about HTTP.
DOMAIN = ("app/hometown", "app/features", "app/db", "app/live")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, absolute or relative."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_walker_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = ROOT / "app" / "_probe_for_test.py"
    source.write_text(
        "import ml.train\nfrom seed import loader\n"
        "def f():\n    from bench.wrk import run\n    from . import settings\n"
    )
    try:
        found = imported_modules(source)
    finally:
        source.unlink()
    assert {"ml.train", "seed", "bench.wrk", "app.settings"} <= found


@pytest.mark.parametrize("path", _files("app"), ids=lambda p: str(p.relative_to(ROOT)))
def test_app_imports_no_offline_package(path: Path) -> None:
    back = sorted(m for m in imported_modules(path) if _top(m) in OFFLINE)
    assert not back, f"{path.relative_to(ROOT)} imports {back}: move what it needs into app/"


@pytest.mark.parametrize(
    "path",
    [p for folder in DOMAIN for p in _files(folder)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_domain_code_does_not_import_http(path: Path) -> None:
    allowed = ("litestar",) if path.name in LIFESPAN_HOOKS else ()
    http = sorted(
        m
        for m in imported_modules(path)
        if m.startswith(("app.api", "litestar")) and _top(m) not in allowed
    )
    assert not http, (
        f"{path.relative_to(ROOT)} imports {http}: return a domain result, let app/api/ shape it"
    )


#: Files that hold a lifespan hook and so take the `Litestar` app object (nothing else of HTTP).
LIFESPAN_HOOKS = {"pool.py", "replicas.py", "click_model.py"}


def test_offline_packages_use_app_not_the_other_way() -> None:
    """The arrows exist where they should: the offline packages do build on app/."""
    users = {
        folder: any(_top(m) == "app" for p in _files(folder) for m in imported_modules(p))
        for folder in ("ml", "seed", "bench")
    }
    assert all(users.values()), users
