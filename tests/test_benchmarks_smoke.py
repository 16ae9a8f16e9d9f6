"""Smoke test of ``benchmarks/``: every script runs once on its tiny ``--quick`` size.

The benchmarks are not part of the test suite (their figures need a quiet machine and
minutes); this only keeps them from rotting. Each script runs in its own process with the
interpreter running the tests; PyTorch and micrograd are optional peers there, so a script
without them measures ferrograd against NumPy alone. All scripts start at once (importing
PyTorch dominates a quick run) and each test waits for its own.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = ["bench_matmul", "bench_elementwise", "bench_overhead", "bench_value",
           "bench_training", "bench_numpy_io", "bench_attention"]
FIELDS = {"workload", "size", "threads", "impl", "value", "unit"}
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def runs():
    """All scripts started together: name -> Popen (stdout and stderr captured)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            cwd=BENCHMARKS.parent,
        )
        for name in SCRIPTS
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_script_runs_quick_and_prints_json_figures(runs, name):
    out, err = runs[name].communicate(timeout=TIMEOUT_S)
    assert runs[name].returncode == 0, f"{name} --quick failed:\n{out[-3000:]}\n{err[-3000:]}"
    figures = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert figures, f"{name} printed no JSON figure:\n{out[-3000:]}"
    for fig in figures:
        assert FIELDS <= fig.keys(), fig
    assert any(fig["impl"] == "ferrograd" for fig in figures)


def test_every_benchmark_script_is_smoke_tested():
    assert sorted(p.stem for p in BENCHMARKS.glob("bench_*.py")) == sorted(SCRIPTS)


def test_run_all_collects_the_figures_and_prints_the_target_summary():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", "--only", "bench_value"],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "## All benchmarks" in done.stdout
    assert "## Targets" in done.stdout
    assert "| Value graph build+backward |" in done.stdout
