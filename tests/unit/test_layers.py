"""The house rules: layers import one way, stages import in data-flow order, heavy libraries
stay in their named places, and only the named modules ever handle identifiable rows."""

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = {"schemas": 0, "transforms": 1, "flows": 2}
# Library -> the only places allowed to import it (docs/architecture.md, Layers).
CONFINED = {
    "prefect": ("flows/",),
    "great_expectations": ("transforms/intake/validate.py",),
    "duckdb": ("transforms/release/",),
    "faker": ("transforms/synthetic/vocabulary.py",),
    "matplotlib": ("transforms/release/charts.py",),
}
# Stage -> the stages it may import. Data flows intake -> identity -> disclosure -> release;
# `files` and `root_lock` are plumbing every stage uses. Disclosure sees only the linked
# population, so it imports no other stage at all.
STAGES = ("intake", "identity", "disclosure", "release", "synthetic")
MAY_IMPORT = {
    "intake": set(),
    "identity": {"intake"},
    "disclosure": set(),
    "release": {"disclosure"},
    "synthetic": {"identity"},
}
SHARED = {"files", "root_lock"}
# The modules that ever see identifiable rows (README, "Modules that ever see identifiable
# rows"). Nothing else in transforms/ may import them; in flows/ only the named entry points.
IDENTIFIABLE = {
    "transforms.intake.ingest",
    "transforms.intake.readers",
    "transforms.intake.readers.csv",
    "transforms.intake.readers.json",
    "transforms.intake.readers.parquet",
    "transforms.intake.readers.xlsx",
    "transforms.intake.chunks",
    "transforms.intake.checks",
    "transforms.intake.validate",
    "transforms.intake.quarantine",
    "transforms.identity.normalise",
    "transforms.identity.pseudonymise",
}
IDENTIFIABLE_ENTRY_POINTS = {
    "flows/share_cohorts.py",  # process_delivery
    "flows/keys_command.py",  # key rotation re-tokenises from landing/
    "flows/deliveries_command.py",  # `deliveries check FILE`, a dry run
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from transforms.intake import validate` imports a module too
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(*layers: str) -> list[Path]:
    return sorted(p for layer in layers or LAYERS for p in (REPO / layer).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@pytest.mark.parametrize("path", _sources(), ids=_rel)
def test_layers_import_one_way_only(path):
    own = LAYERS[path.relative_to(REPO).parts[0]]
    upward = sorted(
        name
        for name in _imports(path)
        if name.split(".")[0] in LAYERS and LAYERS[name.split(".")[0]] > own
    )
    assert upward == [], f"{_rel(path)} reaches up a layer: {upward}"


@pytest.mark.parametrize("path", _sources(), ids=_rel)
def test_confined_libraries_stay_in_their_places(path):
    relative = _rel(path)
    for name in _imports(path):
        library = name.split(".")[0]
        if library in CONFINED:
            allowed = CONFINED[library]
            assert relative.startswith(allowed), (
                f"{relative} imports {library}, which belongs only in {allowed}"
            )


@pytest.mark.parametrize("path", _sources("transforms"), ids=_rel)
def test_stages_import_in_data_flow_order(path):
    parts = path.relative_to(REPO / "transforms").with_suffix("").parts
    own = parts[0]
    if own not in STAGES:
        return
    reached = {
        name.split(".")[1]
        for name in _imports(path)
        if name.startswith("transforms.") and name.split(".")[1] in STAGES
    } - {own}
    assert reached <= MAY_IMPORT[own], f"{_rel(path)} imports stages {sorted(reached)}"


@pytest.mark.parametrize("path", _sources("flows"), ids=_rel)
def test_flows_use_only_the_stages_public_surfaces(path):
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] != "transforms" or len(parts) < 3 or parts[1] not in STAGES:
            continue
        package = importlib.import_module(f"transforms.{parts[1]}")
        public = set(getattr(package, "__all__", ())) | set(getattr(package, "PUBLIC_MODULES", ()))
        if parts[1] == "synthetic":
            continue  # the generator's package is its surface
        assert parts[2] in public, f"{_rel(path)} reaches into {name}, behind transforms.{parts[1]}"


@pytest.mark.parametrize("path", _sources("transforms", "flows"), ids=_rel)
def test_only_named_modules_handle_identifiable_rows(path):
    relative = _rel(path)
    module = relative.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    if module in IDENTIFIABLE or relative.startswith("transforms/synthetic/"):
        return
    if module.startswith("transforms.intake") or module == "transforms.identity":
        return  # intake wires its readers together; identity's surface re-exports pseudonymise
    surface_names = {"receive_delivery", "inspect_delivery", "pseudonymise"}
    touched = {
        name
        for name in _imports(path)
        if name in IDENTIFIABLE or name.rsplit(".", 1)[-1] in surface_names
        and name.startswith(("transforms.intake", "transforms.identity"))
    }
    if relative in IDENTIFIABLE_ENTRY_POINTS:
        return
    assert touched == set(), f"{relative} reaches identifiable-row code: {sorted(touched)}"


def test_the_walker_sees_every_layer_and_stage():
    found = {p.relative_to(REPO).parts[0] for p in _sources()}
    assert found == set(LAYERS)
    assert {p.relative_to(REPO / "transforms").parts[0] for p in _sources("transforms")} >= set(
        STAGES
    )
    # A walker that parses nothing would pass vacuously: prove it sees known imports.
    assert "schemas.errors" in _imports(REPO / "schemas" / "policy.py")
    assert "transforms.intake.receive_delivery" in _imports(REPO / "flows" / "share_cohorts.py")
