"""Smoke test of ``benchmarks/``: the harness runs every workload on its tiny ``--quick`` size,
and its bookkeeping (medians over rounds, paired ratios, the load gate, the registry) does
what the README says.

The benchmarks are not part of the test suite (their figures need a quiet machine and
minutes); this only keeps them from rotting. ferrograd and NumPy always run; PyTorch and
micrograd workers run when those are installed and are skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import harness
import report
import workloads
from harness import Figure, LoadCheck, LoadGate, Run, Settings

REGISTRY = workloads.load_all()
TIMEOUT_S = 600
PEERS_INSTALLED = [p for p in ("torch", "micrograd") if importlib.util.find_spec(p)]


def run_all(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


# ----- the harness end to end ------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of every workload with ferrograd and NumPy: (stdout, report, raw)."""
    out = tmp_path_factory.mktemp("bench")
    done = run_all(
        "--rounds",
        "1",
        "--impls",
        "ferrograd,numpy",
        "--markdown",
        str(out / "report.md"),
        "--json",
        str(out / "raw.json"),
        cwd=out,
    )
    return done.stdout, (out / "report.md").read_text(), json.loads((out / "raw.json").read_text())


def test_quick_run_measures_every_workload_with_ferrograd_and_numpy(quick_run):
    _, _, raw = quick_run
    ran = {(r["workload"], r["impl"]) for r in raw["runs"]}
    for name, w in REGISTRY.items():
        assert (name, "ferrograd") in ran, name
        if "numpy" in w.impls:
            assert (name, "numpy") in ran, name
    assert not [r for r in raw["runs"] if r["error"]]
    for fig in raw["figures"]:
        # (memory above the imports may round to nothing on tiny sizes)
        assert math.isfinite(fig["value"]) and fig["value"] >= 0, fig
        assert fig["min"] <= fig["value"] <= fig["max"], fig


def test_every_training_workload_reports_peak_rss_for_each_library(quick_run):
    _, _, raw = quick_run
    for run in raw["runs"]:
        if REGISTRY[run["workload"]].training:
            rss = {
                c["label"].split(" peak RSS")[1]: c["values"][0]
                for c in run["result"]["cases"]
                if c["unit"] == "MiB"
            }
            after_import = run["result"]["process"]["rss_after_import_mib"]
            assert set(rss) == {"", " above imports"}, run["result"]
            assert after_import <= rss[""] < 100_000
            assert rss[" above imports"] == pytest.approx(rss[""] - after_import)


def test_each_worker_runs_with_the_thread_count_it_was_given(quick_run):
    _, _, raw = quick_run
    for run in raw["runs"]:
        seen = run["result"]["process"]["threads_seen"]
        if run["impl"] == "ferrograd":
            assert seen["ferrograd"] == run["threads"], run


def test_a_workload_at_two_thread_counts_interleaves_them_within_each_round(quick_run):
    _, _, raw = quick_run
    order = [(r["impl"], r["threads"]) for r in raw["runs"] if r["workload"] == "matmul"]
    assert order == [("ferrograd", 1), ("numpy", 1), ("ferrograd", 2), ("numpy", 2)]


def test_report_names_the_machine_versions_command_and_load(quick_run):
    stdout, text, raw = quick_run
    assert text in stdout
    for part in (
        "- command: `",
        "run_all.py --quick",
        "- machine: ",
        "- versions: ferrograd",
        "numpy ",
        "- load: 1-min load average",
        "### Targets",
        "### All figures",
        "### Load before each process",
        "| matmul f32 ",
    ):
        assert part in text, part
    for run in raw["runs"]:
        assert run["load"]["load1"] >= 0
    # the core-to-core round trip is measured before each process wherever the probe runs
    # (ferrograd's own count of usable cores, which a CPU quota can make 1 on a many-core
    # machine, decides that, not os.cpu_count())
    if harness.core_to_core_round_trip() is not None:
        assert all(run["load"]["round_trip_ns"] > 0 for run in raw["runs"])
        assert "core round trip before (ns, min–max)" in text


def test_libraries_alternate_process_by_process_and_ratios_pair_rounds(tmp_path):
    raw_path = tmp_path / "raw.json"
    run_all("--only", "overhead", "--rounds", "2", "--json", str(raw_path), cwd=tmp_path)
    raw = json.loads(raw_path.read_text())
    for name in ("overhead",):
        impls = [
            i
            for i in harness.peer_order(REGISTRY[name].impls)
            if i in ("ferrograd", "numpy", *PEERS_INSTALLED)
        ]
        order = [r["impl"] for r in raw["runs"] if r["workload"] == name]
        assert order == impls * 2, (name, order)
    tiny_add = next(
        f for f in raw["figures"] if f["workload"] == "tiny add" and f["impl"] == "ferrograd"
    )
    assert tiny_add["rounds"] == 2
    lo, hi = tiny_add["ratio_vs_numpy_range"]
    assert lo <= hi
    if "torch" in PEERS_INSTALLED:
        assert "ratio_vs_torch" in tiny_add


@pytest.fixture(scope="module")
def peer_workers():
    """A quick worker for every (workload, installed peer), all started at once."""
    procs = {
        (name, impl): subprocess.Popen(
            [
                sys.executable,
                str(BENCHMARKS / "worker.py"),
                name,
                impl,
                "--threads",
                "1",
                "--quick",
                "--repeats",
                "1",
                "--min-time",
                "0.001",
                "--warmup-time",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, w in REGISTRY.items()
        for impl in w.impls
        if impl in PEERS_INSTALLED
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize(
    "name,impl",
    [(n, i) for n, w in REGISTRY.items() for i in w.impls if i in ("torch", "micrograd")],
)
def test_peer_worker_runs_quick_and_prints_its_figures(peer_workers, name, impl):
    if impl not in PEERS_INSTALLED:
        pytest.skip(f"{impl} is not installed")
    out, err = peer_workers[(name, impl)].communicate(timeout=TIMEOUT_S)
    assert peer_workers[(name, impl)].returncode == 0, out[-3000:] + err[-3000:]
    result = json.loads(out.splitlines()[-1])
    assert result["cases"] and all(v >= 0 for c in result["cases"] for v in c["values"])
    assert all(v > 0 for c in result["cases"] if c["unit"] != "MiB" for v in c["values"])


def test_worker_refuses_an_unknown_workload_and_a_bad_thread_count():
    for args, message in (
        (["no_such_workload", "ferrograd", "--threads", "1"], "unknown workload"),
        (["matmul", "ferrograd", "--threads", "0"], "--threads must be"),
    ):
        done = subprocess.run(
            [sys.executable, str(BENCHMARKS / "worker.py"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and message in done.stderr, done.stderr


# ----- the bookkeeping -------------------------------------------------------------------


def _run(impl: str, r: int, values: list[float], label: str = "step", unit: str = "steps/s") -> Run:
    result = {
        "cases": [{"label": label, "size": "s", "unit": unit, "values": values}],
        "process": {"version": "1"},
    }
    return Run("w", impl, 2, r, LoadCheck(0.5, 0.1, 0.0), 1.0, result)


def test_figures_are_medians_over_rounds_with_min_max_and_per_round_ratios():
    runs = []
    for r, (fg_vals, torch_vals) in enumerate(
        [([10, 12, 11], [5, 6, 4]), ([20, 21, 19], [5, 5, 5]), ([30, 30, 33], [10, 12, 11])]
    ):
        runs += [_run("ferrograd", r, fg_vals), _run("torch", r, torch_vals)]
    figs = {f.impl: f for f in harness.figures_from_runs(runs)}
    fg_fig, torch_fig = figs["ferrograd"], figs["torch"]
    assert fg_fig.rounds == [11, 20, 30] and torch_fig.rounds == [5, 5, 11]
    assert fg_fig.value == 20 and fg_fig.spread == (11, 30)
    ratio, lo, hi = fg_fig.ratios["torch"]
    assert ratio == pytest.approx(20 / 5)
    assert (lo, hi) == pytest.approx((11 / 5, 20 / 5))  # per round: 2.2, 4.0, 2.73
    assert "ferrograd" not in torch_fig.ratios and not torch_fig.ratios


def test_targets_need_every_round_for_the_large_mlp_and_lower_is_better_for_memory():
    def fig(label: str, impl: str, rounds: list[float], unit: str) -> Figure:
        return Figure("w", label, "s", 2, impl, unit, rounds)

    figs = [
        fig("large MLP train (SGD momentum)", "ferrograd", [130, 140, 120], "steps/s"),
        fig("large MLP train (SGD momentum)", "torch", [100, 100, 100], "steps/s"),
        fig("large MLP train (SGD momentum) peak RSS", "ferrograd", [60, 60, 60], "MiB"),
        fig("large MLP train (SGD momentum) peak RSS", "torch", [400, 400, 400], "MiB"),
    ]
    harness.add_ratios(figs)
    rows = {
        (name, target): (ratio, verdict)
        for name, target, ratio, verdict, _ in report.target_rows(figs)
    }
    ratio, verdict = rows[("large MLP, 2 threads", "≥ 1.25 × PyTorch's steps/s in every round")]
    assert ratio == pytest.approx((1.3, 1.2, 1.4)) and verdict == "MISS"  # median 1.3 > 1.25
    ratio, verdict = rows[("large MLP peak RSS", "≤ 0.3 × PyTorch's")]
    assert ratio[0] == pytest.approx(0.15) and verdict == "PASS"
    assert rows[("digits CNN, 1 thread", "≥ 1.5 × PyTorch's steps/s")] == (None, "n/a")


def test_load_gate_waits_while_others_are_busy_and_records_what_it_saw():
    now = [0.0]
    busy = iter([1.6, 1.2, 0.2])

    def sampler(seconds: float) -> float:
        now[0] += seconds
        return next(busy)

    gate = LoadGate(
        max_busy=0.5,
        max_wait=10,
        sample_s=1.0,
        sampler=sampler,
        loadavg=lambda: 2.5,
        clock=lambda: now[0],
    )
    assert gate.check() == LoadCheck(2.5, 0.2, 3.0)
    # a machine that stays busy: the gate gives up after max_wait and says so
    gate = LoadGate(
        max_busy=0.5,
        max_wait=2,
        sample_s=1.0,
        wait_budget=3,
        sampler=lambda s: (now.__setitem__(0, now[0] + s), 1.9)[1],
        loadavg=lambda: 3.0,
        clock=lambda: now[0],
    )
    assert gate.check() == LoadCheck(3.0, 1.9, 2.0)
    assert gate.check() == LoadCheck(3.0, 1.9, 1.0)  # one second of budget left
    assert gate.check() == LoadCheck(3.0, 1.9, 1.0)  # budget spent: one sample, no wait


def test_load_gate_records_the_core_round_trip_and_the_report_shows_its_range():
    trips = iter([60.0, 350.0])
    gate = LoadGate(
        0.5, 0, 0, sampler=lambda s: 0.0, loadavg=lambda: 0.0, probe=lambda: next(trips)
    )
    checks = [gate.check(), gate.check()]
    assert [c.round_trip_ns for c in checks] == [60.0, 350.0]
    runs = [harness.Run("w", "ferrograd", 2, i, c, 1.0) for i, c in enumerate(checks)]
    table = "\n".join(report.load_table(runs))
    assert "| 60–350 " in table
    assert checks[0].as_dict()["round_trip_ns"] == 60.0
    # without a probe nothing is measured, and the report says so
    quiet = LoadGate(0.5, 0, 0, sampler=lambda s: 0.0, loadavg=lambda: 0.0).check()
    assert quiet.round_trip_ns is None
    assert "not measured" in "\n".join(report.load_table([harness.Run("w", "x", 1, 0, quiet, 1)]))


def test_a_failing_library_is_left_out_of_the_later_rounds():
    calls = []

    def runner(workload, impl, threads, settings):
        calls.append(impl)
        if impl == "torch":
            return None, "exit code 1: boom"
        return {"cases": [], "process": {"version": "1"}}, ""

    settings = Settings(quick=True, rounds=3, repeats=1, min_time=0, warmup_time=0, timeout=1)
    gate = LoadGate(0.5, 0, 0, sampler=lambda s: 0.0, loadavg=lambda: 0.0)
    runs = harness.run_group(
        "w", ["ferrograd", "torch", "numpy"], [1], settings, gate, log=lambda s: None, runner=runner
    )
    assert calls == ["ferrograd", "torch", "numpy", "ferrograd", "numpy", "ferrograd", "numpy"]
    assert [r.error for r in runs if r.impl == "torch"] == ["exit code 1: boom"]


def test_a_new_workload_is_one_declaration_and_a_function_per_library():
    workloads.declare("toy_gpt", "a toy", threads=(1,), training=True)
    try:

        @workloads.implementation("toy_gpt", "ferrograd")
        def toy(ctx: workloads.Context) -> None:
            ctx.time("toy step", "tiny", "steps/s", lambda: sum(range(100)))

        assert REGISTRY["toy_gpt"].impls == {"ferrograd": toy}
        ctx = workloads.Context(quick=True, repeats=2, min_time=0.001, warmup_time=0, threads=1)
        toy(ctx)
        assert [c.label for c in ctx.cases] == ["toy step"] and len(ctx.cases[0].values) == 2
        with pytest.raises(ValueError, match="two ferrograd implementations"):
            workloads.implementation("toy_gpt", "ferrograd")(toy)
        with pytest.raises(ValueError, match="declared twice"):
            workloads.declare("toy_gpt", "again")
    finally:
        del workloads.WORKLOADS["toy_gpt"]


def test_every_workload_has_a_ferrograd_implementation():
    assert REGISTRY and all("ferrograd" in w.impls for w in REGISTRY.values())
    assert {
        "matmul",
        "elementwise",
        "overhead",
        "numpy_io",
        "value",
        "digits_mlp",
        "large_mlp",
        "digits_cnn",
    } <= set(REGISTRY)


def test_digits_read_without_importing_ferrograd_equal_load_digits():
    from workloads.data import load_digits

    import ferrograd as fg

    X, y = load_digits()
    fX, fy = fg.datasets.load_digits()
    np.testing.assert_array_equal(X, fX)
    np.testing.assert_array_equal(y, fy)


def test_the_pytorch_cnn_has_the_demo_models_parameters():
    torch = pytest.importorskip("torch")
    from workloads.cnn import demo_small_cnn, torch_small_cnn

    ours = {k: tuple(v.shape) for k, v in demo_small_cnn()().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in torch_small_cnn(torch)().state_dict().items()}
    assert ours == theirs
