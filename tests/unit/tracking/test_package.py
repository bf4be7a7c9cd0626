"""imgclf.tracking's import contract: reading where the store is starts no Keras or TensorFlow.

Commands that only open the store, resume a run or fetch a model (evaluate's logging, promote,
tune, predict's download) must not pay for a backend at import; only the epoch logger, a Keras
callback, may import Keras at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import imgclf.tracking

PACKAGE = Path(imgclf.tracking.__file__).parent
KERAS_FREE = ("imgclf.tracking", *(
    f"imgclf.tracking.{path.stem}"
    for path in sorted(PACKAGE.glob("*.py"))
    if path.stem not in ("__init__", "epoch_logger")
))  # fmt: skip


def test_importing_tracking_imports_no_keras_or_tensorflow() -> None:
    # A fresh interpreter: this test process has imported Keras long ago.
    code = (
        "import importlib, sys\n"
        f"for name in {KERAS_FREE!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert len(KERAS_FREE) >= 5  # the package, store, provenance, runs, artifacts
    assert result.stdout.strip() == "", f"importing {KERAS_FREE} loaded {result.stdout.strip()}"


def _top_level_imports(path: Path) -> set[str]:
    """Modules a file imports outside any function (what importing it runs)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_epoch_logger_imports_keras_at_the_top() -> None:
    importers = sorted(
        path.name for path in PACKAGE.glob("*.py") if "keras" in _top_level_imports(path)
    )
    assert importers == ["epoch_logger.py"]
