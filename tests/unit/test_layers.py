"""The house rules: layers import one way, and heavy libraries stay in their named places."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = {"schemas": 0, "transforms": 1, "flows": 2}
# Library -> the only places allowed to import it (DESIGN.md, Layers).
CONFINED = {
    "prefect": ("flows/",),
    "great_expectations": ("transforms/validate.py",),
    "duckdb": ("transforms/catalogue.py", "transforms/release_checks.py"),
    "faker": ("transforms/synthetic/vocabulary.py",),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (REPO / layer).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_layers_import_one_way_only(path):
    own = LAYERS[path.relative_to(REPO).parts[0]]
    upward = sorted(
        name
        for name in _imports(path)
        if name.split(".")[0] in LAYERS and LAYERS[name.split(".")[0]] > own
    )
    assert upward == [], f"{path.relative_to(REPO)} reaches up a layer: {upward}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_confined_libraries_stay_in_their_places(path):
    relative = path.relative_to(REPO).as_posix()
    for name in _imports(path):
        library = name.split(".")[0]
        if library in CONFINED:
            allowed = CONFINED[library]
            assert relative.startswith(allowed), (
                f"{relative} imports {library}, which belongs only in {allowed}"
            )


def test_the_walker_sees_every_layer():
    found = {p.relative_to(REPO).parts[0] for p in _sources()}
    assert found == set(LAYERS)
    # A walker that parses nothing would pass vacuously: prove it sees a known import.
    assert "schemas.errors" in _imports(REPO / "schemas" / "policy.py")
