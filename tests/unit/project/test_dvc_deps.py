"""dvc.yaml's code deps, computed: every imgclf module a stage can import is one of its deps.

DVC re-runs a stage only when one of its declared deps changes, so a module the stage imports
but does not declare leaves stale outputs behind when it is edited. The imports are read with
`ast` (no code runs), including those inside functions, which the stages use to keep start-up
light; a dep that is a folder covers every module under it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from support.imports import imported_names

REPO = Path(__file__).resolve().parents[3]
SRC = REPO / "src"


def module_file(name: str) -> Path | None:
    """The source file of an imgclf module or package, or None when there is none."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Names of the imgclf modules one file imports, wherever in the file the import is."""
    found = imported_names(path)
    return {name for name in found if name.split(".")[0] == "imgclf" and module_file(name)}


def _parents(name: str) -> list[str]:
    """Packages Python runs on the way to a module: imgclf, imgclf.data for imgclf.data.x."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


# Code a module runs without importing it: MLflow "models from code" files, which
# tracking/artifacts.py hands MLflow by path, so every logged model carries them.
RUN_BY_PATH = {"imgclf.tracking.artifacts": ["imgclf.serving.pyfunc_model"]}


def reached_files(module: str) -> set[Path]:
    """Every imgclf source file importing `module` can run, itself included."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(_parents(name))
        pending.extend(imported_modules(module_file(name)))
        pending.extend(RUN_BY_PATH.get(name, []))
    return {module_file(name) for name in seen}


def test_a_file_run_by_path_is_the_one_the_module_names() -> None:
    from imgclf.tracking import artifacts

    assert module_file(RUN_BY_PATH[artifacts.__name__][0]) == artifacts.PYFUNC_MODEL_CODE


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


def _is_empty_package(path: Path) -> bool:
    """An __init__.py that only documents or versions: editing it cannot change outputs."""
    if path.name != "__init__.py":
        return False
    tree = ast.parse(path.read_text())
    return not any(isinstance(node, ast.Import | ast.ImportFrom) for node in ast.walk(tree))


def stage_modules() -> dict[str, str]:
    """Stage name -> the module its cmd runs (`python -m imgclf.stages.X`)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    modules = {}
    for name, stage in stages.items():
        words = " ".join(stage["cmd"].split()).split()
        modules[name] = words[words.index("-m") + 1]
    return modules


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_every_stage_runs_an_imgclf_module():
    modules = stage_modules()
    assert set(modules) == set(STAGES)
    assert all(module_file(module) for module in modules.values()), modules


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_every_module_it_imports(stage):
    module = stage_modules()[stage]
    deps = [str(dep) for dep in STAGES[stage].get("deps", [])]
    missing = sorted(
        str(path.relative_to(REPO))
        for path in reached_files(module)
        if not covered(path, deps) and not _is_empty_package(path)
    )
    assert not missing, (
        f"dvc.yaml stage {stage!r} runs {module}, which imports these files that are not in its "
        f"deps (editing them would not re-run the stage): {missing}. Add them to its deps."
    )


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_no_code_it_does_not_import(stage):
    # The other direction: a code dep the stage cannot reach (a module moved or deleted) would
    # re-run it for nothing, or make dvc fail on a missing file.
    reached = reached_files(stage_modules()[stage])
    code_deps = [str(dep) for dep in STAGES[stage].get("deps", []) if str(dep).startswith("src/")]
    extra = [dep for dep in code_deps if not any(covered(path, [dep]) for path in reached)]
    assert not extra, f"dvc.yaml stage {stage!r} lists code it never imports: {extra}"


def test_closure_follows_imports_inside_functions_and_package_imports():
    # The walk itself must see what the stages do: a lazy import in a function body.
    reached = {path.relative_to(SRC).as_posix() for path in reached_files("imgclf.stages.download")}
    assert "imgclf/data/folder.py" in reached  # imported inside a function
    assert "imgclf/params/loading.py" in reached  # at the top, through the package
    assert "imgclf/errors.py" in reached  # through stages/common.py


def test_a_folder_dep_covers_the_modules_under_it():
    inside = REPO / "src/imgclf/model/tta.py"
    assert covered(inside, ["src/imgclf/model"])
    assert not covered(inside, ["src/imgclf/mod"])  # a prefix of the name is not a parent
    assert not covered(REPO / "src/imgclf/training/fit.py", ["src/imgclf/model"])
