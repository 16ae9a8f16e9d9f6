"""The bundled Tiny Shakespeare text (nanoGPT's character-level data), read offline."""

import gzip
import hashlib
from importlib import resources

import pytest

import ferrograd as fg
from ferrograd import datasets


def test_the_text_is_tiny_shakespeare_with_its_published_length_alphabet_and_md5():
    text = fg.datasets.load_tiny_shakespeare()
    assert isinstance(text, str)
    assert len(text) == 1_115_394
    chars = sorted(set(text))
    assert len(chars) == 65 and chars[:2] == ["\n", " "]
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert hashlib.md5(text.encode("utf-8")).hexdigest() == "6fb458f1232090904fb40fe944165e91"


def test_nanogpts_split_and_vocabulary_follow_from_the_text():
    text = fg.datasets.load_tiny_shakespeare()
    n = int(0.9 * len(text))
    train, val = text[:n], text[n:]
    assert (len(train), len(val)) == (1_003_854, 111_540)  # nanoGPT's prepare.py prints these
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    assert max(stoi.values()) == 64 and stoi["\n"] == 0


def test_the_data_and_its_credit_ship_inside_the_package():
    files = resources.files("ferrograd.datasets")
    assert files.joinpath("tinyshakespeare.txt.gz").is_file()
    credit = files.joinpath("TINYSHAKESPEARE_LICENSE.txt").read_text(encoding="utf-8")
    assert "char-rnn" in credit and "public domain" in credit and "Karpathy" in credit


def test_a_corrupt_file_raises_value_error(monkeypatch):
    monkeypatch.setattr(datasets, "_SHAKESPEARE_CACHE", None)
    good = gzip.decompress(
        resources.files("ferrograd.datasets").joinpath("tinyshakespeare.txt.gz").read_bytes()
    )

    class Fake:
        def __init__(self, payload):
            self.payload = payload

        def joinpath(self, name):
            return self

        def read_bytes(self):
            return self.payload

    for payload, match in [
        (b"not gzip at all", "corrupt gzip"),
        (gzip.compress(good[:-1] + b"?"), "MD5"),
    ]:
        monkeypatch.setattr(datasets.resources, "files", lambda _name, p=payload: Fake(p))
        with pytest.raises(ValueError, match=match):
            datasets.load_tiny_shakespeare()
    monkeypatch.undo()
    assert len(datasets.load_tiny_shakespeare()) == 1_115_394
