"""Plans and map files are parsed within bounds: no YAML aliases, capped sizes (issue 12).

An alias bomb (a few hundred bytes expanding to billions of nodes) used to take a minute and
gigabytes before an internal error; now it is one line in milliseconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from core.errors import InputError
from core.untrusted import PLAN_MAX_BYTES, load_yaml
from migrator.planning.mapping import load_map_file
from migrator.planning.planfile import read_plan
from tests.convert.helpers import MIGRATOR, PROJECT

LEVELS = 12  # 9 ** 12 ≈ 2.8e11 strings once expanded


def alias_bomb(field: str = "name") -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, LEVELS):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    body = "\n".join(f"  {line}" for line in lines)
    return f"apiVersion: migrator/v1alpha1\nkind: Plan\nbomb:\n{body}\n{field}: *a{LEVELS - 1}\n"


def _measured(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run the real CLI in a child of a fresh interpreter: (result, its CPU seconds, its peak RSS in bytes).

    CPU time, not wall-clock time, is what the CLI itself spends: other work on a shared machine
    only delays it."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)\n"
        "s = time.monotonic() - t\n"
        "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps([r.returncode, r.stdout, r.stderr, s, use.ru_utime + use.ru_stime, use.ru_maxrss * 1024]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=PROJECT, check=True)
    code, out, err, seconds, cpu, rss = json.loads(done.stdout)
    assert seconds < 20, seconds  # wall-clock: loose, the machine is shared (the bomb used to take a minute)
    return subprocess.CompletedProcess(args, code, out, err), cpu, rss


def test_plan_with_alias_bomb_is_refused_fast_and_small(tmp_path: Path) -> None:
    """The Acceptance: `migrator convert --plan BOMB` exits 2 within 2 s, under 200 MB."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(alias_bomb())
    result, cpu_seconds, rss = _measured(
        [str(MIGRATOR), "convert", "--plan", str(plan), "--vm", "x", "--output-dir", str(tmp_path / "out")]
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "are not allowed" in lines[0], result.stderr
    assert cpu_seconds < 2.0, cpu_seconds
    assert rss < 200 * 10**6, rss


def test_map_file_with_alias_bomb_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "map.yaml"
    bomb.write_text(alias_bomb("networks").replace("apiVersion: migrator/v1alpha1\nkind: Plan\n", ""))
    with pytest.raises(InputError, match="anchors are not allowed"):
        load_map_file(str(bomb))
    result, cpu_seconds, rss = _measured(
        [str(MIGRATOR), "plan", "--source", "ovf:/nonexistent.ovf", "--map", str(bomb), "--output-file", "-"]
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "map file" in result.stderr and cpu_seconds < 2.0 and rss < 200 * 10**6


def test_a_lone_alias_or_anchor_is_refused_and_plain_yaml_loads() -> None:
    for text in ("a: &x 1\nb: 2\n", "a: 1\nb: *x\n", "- &x [1]\n- 2\n", "a: !!str &x v\n"):
        with pytest.raises(yaml.YAMLError):
            load_yaml(text)
    # '&' and '*' inside values are text, not anchors or aliases
    assert load_yaml('hook: "sync && echo *done*"\nglob: "web-*"\n') == {"hook": "sync && echo *done*", "glob": "web-*"}
    assert load_yaml("a: [1, {b: c}]\n") == {"a": [1, {"b": "c"}]}


def test_oversized_plan_is_refused_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "plan.yaml"
    with huge.open("wb") as handle:  # sparse: costs no disk
        handle.truncate(PLAN_MAX_BYTES + 1)
    started = time.monotonic()
    with pytest.raises(InputError, match="larger than"):
        read_plan(huge)
    assert time.monotonic() - started < 1.0
