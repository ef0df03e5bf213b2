"""core.private, core.childenv, core.confine and the per-VM lock: the helpers every package calls."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from core import private
from core.childenv import child_env
from core.confine import confined, parse_datastore_dirs
from core.errors import InputError
from migrator.cutover.state import StateStore, only_one_run


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_files_and_folders_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        folder = private.private_dir(tmp_path / "a" / "b")
        fd = private.open_fd(folder / "img", os.O_WRONLY | os.O_CREAT)
        os.close(fd)
        shared = tmp_path / "shared.img"
        shared.write_bytes(b"x")
        shared.chmod(0o644)
        os.close(private.open_fd(shared, os.O_RDWR))  # rewritten: narrowed
        private.write_private(tmp_path / "state.json", "{}")
    finally:
        os.umask(old)
    assert _mode(folder) == 0o700 and _mode(folder / "img") == 0o600
    assert _mode(shared) == 0o600 and _mode(tmp_path / "state.json") == 0o600
    existing = tmp_path / "mine"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    private.private_dir(existing)
    assert _mode(existing) == 0o755  # a folder the user made is theirs: left as it is


def test_state_store_is_private(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.begin("vm", plan=None, source=None, target=None)
    store.close()
    assert _mode(tmp_path / "state") == 0o700
    for path in (tmp_path / "state").iterdir():
        assert _mode(path) == 0o600, path


def test_child_env_drops_every_secret() -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "MIGRATOR_VSPHERE_PASSWORD": "s1",
        "GOVC_PASSWORD": "s2",
        "GOVC_URL": "https://u:s3@vc",
        "AWS_SECRET_ACCESS_KEY": "s4",
        "GITHUB_TOKEN": "s5",
        "MIGRATOR_STATE_DIR": "/x",
    }
    env = child_env(base, MIGRATOR_VM="web")
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "MIGRATOR_STATE_DIR": "/x", "MIGRATOR_VM": "web"}


def test_confined_paths(tmp_path: Path) -> None:
    vm = tmp_path / "vm"
    (vm / "sub").mkdir(parents=True)
    (vm / "sub" / "d.vmdk").write_text("x")
    assert confined(vm, "sub/d.vmdk", "disk") == (vm / "sub" / "d.vmdk").resolve()
    assert confined(vm, str(vm / "sub" / "d.vmdk"), "disk") == (vm / "sub" / "d.vmdk").resolve()
    (vm / "out").symlink_to(tmp_path)
    for name in ("/etc/passwd", "../x", "out/x", "sub/../../x", ".", ""):
        with pytest.raises(InputError, match="outside"):
            confined(vm, name, "disk")
    with pytest.raises(InputError, match="--datastore-dir ds1=DIR"):
        confined(vm, "/vmfs/volumes/ds1/vm/d.vmdk", "disk")
    mapped = parse_datastore_dirs([f"ds1={vm}"])
    assert confined(vm, "/vmfs/volumes/ds1/sub/d.vmdk", "disk", mapped) == (vm / "sub" / "d.vmdk").resolve()
    with pytest.raises(InputError, match="outside"):
        confined(vm, "/vmfs/volumes/ds1/../x", "disk", mapped)
    for flag in ("ds1", "=x", f"ds1={tmp_path / 'none'}"):
        with pytest.raises(InputError):
            parse_datastore_dirs([flag])


def test_only_one_run_is_reentrant_here_and_exclusive_across_processes(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from migrator.cutover.state import only_one_run\n"
            f"with only_one_run(Path({str(tmp_path)!r}), 'web'):\n"
            "    print('held', flush=True); time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="another convert or cutover of web is running"):
            with only_one_run(tmp_path, "web"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with only_one_run(tmp_path, "web"):
        with only_one_run(tmp_path, "web"):  # a cutover running its own convert
            pass
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "from pathlib import Path; from migrator.cutover.state import only_one_run\n"
                f"with only_one_run(Path({str(tmp_path)!r}), 'web'): pass\n",
            ],
            capture_output=True,
            text=True,
        )
        assert other.returncode != 0 and "another convert or cutover of web" in other.stderr
