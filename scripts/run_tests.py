"""`make test`: the suite as two pytest processes side by side, to fit its time budget on two cores.

tests/guest (virt-v2v converting the Debian guest under TCG, and booting it: about nine minutes, mostly one
core) runs in a second process beside the rest of the suite, which mostly waits on guests, simulators and
child processes. Its output goes to build/test-guest.log and is printed once the rest has finished.

Each process exits with pytest's code; so does this script, with the first non-zero one. Ctrl-C reaches both
(the terminal signals the whole process group): each pytest tears its fixtures down, and this waits for them.
Options (not paths) are passed to both pytest runs, e.g. ``-x`` or ``-k expr``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GUEST = "tests/guest"


def main(argv: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", *argv]
    log_path = Path("build/test-guest.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        guest = subprocess.Popen([*pytest, GUEST], stdout=log, stderr=subprocess.STDOUT)
        rest = subprocess.Popen([*pytest, "tests", f"--ignore={GUEST}"])
        codes: list[int] = []
        for process in (rest, guest):
            while True:
                try:
                    codes.append(process.wait())
                    break
                except KeyboardInterrupt:
                    continue  # the children got the same SIGINT: wait for their teardown
    print(f"\n---- {GUEST} (run beside the rest; its log: {log_path}) ----", flush=True)
    print(log_path.read_text(errors="replace"), end="", flush=True)
    # pytest's 5 is "no tests collected": a -k that selects nothing in one half is not a failure
    failed = [code for code in codes if code not in (0, 5)]
    if failed:
        return failed[0]
    return 5 if codes == [5, 5] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
