"""The type stubs (_core.pyi) list exactly what the compiled module has."""

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ferrograd
from ferrograd import _core

STUB = Path(ferrograd.__file__).with_name("_core.pyi")
# Names every extension class gets from Python or PyO3, not declared by us.
IMPLICIT = {"__new__", "__doc__", "__module__", "__init__", "__dict__", "__weakref__", "__repr__"}
# Defining __eq__ fills CPython's rich-comparison slot, which exposes all six operators.
RICH_COMPARISONS = {"__ne__", "__lt__", "__le__", "__gt__", "__ge__"}
STUB_ONLY = {"DTypeLike", "ArrayLike", "Operand", "Axis", "Index", "ValueLike", "_ArrayMethods"}


def _stub_tree():
    return ast.parse(STUB.read_text())


def _stub_members(cls_name):
    classes = {n.name: n for n in _stub_tree().body if isinstance(n, ast.ClassDef)}
    names = set()
    node = classes[cls_name]
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            names |= _stub_members(base.id)
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            names.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
    return names


def _runtime_members(cls):
    own = set(vars(cls))
    return {n for n in own if not (n.startswith("__") and n.endswith("__")) or n in _dunders(cls)}


def _dunders(cls):
    # Operator slots PyO3 defines show up in vars(); keep those we implement.
    return {
        n
        for n, v in vars(cls).items()
        if n.startswith("__")
        and n.endswith("__")
        and n not in IMPLICIT
        and (callable(v) or v is None)
    }


def test_stub_module_level_names_match_the_compiled_module():
    tree = _stub_tree()
    stub_names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stub_names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub_names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            stub_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    runtime = {n for n in dir(_core) if not n.startswith("__") or n == "__version__"}
    assert stub_names - STUB_ONLY == runtime


@pytest.mark.parametrize("cls_name", ["Tensor", "NdArray", "Value"])
def test_stub_class_members_match_the_compiled_class(cls_name):
    cls = getattr(_core, cls_name)
    runtime = _runtime_members(cls) - IMPLICIT
    stub = _stub_members(cls_name) - IMPLICIT
    if "__eq__" in stub:
        runtime -= RICH_COMPARISONS
    # Defining __setitem__ fills CPython's mapping-assignment slot, which exposes __delitem__
    # too (it raises: items cannot be deleted).
    if "__setitem__" in stub:
        runtime -= {"__delitem__"}
    # Reflected and in-place slots may be folded into one C slot; compare what Python sees.
    missing_in_stub = {n for n in runtime if n not in stub}
    missing_at_runtime = {n for n in stub if not hasattr(cls, n)}
    assert not missing_in_stub, f"{cls_name}: in the module but not the stub: {missing_in_stub}"
    assert not missing_at_runtime, (
        f"{cls_name}: in the stub but not the module: {missing_at_runtime}"
    )


@pytest.mark.parametrize("name", ["zeros", "ones", "randn", "rand", "arange", "eye", "full", "cat"])
def test_stub_function_parameters_match_the_compiled_signature(name):
    fn = {n.name: n for n in _stub_tree().body if isinstance(n, ast.FunctionDef)}[name]
    stub_params = [a.arg for a in fn.args.args + fn.args.kwonlyargs]
    if fn.args.vararg:
        stub_params.insert(0, "*" + fn.args.vararg.arg)
    runtime = inspect.signature(getattr(_core, name))
    runtime_params = [
        ("*" + p.name) if p.kind is p.VAR_POSITIONAL else p.name
        for p in runtime.parameters.values()
    ]
    assert sorted(stub_params) == sorted(runtime_params)


def test_stubtest_finds_no_difference_between_the_stub_and_the_compiled_module():
    """mypy's stubtest imports the compiled module and compares every class, method,
    property and function of the stub with it: names, parameter names, kinds (positional-only,
    keyword, ``*args``) and defaults, wherever the module exposes a signature. Differences
    that are meant to be there are listed in stubtest_allowlist.txt."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    # The compiled module under test (installed, or on PYTHONPATH) against the source stub
    # (pyproject's mypy_path = "python").
    package_parent = str(Path(ferrograd.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.pop("MYPYPATH", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "ferrograd._core",
            "--mypy-config-file",
            str(root / "pyproject.toml"),
            "--allowlist",
            str(Path(__file__).with_name("stubtest_allowlist.txt")),
            "--concise",
        ],
        check=False,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"the stub and the compiled module differ:\n{result.stdout}\n{result.stderr}"
    )
