"""The abi3 wheel: `maturin build --release` makes one wheel for CPython >= 3.9 that installs
into a fresh venv (NumPy from PyPI) and runs the autodiff tour.

Building takes a minute or two, so this runs only with FERROGRAD_WHEEL_TEST=1.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.environ.get("FERROGRAD_WHEEL_TEST") != "1",
    reason="builds and installs the wheel (1-2 minutes); set FERROGRAD_WHEEL_TEST=1 to run",
)


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_abi3_wheel_installs_into_a_fresh_venv_and_runs_the_autodiff_tour(tmp_path):
    maturin = shutil.which("maturin")
    if maturin is None:
        pytest.skip("maturin is not installed (pip install maturin)")
    dist = tmp_path / "dist"
    _run([maturin, "build", "--release", "--out", str(dist)], cwd=ROOT)
    (wheel,) = dist.glob("*.whl")
    assert "-cp39-abi3-" in wheel.name, wheel.name

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], env=_clean_env())

    # Run from an empty folder so only the installed package can be imported.
    work = tmp_path / "work"
    work.mkdir()
    where = _run([str(python), "-c", "import ferrograd; print(ferrograd.__file__)"],
                 cwd=work, env=_clean_env())
    assert Path(where.strip()).is_relative_to(venv)
    out = _run([str(python), str(ROOT / "examples" / "autodiff_tour.py")], cwd=work,
               env=_clean_env())
    assert out.strip()
    # The data sets ship inside the wheel (package data, no download).
    check = ("import ferrograd as fg; print(len(fg.datasets.load_digits()[0]), "
             "len(fg.datasets.load_tiny_shakespeare()))")
    sizes = _run([str(python), "-c", check], cwd=work, env=_clean_env())
    assert sizes.split() == ["1797", "1115394"]
