"""The import rules of docs/guide/architecture.md: nothing imports a stage, errors imports
no imgclf.

Read with `ast` (no code runs), including imports inside functions, where the stages and the
core keep their heavy imports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.imports import import_circles, imported_names, module_graph

REPO = Path(__file__).resolve().parents[3]
PACKAGE = REPO / "src" / "imgclf"


def _outside_stages() -> list[Path]:
    files = [path for path in PACKAGE.rglob("*.py") if "stages" not in path.parts]
    files += [*(REPO / "bench").glob("*.py"), *(REPO / "scripts").glob("*.py")]
    return sorted(files)


@pytest.mark.parametrize("path", _outside_stages(), ids=lambda path: str(path.relative_to(REPO)))
def test_nothing_outside_the_stages_imports_a_stage(path: Path) -> None:
    # cli.py loads `imgclf.stages.<command>` by name (importlib), which this walk cannot see.
    reached = sorted(
        name
        for name in imported_names(path)
        if name == "imgclf.stages" or name.startswith("imgclf.stages.")
    )
    assert not reached, (
        f"{path.relative_to(REPO)} imports {reached}: move what it needs to the core"
    )


def test_errors_is_the_bottom_layer() -> None:
    reached = sorted(name for name in imported_names(PACKAGE / "errors.py") if "imgclf" in name)
    assert not reached, f"errors.py imports {reached}; every other module imports errors"


def test_the_walk_sees_a_stage_import(tmp_path: Path) -> None:
    # The check above could fail: a lazy `from imgclf.stages import train` is seen.
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from imgclf.stages import train\n")
    assert "imgclf.stages.train" in imported_names(probe)


def test_no_module_imports_itself_round_a_circle() -> None:
    # Type-hint imports count: a circle only for annotations still ties two modules together.
    assert import_circles(module_graph(REPO / "src", "imgclf")) == []


def test_the_circle_check_sees_a_type_hint_circle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import B\n")
    hinted = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n"
    (package / "b.py").write_text(hinted)
    (package / "c.py").write_text("from pkg import a\n")
    assert import_circles(module_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


def test_the_package_root_keeps_only_what_every_room_shares() -> None:
    root = sorted(path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    assert len(root) <= 6, f"{len(root)} modules in src/imgclf: give each concern its package"
