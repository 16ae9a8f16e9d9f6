"""The package and the examples type-check with ``mypy --strict`` (config: pyproject.toml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_passes_on_the_package_and_the_examples() -> None:
    env = dict(os.environ)
    env.pop("MYPYPATH", None)  # pyproject's mypy_path points at python/, the sources
    result = subprocess.run(
        # The default cache (.mypy_cache, git-ignored by mypy itself) makes reruns fast.
        [sys.executable, "-m", "mypy", "--strict", "python/ferrograd", "examples"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mypy --strict failed:\n{result.stdout}\n{result.stderr}"
    assert "Success" in result.stdout
