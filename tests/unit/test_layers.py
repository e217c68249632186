"""Layers import only downward (the developers' guide, issue 10).

Every product module's imports are read with `ast`, the ones inside functions too (a lazy
import is still a dependency), so a layer break fails here instead of in a review:

- `engine/` knows no sessions, screens or servers: never `streaming`, `web`, `app`,
  `evaluation`, `bench` or `tests`;
- `streaming/` never imports `web` or `app`;
- no product module (`app.py`, `settings.py`, `engine/`, `streaming/`, `web/`) imports
  `bench` or `tests`; `settings.py` imports no other part of the project;
- `evaluation/` (scoring, used by streaming's simulator) imports no product layer above `engine`.

One module crosses a line on purpose (`ALLOWED`): `engine/doctor.py`, the self-check
`python -m engine doctor`, scores its clips with `evaluation` (the same WER as the tests
and benchmarks); nothing in the app imports the doctor.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = {"app", "settings", "engine", "streaming", "web", "evaluation", "bench", "tests"}

FORBIDDEN: dict[str, set[str]] = {
    "engine": {"streaming", "web", "app", "evaluation", "bench", "tests"},
    "streaming": {"web", "app", "bench", "tests"},
    "web": {"app", "bench", "tests"},
    "app": {"bench", "tests"},
    "settings": PROJECT - {"settings"},
    "evaluation": {"streaming", "web", "app", "bench", "tests"},
}


#: (file, package) imports allowed despite FORBIDDEN, each with its reason in the docstring above.
ALLOWED = {("engine/doctor.py", "evaluation")}


def _modules() -> list[Path]:
    files = [ROOT / "app.py", ROOT / "settings.py"]
    for package in ("engine", "streaming", "web", "evaluation"):
        files += sorted((ROOT / package).rglob("*.py"))
    return [f for f in files if f.is_file()]


def _layer(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level name) of every absolute import in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def test_the_product_modules_are_found():
    layers = {_layer(p) for p in _modules()}
    assert {"app", "settings", "engine", "streaming", "web"} <= layers


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downward(layer: str):
    breaks = []
    for path in _modules():
        if _layer(path) != layer:
            continue
        for line, name in _imported_packages(path):
            if name in FORBIDDEN[layer] and (path.relative_to(ROOT).as_posix(), name) not in ALLOWED:
                breaks.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not breaks, f"{layer} may not import {sorted(FORBIDDEN[layer])}:\n" + "\n".join(breaks)


def test_the_rule_sees_lazy_imports(tmp_path):
    """The checker itself: an import inside a function counts."""
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from web.metrics import X\n    import bench.report\n")
    assert [name for _, name in _imported_packages(sample)] == ["web", "bench"]
