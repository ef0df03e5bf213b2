"""kubectl-grade conventions of the real CLI (subprocesses): help, completion, version, env defaults,
one VM per --vm, exit codes for a missing kubeconfig and an unreachable cluster, before any byte moves."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.convert.helpers import make_vmdk, write_vmx

MIGRATOR = Path(sys.executable).parent / "migrator"
# every command a user can run, as the words they type
COMMANDS = [
    ["plan"],
    ["report"],
    ["convert"],
    ["cutover"],
    ["status"],
    ["version"],
    ["completion"],
    ["runtime"],
    ["runtime", "run"],
    ["runtime", "console"],
    ["runtime", "stop"],
    ["runtime", "list"],
    ["runtime", "status"],
    ["runtime", "install"],
    ["runtime", "uninstall"],
    ["runtime", "vm"],
    *[["runtime", "vm", action] for action in ("start", "stop", "restart", "pause", "unpause")],
]


def migrator(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_") and k != "KUBECONFIG"}
    return subprocess.run(
        [str(MIGRATOR), *args], capture_output=True, text=True, env={**base, **(env or {})}, cwd=cwd, timeout=120
    )


def test_bare_migrator_prints_help_and_exits_0() -> None:
    result = migrator()
    assert result.returncode == 0, result.stderr
    assert "Usage: migrator" in result.stdout and "Commands:" in result.stdout and result.stderr == ""


def test_completion_bash_zsh_fish_print_scripts() -> None:
    bash = migrator("completion", "bash")
    assert bash.returncode == 0 and "_MIGRATOR_COMPLETE=bash_complete" in bash.stdout
    assert "complete -o nosort -F _migrator_completion migrator" in bash.stdout
    assert "compdef" in migrator("completion", "zsh").stdout
    assert "complete --no-files --command migrator" in migrator("completion", "fish").stdout
    bad = migrator("completion", "tcsh")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    missing = migrator("completion")  # click words this one over several lines ("Choose from:\n\tbash,\n...")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert missing.stderr.startswith("error: Missing argument") and "bash, zsh, fish" in missing.stderr


def test_vm_names_complete_from_the_plan(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(
        "vms:\n  - {source_name: DC0_H0_VM0, target_name: dc0-h0-vm0}\n  - {source_name: web01, target_name: web01}\n"
    )
    env = {"_MIGRATOR_COMPLETE": "bash_complete", "COMP_WORDS": "migrator cutover --vm ", "COMP_CWORD": "3"}
    result = migrator(env=env, cwd=tmp_path)  # ./plan.yaml, as `migrator plan` writes it
    assert result.stdout.split() == ["plain,DC0_H0_VM0", "plain,dc0-h0-vm0", "plain,web01"]
    elsewhere = tmp_path / "elsewhere.yaml"
    (tmp_path / "plan.yaml").rename(elsewhere)
    env.update(COMP_WORDS=f"migrator convert --plan {elsewhere} --vm w", COMP_CWORD="5")
    assert migrator(env=env, cwd=tmp_path).stdout.split() == ["plain,web01"]


def test_version_json() -> None:
    result = migrator("version", "-o", "json")
    assert result.returncode == 0
    info = json.loads(result.stdout)
    assert info["migrator"] == "0.1.0" and "python" in info
    assert migrator("version").stdout.strip() == "migrator 0.1.0"


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w) for w in COMMANDS])
def test_every_command_has_examples_and_every_option_has_help(words: list[str]) -> None:
    result = migrator(*words, "--help")
    assert result.returncode == 0, result.stderr
    assert "Examples:" in result.stdout
    options = result.stdout.split("Options:", 1)[1].split("Examples:", 1)[0].split("Commands:", 1)[0]
    for line in options.splitlines():
        stripped = line.strip()
        if stripped.startswith("-"):
            # an option without help is its flags alone on its line (click puts help on the same line or the next)
            index = options.splitlines().index(line)
            following = options.splitlines()[index + 1 : index + 2]
            has_help = "  " in stripped or (following and not following[0].strip().startswith("-"))
            assert has_help, f"{' '.join(words)}: {stripped} has no help"


def test_cluster_commands_take_kubectl_flags() -> None:
    cluster_commands = [["convert"], ["cutover"], ["runtime", "install"], ["runtime", "uninstall"]]
    for words in [*cluster_commands, ["runtime", "vm", "start"]]:
        text = migrator(*words, "--help").stdout
        assert all(flag in text for flag in ("-n, --namespace", "--context", "--kubeconfig")), words


def test_read_commands_take_output_and_no_headers() -> None:
    for words in (["status"], ["runtime", "list"], ["runtime", "status"], ["plan"]):
        text = migrator(*words, "--help").stdout
        assert "table|wide|json|yaml|name" in text and "--no-headers" in text, words


@pytest.mark.parametrize("command", ["convert", "cutover"])
def test_a_repeated_vm_is_refused_never_dropped(command: str, tmp_path: Path) -> None:
    result = migrator(command, "--vm", "web01", "--vm", "db01", "--source", "vmx:/nowhere.vmx", "--output-dir", "o")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--vm" in result.stderr and "web01, db01" in result.stderr


def test_options_take_defaults_from_migrator_env(tmp_path: Path) -> None:
    # MIGRATOR_<COMMAND>_<OPTION>: here `status -o json` from the environment
    result = migrator("status", "--state-dir", str(tmp_path), env={"MIGRATOR_STATUS_OUTPUT": "json"})
    assert result.returncode == 0 and json.loads(result.stdout) == []


def _vmx(tmp_path: Path) -> Path:
    disk = make_vmdk(tmp_path / "web01.vmdk")
    return write_vmx(tmp_path / "web01.vmx", "web01", [disk.name])


def test_convert_apply_checks_the_kubeconfig_before_moving_bytes(tmp_path: Path) -> None:
    vmx = _vmx(tmp_path)
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache), "HOME": str(tmp_path)}
    result = migrator("convert", "--source", f"vmx:{vmx}", "--vm", "web01", "--apply", env=env)
    assert result.returncode == 2, result.stderr
    expected = f"error: no kubeconfig at {tmp_path}/.kube/config: give --kubeconfig FILE or set KUBECONFIG"
    assert result.stderr.strip() == expected
    assert not list(cache.rglob("*.img")), "a disk was copied before the target was checked"


def test_unreachable_cluster_is_one_line_exit_5(tmp_path: Path) -> None:
    vmx = _vmx(tmp_path)
    cache = tmp_path / "cache"
    with socket.socket() as reserved:  # bound, never listening: connections are refused
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: k, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
        )
        args = ["convert", "--source", f"vmx:{vmx}", "--vm", "web01", "--apply", "--kubeconfig", str(kubeconfig)]
        result = migrator(*args, env={"XDG_CACHE_HOME": str(cache)})
        vm_start = migrator("runtime", "vm", "start", "web01", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("\n") == 1 and "WARNING" not in result.stderr and "Retry" not in result.stderr
    assert f"cannot reach the cluster's API server http://127.0.0.1:{port}: Connection refused" in result.stderr
    assert not list(cache.rglob("*.img"))
    assert vm_start.returncode == 5 and vm_start.stderr.count("\n") == 1, vm_start.stderr
    assert f"http://127.0.0.1:{port}" in vm_start.stderr


def test_an_unreachable_vcenter_is_exit_5_and_bad_input_exit_2(tmp_path: Path) -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        source = f"vsphere://someone@127.0.0.1:{port}"
        down = migrator("plan", "--source", source, env={"MIGRATOR_VSPHERE_PASSWORD": "x"})
    assert down.returncode == 5 and down.stderr.startswith(f"error: cannot reach 127.0.0.1:{port}: ")
    bad = migrator("plan", "--source", "nfs://somewhere")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_progress_json_events_are_timestamped_and_name_the_vm(tmp_path: Path) -> None:
    vmx = _vmx(tmp_path)
    out = tmp_path / "out"
    args = ["convert", "--source", f"vmx:{vmx}", "--vm", "web01", "--output-dir", str(out), "--progress", "json"]
    args.append("--skip-conversion")  # a blank disk: no guest OS for virt-v2v
    result = migrator(*args, env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "MIGRATOR_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert events and events[-1]["state"] == "done"
    for event in events:
        assert event["vm"] == "web01" and event["disk"] == "web01-disk-0"
        assert event["time"].endswith("Z") and datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
