"""Packages import downward only (STYLE.md): the planning core imports no shell, runner and coordinator
share only engine.protocol, and the carbon shell and the planning core share only the value modules
below both (engine.geo, engine.carbon_values). Imports are read with `ast`, lazy ones inside
functions included, so a late `from engine.x import y` cannot slip past."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.paths import REPO_ROOT

SHELLS = ("engine.carbon", "engine.coordinator", "engine.runner", "engine.store", "engine.transport",
          "engine.api", "engine.protocol", "engine.swarm", "engine.cli", "engine.generate", "prismn_gui")

NEVER = {   # importer package -> packages it must not import
    "engine.planning": SHELLS,
    "engine.carbon": ("engine.planning", "engine.coordinator", "engine.runner", "prismn_gui"),
    "engine.runner": ("engine.coordinator", "engine.api", "engine.store", "prismn_gui"),
    "engine.coordinator": ("engine.runner", "prismn_gui"),
    "engine.protocol": ("engine.coordinator", "engine.runner", "engine.api", "prismn_gui"),
    "engine.geo": ("engine.", "prismn_gui"),
    "engine.carbon_values": ("engine.", "prismn_gui"),
    "engine": ("prismn_gui",),
}


def imports_of(path: Path) -> set[str]:
    """Every absolute module name `path` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package if package.endswith(".") else package + ".")


def test_the_import_reader_sees_lazy_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from engine.runner import agent\n")
    assert {"os", "engine.runner", "engine.runner.agent"} <= imports_of(source)


@pytest.mark.parametrize("importer", sorted(NEVER))
def test_no_package_imports_upward(importer):
    offences = []
    for path in sorted((REPO_ROOT / "engine").rglob("*.py")):
        name = module_name(path)
        if not within(name, importer):
            continue
        for imported in sorted(imports_of(path)):
            for banned in NEVER[importer]:
                if within(imported, banned) and not within(imported, importer):
                    offences.append(f"{name} imports {imported}")
    assert not offences, "\n".join(offences)
