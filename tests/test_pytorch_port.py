"""A PyTorch script ports by changing its imports.

The scripts below are written the PyTorch way (torch.nn, torch.optim, torch.utils.data). The
test swaps only their import lines for ferrograd's and runs them; where PyTorch is installed
it also runs them unchanged, so they stay real PyTorch. docs/coming-from-pytorch.md lists
what still differs.
"""

import difflib
import importlib.util

import numpy as np
import pytest

import ferrograd as fg

IMPORTS = {
    "import torch": "import ferrograd as torch",
    "import torch.nn as nn": "from ferrograd import layers as nn",
    "import torch.optim as optim": "from ferrograd import optim",
    "from torch.utils.data import DataLoader, TensorDataset": "from ferrograd.data import DataLoader, TensorDataset",
}

# The digits as NumPy arrays (the data is not what is being ported), shuffled once.
PREAMBLE = """
import numpy as np
from ferrograd.datasets import load_digits
X_np, y_np = load_digits()
perm = np.random.default_rng(0).permutation(len(y_np))
X_np, y_np = X_np[perm], y_np[perm]
"""

TRAIN_DIGITS = """
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

X = torch.from_numpy(X_np)
y = torch.from_numpy(y_np)
train_ds = TensorDataset(X[:1400], y[:1400])
test_ds = TensorDataset(X[1400:], y[1400:])
train_loader = DataLoader(train_ds, batch_size=64, shuffle=True)
test_loader = DataLoader(test_ds, batch_size=256)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.1)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


model = Net()
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=1e-3)
scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)

losses = []
for epoch in range(10):
    model.train()
    running = 0.0
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        running += loss.item() * len(xb)
    scheduler.step()
    losses.append(running / len(train_loader.dataset))

model.eval()
correct = 0
with torch.no_grad():
    for xb, yb in test_loader:
        pred = model(xb).argmax(1)
        correct += int((pred.numpy() == yb.numpy()).sum())
accuracy = correct / len(test_loader.dataset)

torch.save(model.state_dict(), "digits_mlp.pt")
reloaded = Net()
reloaded.load_state_dict(torch.load("digits_mlp.pt"))
reloaded.eval()
with torch.no_grad():
    same = bool((reloaded(X[1400:]).numpy() == model(X[1400:]).numpy()).all())
"""

# The integer idioms: int64 labels from torch.tensor, comparisons, .float(), .long().
EVALUATE_WITH_INTEGERS = """
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
X = torch.tensor(X_np)
y = torch.tensor(y_np)
loader = DataLoader(TensorDataset(X, y), batch_size=256)
model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
criterion = nn.CrossEntropyLoss()

correct = 0
total_loss = 0.0
label_dtypes = set()
with torch.no_grad():
    for xb, yb in loader:
        label_dtypes.add(str(yb.dtype))
        logits = model(xb)
        total_loss += criterion(logits, yb).item() * len(yb)
        correct += (logits.argmax(1) == yb).sum().item()
        batch_accuracy = (logits.argmax(1) == yb).float().mean().item()
accuracy = correct / len(loader.dataset)
first_label = y[:1].long().item()
"""


def ported(script: str) -> str:
    """The script with its torch imports swapped for ferrograd's, and nothing else changed."""
    lines = script.splitlines()
    swapped = [IMPORTS.get(line, line) for line in lines]
    changed = [a for a, b in zip(lines, swapped) if a != b]
    assert changed, "the script has no torch import to swap"
    assert all(line.startswith(("import ", "from ")) for line in changed)
    imported = [line.split()[1] for line in swapped if line.startswith(("import ", "from "))]
    assert not any(name.startswith("torch") for name in imported), imported
    return "\n".join(swapped) + "\n"


def run(script: str) -> dict:
    namespace: dict = {"__name__": "__port__"}
    exec(compile(PREAMBLE + script, "<pytorch script>", "exec"), namespace)  # noqa: S102
    return namespace


def test_only_import_lines_differ_between_the_pytorch_and_the_ported_scripts():
    for script in (TRAIN_DIGITS, EVALUATE_WITH_INTEGERS):
        diff = [
            line
            for line in difflib.ndiff(script.splitlines(), ported(script).splitlines())
            if line.startswith(("- ", "+ "))
        ]
        assert diff and all(line[2:].startswith(("import ", "from ")) for line in diff)


def test_a_pytorch_digits_script_trains_with_only_its_imports_swapped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = run(ported(TRAIN_DIGITS))
    assert isinstance(ns["model"], fg.layers.Module)
    assert ns["losses"][-1] < ns["losses"][0] / 3, ns["losses"]
    assert ns["accuracy"] > 0.9, ns["accuracy"]
    assert ns["same"], "the reloaded checkpoint predicts differently"
    assert (tmp_path / "digits_mlp.pt").exists()


def test_the_integer_label_idioms_port_with_only_the_imports_swapped():
    ns = run(ported(EVALUATE_WITH_INTEGERS))
    assert ns["label_dtypes"] == {str(fg.int64)}
    assert 0.0 <= ns["accuracy"] <= 1.0 and 0.0 <= ns["batch_accuracy"] <= 1.0
    assert ns["first_label"] == int(np.asarray(ns["y_np"])[0])
    assert np.isfinite(ns["total_loss"])


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch not installed")
@pytest.mark.parametrize(
    "script", [TRAIN_DIGITS, EVALUATE_WITH_INTEGERS], ids=["train", "integers"]
)
def test_the_scripts_are_real_pytorch(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = run(script)
    assert 0.0 <= ns["accuracy"] <= 1.0
