"""The docs cannot drift: every Python block in docs/ runs, and the site builds strictly.

Each page's ```python blocks run in order, in one namespace, in a fresh temporary folder (a
page may write files, e.g. a checkpoint). The site is built with ``mkdocs build --strict``
against the ferrograd these tests import, and the API reference must cover every public
name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ferrograd as fg

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def _python_blocks(page: Path) -> list[tuple[int, str]]:
    """(line number of the block's first line, code) for each ```python block."""
    text = page.read_text(encoding="utf-8")
    # A block whose first line is "# mpiexec ..." is a script for several processes:
    # tests/test_distributed.py runs those under mpiexec instead.
    return [
        (text.count("\n", 0, m.start(2)) + 1, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1).strip() == "python" and not m.group(2).startswith("# mpiexec ")
    ]


def _page_id(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def test_the_docs_have_the_promised_pages() -> None:
    names = {_page_id(p) for p in PAGES}
    assert {
        "index.md",
        "getting-started.md",
        "tutorial.md",
        "coming-from-pytorch.md",
        "api/ferrograd.md",
    } <= names
    assert sum(len(_python_blocks(p)) for p in PAGES) >= 30


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_code_fence_is_either_run_or_not_python(page: Path) -> None:
    # ```py, ```python3 or ```pycon would silently escape the runner below.
    for m in FENCE.finditer(page.read_text(encoding="utf-8")):
        lang = m.group(1).strip()
        assert lang == "python" or not lang.startswith("py"), (
            f"{_page_id(page)}: a ```{lang} block is not run; write ```python"
        )


@pytest.mark.parametrize("page", [p for p in PAGES if _python_blocks(p)], ids=_page_id)
def test_the_page_code_blocks_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for line, code in _python_blocks(page):
            # Pad so tracebacks point at the line in the .md file.
            source = "\n" * (line - 1) + code
            exec(compile(source, str(page), "exec"), namespace)  # noqa: S102 - the docs are the test
    finally:
        fg.set_grad_enabled(True)  # a failing block must not leave grad mode off


def _build_env() -> dict[str, str]:
    env = dict(os.environ)
    # Build against the ferrograd under test (the installed package in CI, or PYTHONPATH).
    package_parent = str(Path(fg.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    env["NO_MKDOCS_2_WARNING"] = "1"
    # (No --quiet: it hides the warnings that --strict counts, and the build would pass.)
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(out),
        ],
        check=False,
        cwd=ROOT,
        env=_build_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    )
    return out


def test_docs_build_strictly(site: Path) -> None:
    for page in PAGES:
        html = site / _page_id(page).replace(".md", "") / "index.html"
        if page.name == "index.md":
            html = site / _page_id(page).replace(".md", ".html")
        assert html.exists(), html


def _anchors(site: Path) -> set[str]:
    ids: set[str] = set()
    for html in (site / "api").rglob("*.html"):
        ids |= set(re.findall(r'id="(ferrograd[\w.]*)"', html.read_text(encoding="utf-8")))
    return ids


def test_the_api_reference_covers_every_public_name(site: Path) -> None:
    anchors = _anchors(site)
    expected = {f"ferrograd.{name}" for name in fg.__all__ if name != "__version__"}
    expected |= {"ferrograd.save", "ferrograd.load"}
    for module in (
        "layers",
        "loss",
        "optim",
        "data",
        "datasets",
        "functional",
        "distributed",
        "onnx",
    ):
        mod = getattr(fg, module)
        expected |= {f"ferrograd.{module}.{name}" for name in mod.__all__}
    expected.discard("ferrograd.optim.lr_scheduler")  # a submodule; its classes are listed
    missing = sorted(expected - anchors)
    assert not missing, f"not in the API reference (docs/api/*.md): {missing}"


def test_the_api_reference_documents_the_compiled_classes(site: Path) -> None:
    """Tensor's methods come from the stub with the docstrings written in Rust."""
    anchors = _anchors(site)
    for cls in (fg.Tensor, fg.NdArray):
        public = {n for n in dir(cls) if not n.startswith("_")}
        missing = sorted(
            f"ferrograd.{cls.__name__}.{n}"
            for n in public
            if f"ferrograd.{cls.__name__}.{n}" not in anchors
        )
        assert not missing, missing
    html = (site / "api" / "ferrograd" / "index.html").read_text(encoding="utf-8")
    # Signatures with types from the stub, docstrings from the module.
    assert "retain_graph" in html  # Tensor.backward's signature
    assert "Backpropagates" in html  # its docstring
    assert "The dimensions, a tuple of ints" in html  # Tensor.shape's docstring
