"""The GPT of examples/train_shakespeare.py: it overfits a short text, it is causal, it
rejects bad input clearly, its sampling is reproducible, and the script runs end to end."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ferrograd as fg

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_shakespeare.py"


def _example():
    spec = importlib.util.spec_from_file_location("train_shakespeare", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ex = _example()


def _tiny(vocab=12, block_size=8, seed=0):
    fg.manual_seed(seed)
    return ex.GPT(vocab, block_size, n_layer=2, n_head=2, n_embd=16)


def test_a_tiny_gpt_overfits_a_short_text_and_then_recites_it():
    text = "to be or not to be, that is the question. "
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.int64)
    fg.manual_seed(0)
    model = ex.GPT(len(chars), 16, n_layer=2, n_head=2, n_embd=32)
    opt = model.configure_optimizer(0.0, 3e-3, (0.9, 0.99))
    # Every window of 16 characters, each a row of the batch.
    rows = np.arange(len(ids) - 16)[:, None] + np.arange(16)
    x, y = fg.tensor(ids[rows]), fg.tensor(ids[rows + 1])
    first = model.loss(x, y).item()
    for _ in range(250):
        loss = model.loss(x, y)
        loss.backward()
        fg.layers.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    last = model.loss(x, y).item()
    assert first > 2.5  # about log(vocab) at the start
    assert last < 0.1
    # Greedy continuation (top_k=1) of the first 16 characters recites the rest.
    out = model.generate(fg.tensor(ids[None, :16]), 20, temperature=1.0, top_k=1)
    assert "".join(chars[i] for i in out.numpy()[0]) == text[:36]


def test_the_model_is_causal_a_later_token_does_not_change_earlier_logits():
    model = _tiny()
    model.eval()
    a = np.array([[1, 2, 3, 4, 5, 6, 7, 8]])
    b = a.copy()
    b[0, 5:] = [11, 0, 9]
    la, lb = model(fg.tensor(a)).numpy(), model(fg.tensor(b)).numpy()
    np.testing.assert_allclose(la[:, :5], lb[:, :5], rtol=1e-5, atol=1e-6)
    assert not np.allclose(la[:, 5:], lb[:, 5:])


def test_the_head_is_tied_to_the_token_embedding_and_listed_once():
    model = _tiny()
    assert model.lm_head.weight is model.transformer.wte.weight
    params = model.parameters()
    assert len({id(p) for p in params}) == len(params)
    loss = model.loss(fg.tensor([[1, 2, 3]]), fg.tensor([[2, 3, 4]]))
    loss.backward()
    assert model.lm_head.weight.grad is not None


def test_a_sequence_longer_than_the_block_size_raises_value_error():
    model = _tiny(block_size=8)
    with pytest.raises(ValueError, match="block size is only 8"):
        model(fg.tensor(np.zeros((1, 9), dtype=np.int64)))


def test_a_token_id_at_or_beyond_the_vocabulary_raises_index_error():
    model = _tiny(vocab=12)
    with pytest.raises(IndexError, match="12"):
        model(fg.tensor([[0, 12]]))


def test_sampling_is_reproducible_under_manual_seed_and_crops_to_the_block_size():
    model = _tiny(block_size=8)
    start = fg.tensor([[1, 2]])
    fg.manual_seed(5)
    a = model.generate(start, 30, temperature=1.0, top_k=5).numpy()
    fg.manual_seed(5)
    b = model.generate(start, 30, temperature=1.0, top_k=5).numpy()
    fg.manual_seed(6)
    c = model.generate(start, 30, temperature=1.0, top_k=5).numpy()
    assert a.shape == (1, 32)  # longer than the block size: the context was cropped
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 12


def test_top_k_keeps_sampling_to_the_k_most_likely_tokens():
    model = _tiny()
    start = fg.tensor([[3]])
    model.eval()
    with fg.no_grad():
        logits = model(start, last_only=True).numpy()[0, -1]
    best_two = set(np.argsort(logits)[-2:].tolist())
    fg.manual_seed(1)
    drawn = {int(model.generate(start, 1, top_k=2).numpy()[0, -1]) for _ in range(40)}
    assert drawn <= best_two


def test_the_schedule_warms_up_then_decays_by_cosine_to_the_minimum():
    args = ex.parse_args([])
    assert ex.lr_at(0, args) == pytest.approx(1e-3 / 101)
    assert ex.lr_at(100, args) == pytest.approx(1e-3)
    assert ex.lr_at(1050, args) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert ex.lr_at(2000, args) == pytest.approx(1e-4)
    assert ex.lr_at(2500, args) == pytest.approx(1e-4)


def test_the_data_maps_sorted_characters_to_ids_and_splits_ninety_ten_in_order():
    text = "hello world, hello ferrograd"
    data = ex.CharData(text)
    assert data.chars == sorted(set(text))
    ids = np.concatenate([data.train, data.val])
    assert data.decode(ids.tolist()) == text
    assert len(data.train) == int(0.9 * len(text))
    x, y = data.batch("train", 4, 5)
    assert x.dtype == fg.int64 and x.shape == (4, 5)
    np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])


def test_the_example_runs_end_to_end_logs_like_nanogpt_and_saves_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["--max-iters", "20", "--eval-interval", "10", "--eval-iters", "2", "--batch-size", "4",
            "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--out", str(out), "--sample-chars", "100"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    iters = [ln for ln in lines if ln.startswith("iter ")]
    assert [int(ln.split()[1].rstrip(":")) for ln in iters] == list(range(20))
    assert all(re.fullmatch(r"iter \d+: loss \d+\.\d{4}, time \d+\.\d{2}ms", ln) for ln in iters)
    steps = [ln for ln in lines if ln.startswith("step ")]
    assert [ln.split(":")[0] for ln in steps] == ["step 0", "step 10", "step 20"]
    assert all(
        re.fullmatch(r"step \d+: train loss \d+\.\d{4}, val loss \d+\.\d{4}", ln) for ln in steps
    )
    # The loss falls from about log(65) as training starts.
    first, last = float(iters[0].split()[3].rstrip(",")), float(iters[-1].split()[3].rstrip(","))
    assert first == pytest.approx(np.log(65), abs=0.3) and last < first
    # The checkpoint loads into a fresh model and gives the logged val loss's model back.
    state = fg.load(out / "ckpt.safetensors")
    fresh = ex.GPT(65, 16, n_layer=1, n_head=2, n_embd=16)
    fresh.load_state_dict(state)
    assert (out / "meta.json").exists()
    # The sample: 100 characters (and print's newline) after the checkpoint line.
    sample = result.stdout.split(f"saved checkpoint to {out}\n", 1)[1]
    assert len(sample) == 101 and set(sample[:-1]) <= set(fg.datasets.load_tiny_shakespeare())


def test_the_gpt_benchmark_runs_at_tiny_sizes_and_reports_a_table():
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_gpt.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--quick", "--libs", "ferrograd"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(ln for ln in result.stdout.splitlines() if ln.startswith("| ferrograd |"))
    cells = row.split("|")
    median, peak = float(cells[2]), float(cells[6])
    cpu_median, cpu_min = (float(v.strip(" ()")) for v in cells[5].split())
    assert median > 0 and peak > 0 and cpu_median >= cpu_min > 0
