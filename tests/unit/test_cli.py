"""imgclf.cli and the stage parsers: what each command does and where its paths come from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imgclf.cli import COMMANDS, main
from imgclf.stages.common import DVC_STAGES

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_overview_lists_one_line_per_command_saying_what_it_does(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for name, summary in COMMANDS.items():
        assert summary in lines[name]
        assert len(summary.split()) >= 5  # a sentence, not a restated name
    assert "dvc repro" in out
    assert main([]) == 2  # no command: the overview, but a failing exit for scripts


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_help_runs_and_dvc_stages_say_dvc_repro_passes_their_paths(
    name: str, capsys
) -> None:
    with pytest.raises(SystemExit) as leaving:
        main([name, "--help"])
    assert leaving.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse re-wraps the epilog
    assert f"usage: imgclf {name}" in text
    says = "`dvc repro` (and `dvc exp run`) runs this stage and passes these paths" in text
    assert says == (name in DVC_STAGES)


def test_the_dvc_stages_are_those_dvc_yaml_runs() -> None:
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert set(DVC_STAGES) == set(stages)
    assert list(COMMANDS)[: len(DVC_STAGES)] == list(DVC_STAGES)
