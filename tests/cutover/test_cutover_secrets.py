"""After a cutover to the local target, no child holds the password and no file is readable by others (issue 12).

The Acceptance, through the real CLI on the simulator and the real launcher booting the tiny
guest: the launcher's ``/proc/PID/environ`` holds no password, nor does the hooks' environment;
images, state (``migrations.db``), launcher logs and convert records are ``0600``, the folders
we created ``0700``; and no file written anywhere contains the password.
"""

from __future__ import annotations

import stat
from pathlib import Path

from migrator import simulator
from tests.cutover.test_cutover_e2e import MARKER, _run, guest_vmdk, no_qemu_left  # noqa: F401  (fixtures)

ENV = "MIGRATOR_VSPHERE_PASSWORD"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cutover_leaves_no_password_in_children_and_no_file_open_to_others(
    fresh_vcsim: simulator.Simulator,
    tmp_path: Path,
    guest_vmdk: list[Path],  # noqa: F811
    no_qemu_left: None,  # noqa: F811
) -> None:
    hook_env = tmp_path / "hook-env"
    for run in _run(fresh_vcsim, tmp_path, "DC0_H0_VM0", guest_vmdk, "00:50:56:2a:7c:51"):
        # a secret of another tool in our environment must not reach children either
        done = run.cutover(
            "--verify-marker", MARKER, "--pre-hook", f"sh -c 'env > {hook_env}'", GOVC_PASSWORD="govc-secret-51"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        password = run.sim.password.encode()

        pid = run.launcher_pid()
        assert pid is not None
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not any(v.startswith((ENV.encode() + b"=", b"GOVC_PASSWORD=")) for v in environ)
        assert password not in b"\0".join(environ) and b"govc-secret-51" not in b"\0".join(environ)
        hook = hook_env.read_bytes()
        assert b"MIGRATOR_VM=DC0_H0_VM0" in hook  # the hook really ran, with its own variables
        assert password not in hook and b"govc-secret-51" not in hook

        image = run.out / "dc0-h0-vm0-disk-0.img"
        state = run.base / "state"
        vm_state = run.runtime_dir / run.target
        private_files = [
            image,
            state / "migrations.db",
            *state.glob("migrations.db-*"),
            state / f"{run.vm}.lock",
            vm_state / "launcher.log",
            *(run.out / ".migrator").glob("*.json"),
            *run.out.glob(".*.transfer*"),  # the disk engine's records
        ]
        for path in private_files:
            assert _mode(path) == 0o600, (path, oct(_mode(path)))
        for folder in (run.out, state, vm_state, run.out / ".migrator"):
            assert _mode(folder) == 0o700, (folder, oct(_mode(folder)))
        console = vm_state / "console.log"
        assert _mode(console) & 0o007 == 0, oct(_mode(console))  # written by virtlogd

        written = [p for d in (run.out, state, run.runtime_dir) for p in d.rglob("*") if p.is_file()]
        assert written and not [p for p in written if password in p.read_bytes()]
