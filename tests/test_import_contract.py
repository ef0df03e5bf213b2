"""The import contract (pyproject.toml, run by `make lint`): the real tree keeps it, a forbidden import breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "migrator", "converters", "runtime", "testbed")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The project's packages and contract, copied: the test breaks the copy, never the tree."""
    for package in PACKAGES:
        shutil.copytree(PROJECT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_the_contract() -> None:
    result = lint_imports(PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("converters/specs/leak.py", "from migrator.convert import run", "converters import only core"),
        ("converters/disks/leak.py", "import runtime.launcher", "converters import only core"),
        ("runtime/domain/leak.py", "from converters.specs import dump", "runtime imports only core"),
        ("runtime/controller/leak.py", "import migrator.cli", "runtime imports only core"),
        ("core/leak.py", "import converters.disks", "core imports none"),
        ("migrator/convert/leak.py", "import testbed.guestimage", "the product never imports the test bed"),
        ("migrator/cli/leak.py", "from migrator import simulator", "production paths never import the simulator"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(tree_copy: Path, module: str, forbidden: str, contract: str) -> None:
    (tree_copy / module).write_text(f'"""A forbidden import."""\n\n{forbidden}\n')
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert any(line.startswith(contract) for line in broken), result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout
