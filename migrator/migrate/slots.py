"""Who holds an in-flight slot of a `migrate` run, and the warm VMs asking for one back.

A cold VM holds its slot from its start to its end. A warm VM holds it while it copies (a precopy
round), and from its cutover to its end; between rounds it gives it back, so that twenty warm VMs
waiting an hour for their next round do not keep the rest of the estate from moving. The
coordinator hands slots out (``scheduler.startable``, which also counts disks per ESXi host): to
the warm VMs asking for one back first (their next round is due, or their cutover), then to the
VMs not started yet. ``SlotPacing`` is a warm VM's side of it (``migrator.cutover.warm.Pacing``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import MigratorError
from migrator.cutover.precopy import Round
from migrator.migrate.progress import RoundEvent, View
from migrator.migrate.scheduler import Waiting

POLL = 0.25  # seconds between looks for a stop while a VM waits for its slot


@dataclass
class _Ask:
    need: Waiting
    granted: threading.Event = field(default_factory=threading.Event)


class Slots:
    """Thread-safe: the workers ask and give back, the coordinator takes and grants."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._asks: dict[str, _Ask] = {}

    def take(self, vm: str) -> None:
        """The coordinator starts ``vm``: it holds a slot from now on."""
        with self._lock:
            self._held.add(vm)

    def give_back(self, vm: str) -> None:
        with self._lock:
            self._held.discard(vm)

    def holders(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def asking(self) -> list[Waiting]:
        """The VMs waiting for a slot back, in the order they asked."""
        with self._lock:
            return [ask.need for ask in self._asks.values()]

    def grant(self, vm: str) -> None:
        with self._lock:
            ask = self._asks.pop(vm, None)
            if ask is None:
                return
            self._held.add(vm)
        ask.granted.set()

    def wait_for(self, need: Waiting, check: Callable[[], None], poll: float = POLL) -> None:
        """Return once ``need.vm`` holds a slot (at once if it still does); ``check`` may raise to stop waiting."""
        with self._lock:
            if need.vm in self._held:
                return
            ask = self._asks.setdefault(need.vm, _Ask(need))
        try:
            while not ask.granted.wait(poll):
                check()
        except BaseException:
            with self._lock:
                self._asks.pop(need.vm, None)
                granted = ask.granted.is_set()
            if granted:  # granted as it stopped: not kept from the others
                self.give_back(need.vm)
            raise


class WindowClosed(MigratorError):
    """The wave's cutover window ended before the warm VM's cutover began: it is not begun outside it."""


class SlotPacing:
    """A warm VM of a `migrate` run: a round copies under a slot of the run; between rounds it holds none.

    ``closed`` says why the VM may no longer begin its cutover (its wave's window has ended), if so: checked
    while it precopies and waits, never once its cutover has its slot (a cutover under way is finished)."""

    def __init__(
        self,
        need: Waiting,
        slots: Slots,
        check: Callable[[], None],
        view: View,
        closed: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.need, self.slots, self.view, self.closed = need, slots, view, closed
        self.stop_check = check
        self._idle_after: int | None = None  # the round after which the slot was given back

    def check(self) -> None:
        self.stop_check()
        reason = self.closed()
        if reason is not None:
            raise WindowClosed(f"{reason} before the cutover of {self.need.vm} began: run it again in a window")

    def copy(self, number: int | None) -> None:
        self.check()
        self.slots.wait_for(self.need, self.check)
        self._idle_after = None
        self.view.round(RoundEvent(self.need.vm, number, "cutover" if number is None else "started"))

    def idle(self, done: Round, next_at: float) -> None:
        self.check()  # a cancel, or the run interrupted, while the VM waits for its next round
        if self._idle_after == done.number:
            return
        self._idle_after = done.number
        self.slots.give_back(self.need.vm)
        seconds = None if done.finished_at is None else done.finished_at - done.started_at
        self.view.round(RoundEvent(self.need.vm, done.number, "done", done.bytes, seconds, next_at))
