"""The release wheel: `maturin build --release --zig --compatibility manylinux2014` (the
README's Release command) makes one abi3 wheel for CPython >= 3.9, tagged manylinux2014 and
needing nothing newer than glibc 2.17, with the metadata a PyPI page shows. It installs into a
fresh venv (NumPy from PyPI) and runs the README's tour and the autodiff tour there.

Building takes minutes, so this runs only with FERROGRAD_WHEEL_TEST=1. It needs maturin and
ziglang (`pip install maturin ziglang`) and network access to PyPI for NumPy.
FERROGRAD_WHEEL_PYTHONS="python3.9 python3.13" also installs and tests the wheel under those
interpreters (the current one is always tested).
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(
    os.environ.get("FERROGRAD_WHEEL_TEST") != "1",
    reason="builds and installs the wheel (minutes); set FERROGRAD_WHEEL_TEST=1 to run",
)

PYTHONS = [sys.executable, *os.environ.get("FERROGRAD_WHEEL_PYTHONS", "").split()]


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    maturin = shutil.which("maturin")
    if maturin is None:
        pytest.skip("maturin is not installed (pip install maturin)")
    if importlib.util.find_spec("ziglang") is None:
        pytest.skip("ziglang is not installed (pip install ziglang)")
    dist = tmp_path_factory.mktemp("dist")
    env = dict(os.environ)
    # maturin finds zig through `python3 -m ziglang`; name the interpreter that has it (a
    # pyenv shim may otherwise put another python3 first on PATH).
    env["CARGO_ZIGBUILD_PYTHON_PATH"] = sys.executable
    _run(
        [
            maturin,
            "build",
            "--release",
            "--zig",
            "--compatibility",
            "manylinux2014",
            "--out",
            str(dist),
        ],
        cwd=ROOT,
        env=env,
    )
    (built,) = dist.glob("*.whl")
    return built


def test_the_wheel_is_abi3_and_tagged_manylinux2014(wheel):
    assert "-cp39-abi3-" in wheel.name, wheel.name
    assert re.search(r"manylinux_2_17_\w+", wheel.name), wheel.name
    assert "manylinux2014" in wheel.name, wheel.name


def test_the_extension_needs_no_glibc_symbol_newer_than_2_17(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (so,) = [n for n in zf.namelist() if re.search(r"ferrograd/_core.*\.so$", n)]
        binary = zf.read(so)
    versions = {tuple(map(int, m)) for m in re.findall(rb"GLIBC_(\d+)\.(\d+)", binary)}
    assert versions, "no GLIBC symbol versions found in the extension"
    assert max(versions) <= (2, 17), sorted(versions)


def test_the_wheel_carries_the_metadata_a_pypi_page_needs(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(zf.read(meta_name).decode())
    assert meta["Name"] == "ferrograd"
    assert meta["License-Expression"] == "MIT AND CC-BY-4.0"
    assert "LICENSE" in meta.get_all("License-File")
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["Author"] == "ferrograd developers" or "ferrograd developers" in (
        meta["Author-email"] or ""
    )
    assert "autodiff" in meta["Keywords"]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Source", "Documentation", "Issues"} <= set(urls)
    classifiers = meta.get_all("Classifier")
    assert "Programming Language :: Python :: 3.9" in classifiers
    assert "Typing :: Typed" in classifiers
    assert meta["Requires-Python"] == ">=3.9"
    assert meta["Description-Content-Type"].startswith("text/markdown")
    assert "# ferrograd" in meta.get_payload()  # the README is the long description
    assert any(n.endswith("ferrograd/datasets/digits.csv.gz") for n in names)
    assert any(n.endswith("ferrograd/py.typed") for n in names)


@pytest.mark.parametrize("python", PYTHONS)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_readme_tour(wheel, python, tmp_path):
    venv = tmp_path / "venv"
    _run([python, "-m", "venv", str(venv)])
    vpython = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([str(vpython), "-m", "pip", "install", "--quiet", str(wheel)], env=_clean_env())

    # Run from an empty folder so only the installed package can be imported.
    work = tmp_path / "work"
    work.mkdir()
    where = _run(
        [str(vpython), "-c", "import ferrograd; print(ferrograd.__file__)"],
        cwd=work,
        env=_clean_env(),
    )
    assert Path(where.strip()).resolve().is_relative_to(venv.resolve())

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks
    tour = work / "readme_tour.py"
    tour.write_text("\n".join(blocks))
    out = _run([str(vpython), str(tour)], cwd=work, env=_clean_env())
    assert "digraph" in out  # the tour's last line prints the graph
    assert (work / "digits.safetensors").exists()

    out = _run(
        [str(vpython), str(ROOT / "examples" / "autodiff_tour.py")], cwd=work, env=_clean_env()
    )
    assert "dz/dx = 2.0, dz/dy = 3.0" in out
    # The data sets ship inside the wheel (package data, no download).
    check = (
        "import ferrograd as fg; print(len(fg.datasets.load_digits()[0]), "
        "len(fg.datasets.load_tiny_shakespeare()))"
    )
    sizes = _run([str(vpython), "-c", check], cwd=work, env=_clean_env())
    assert sizes.split() == ["1797", "1115394"]
