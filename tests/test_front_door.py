"""The README's two commands are what CI and the Makefile really run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The commands in the README's ```bash blocks, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_readme_gives_one_set_up_and_quickstart_command_and_one_test_command() -> None:
    assert readme_commands() == ["make quickstart", "make test"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert lines[-1] == readme_commands()[-1]


def test_make_targets_create_the_environment_then_run() -> None:
    outside_make = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    for target, command in (("quickstart", ".venv/bin/probekit run examples/quickstart.yaml"),
                            ("test", ".venv/bin/python -m pytest")):
        plan = subprocess.run(["make", "--no-print-directory", "-n", "-B", target], cwd=ROOT, capture_output=True,
                              text=True, check=True, env=outside_make)
        steps = plan.stdout.splitlines()
        assert steps[0] == "python3 -m venv .venv" and steps[1].startswith(".venv/bin/pip install --quiet torch==")
        assert '.venv/bin/pip install --quiet -e ".[dev]"' in steps and steps[-1] == command
