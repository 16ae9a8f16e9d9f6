"""End to end: real training on the bundled digits, checkpoints, and the examples run."""

import subprocess
import sys
from pathlib import Path

import numpy as np

import ferrograd as fg
from ferrograd import layers as nn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _split():
    x, y = fg.datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(y))
    test, train = order[:360], order[360:]
    return (x[train], y[train]), (x[test], y[test])


def _accuracy(model, x, y):
    model.eval()
    with fg.no_grad():
        return float((model(fg.Tensor(x)).numpy().argmax(axis=1) == y).mean())


def test_an_mlp_trains_to_95_percent_on_digits_and_survives_a_checkpoint(tmp_path):
    fg.manual_seed(0)
    (x_train, y_train), (x_test, y_test) = _split()
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    opt = fg.optim.Adam(model.parameters(), lr=3e-3)
    loader = fg.data.DataLoader(x_train, y_train, batch_size=64, seed=0)
    for _ in range(15):
        model.train()
        for xb, yb in loader:
            loss = fg.loss.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    accuracy = _accuracy(model, x_test, y_test)
    assert accuracy >= 0.95

    fg.save(model.state_dict(), tmp_path / "mlp.safetensors")
    fg.save(opt.state_dict(), tmp_path / "adam.safetensors")
    fresh = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    fresh.load_state_dict(fg.load(tmp_path / "mlp.safetensors"))
    assert _accuracy(fresh, x_test, y_test) == accuracy
    fresh_opt = fg.optim.Adam(fresh.parameters(), lr=3e-3)
    fresh_opt.load_state_dict(fg.load(tmp_path / "adam.safetensors"))
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_a_cnn_learns_digits_beyond_chance_in_two_epochs():
    fg.manual_seed(0)
    (x_train, y_train), (x_test, y_test) = _split()
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    opt = fg.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        for xb, yb in fg.data.DataLoader(
            x_train.reshape(-1, 1, 8, 8), y_train, batch_size=32, seed=1
        ):
            loss = fg.loss.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert _accuracy(model, x_test.reshape(-1, 1, 8, 8), y_test) >= 0.85


def _run(script, *args, cwd):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_autodiff_tour_runs_and_shows_the_article_partials(tmp_path):
    out = _run("autodiff_tour.py", cwd=tmp_path)
    assert "dz/dx = 2.0, dz/dy = 3.0" in out
    assert "digraph" in out


def test_the_digits_demo_runs_saves_and_reloads_a_checkpoint(tmp_path):
    out = _run(
        "train_digits.py",
        "--epochs-mlp",
        "2",
        "--epochs-cnn",
        "1",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert "identical predictions" in out
    assert (tmp_path / "digits_mlp.safetensors").exists()
    assert (tmp_path / "digits_cnn.safetensors").exists()


def test_the_digits_demo_writes_under_runs_by_default_not_into_the_current_folder(tmp_path):
    _run("train_digits.py", "--epochs-mlp", "1", "--epochs-cnn", "1", cwd=tmp_path)
    assert (tmp_path / "runs" / "digits_mlp.safetensors").exists()
    assert (tmp_path / "runs" / "digits_cnn.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]


def test_the_moons_demo_and_the_regression_demo_run(tmp_path):
    assert "training accuracy" in _run("micrograd_moons.py", "--steps", "5", cwd=tmp_path)
    assert "RMS error" in _run(
        "regression.py", "--steps", "60", "--out", str(tmp_path), cwd=tmp_path
    )
