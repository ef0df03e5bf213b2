"""The cutover of one VM as a pipeline of idempotent steps (``CUTOVER_STEPS`` is data).

Every step checks the live state before acting, so re-running a step that was under way
when the process died is safe: a VM already off is not powered off again, a target
already started is not started twice, a source already powered back on is left alone.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.childenv import child_env
from core.errors import InputError, MigratorError, SourceError, TargetError
from core.plan import Plan, PlannedVM
from migrator.convert.gate import check_not_blocked
from migrator.cutover.drift import plan_drift
from migrator.cutover.pipeline import Step, StepResult
from migrator.cutover.ports import CutoverSource, CutoverTarget, Verification
from migrator.cutover.state import StateStore

log = logging.getLogger(__name__)

POWERED_ON = "poweredOn"
POWERED_OFF = "poweredOff"


@dataclass(frozen=True)
class CutoverOptions:
    shutdown_timeout: float = 300.0  # guest shutdown through VMware Tools, then a hard power-off
    start_policy: str = "always"  # always | source (start only if the source was running)
    verification: Verification = field(default_factory=Verification)
    pre_hook: str | None = None  # a shell command run before the source is touched
    post_hook: str | None = None
    poll_interval: float = 1.0
    force: tuple[str, ...] = ()  # Critical concern ids the user overrides (as `convert --force`)


@dataclass
class CutoverContext:
    plan: Plan
    planned: PlannedVM
    source: CutoverSource
    target: CutoverTarget
    store: StateStore
    options: CutoverOptions
    announce: Callable[[str], None] = lambda _line: None

    @property
    def key(self) -> str:
        """The migration's key in the state store: the source VM's name."""
        return self.planned.source_name


def preflight(ctx: CutoverContext) -> StepResult:
    live = ctx.source.vm_inventory(ctx.planned.source_name)
    changes = plan_drift(ctx.planned.vm, live)
    if changes:
        raise MigratorError(
            f"the source VM changed since the plan was made ({'; '.join(changes)}): run `migrator plan` again"
        )
    forced = check_not_blocked(ctx.planned, ctx.options.force)
    if forced:
        ctx.announce(f"preflight: cutover despite Critical concerns: {', '.join(forced)}")
    if ctx.options.start_policy not in ("always", "source"):
        raise InputError(f"unknown start policy {ctx.options.start_policy!r}: expected always or source")
    ctx.target.check_verification(ctx.options.verification)
    ctx.target.preflight(ctx.plan, ctx.planned)
    return StepResult(detail=f"source unchanged, target {ctx.target.description} ready")


def _run_hook(ctx: CutoverContext, command: str | None, which: str) -> StepResult:
    if not command:
        return StepResult(detail="no hook")
    env = child_env(  # hooks never see the source's credentials
        MIGRATOR_VM=ctx.planned.source_name,
        MIGRATOR_TARGET_NAME=ctx.planned.target_name,
        MIGRATOR_TARGET=ctx.target.description,
        MIGRATOR_HOOK=which,
    )
    result = subprocess.run(shlex.split(command), env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        raise MigratorError(f"{which} hook exited {result.returncode}: {tail[0]}")
    return StepResult(detail=f"{which} hook ok")


def pre_hook(ctx: CutoverContext) -> StepResult:
    return _run_hook(ctx, ctx.options.pre_hook, "pre")


def post_hook(ctx: CutoverContext) -> StepResult:
    return _run_hook(ctx, ctx.options.post_hook, "post")


def _wait_for_power(ctx: CutoverContext, state: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if ctx.source.power_state(ctx.planned.source_name) == state:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(ctx.options.poll_interval)


def source_off(ctx: CutoverContext) -> StepResult:
    name = ctx.planned.source_name
    # Recorded once, before anything is touched: a re-run must not mistake "off by us" for "was off".
    if ctx.store.fact(ctx.key, "source_power_state") is None:
        ctx.store.set_fact(ctx.key, "source_power_state", ctx.source.power_state(name))
    how = "already off"
    if ctx.source.power_state(name) != POWERED_OFF:
        how = "guest shutdown"
        try:
            ctx.announce(
                f"source-off: asking the guest to shut down (power-off after {ctx.options.shutdown_timeout:.0f}s)"
            )
            ctx.source.shutdown_guest(name, ctx.options.shutdown_timeout)
            off = _wait_for_power(ctx, POWERED_OFF, ctx.options.poll_interval)
        except SourceError as refused:
            # Tools not running (nothing to wait for) or the guest did not stop in time: hard power-off.
            ctx.announce(f"source-off: {refused.message}; powering off")
            off = False
        if not off:
            how = "power-off after the guest did not shut down"
            ctx.source.power_off(name)
            if not _wait_for_power(ctx, POWERED_OFF, 120):
                raise SourceError(f"VM {name} is still not powered off")
    if ctx.store.fact(ctx.key, "source_off_at") is None:
        ctx.store.set_fact(ctx.key, "source_off_at", time.time())
    return StepResult(detail=how)


def transfer(ctx: CutoverContext) -> StepResult:
    # The first attempt copies everything again (cold migration, no changed-block tracking): what
    # an earlier `convert` copied was read while the source ran. A re-run after a crash in this
    # step resumes instead, since whatever was copied since then was read from the stopped source.
    if ctx.store.fact(ctx.key, "final_transfer_from") is None:
        discarded = ctx.target.forget_earlier_copies(ctx.plan, ctx.planned)
        if discarded:
            ctx.announce(f"transfer: earlier copies of {', '.join(discarded)} discarded (made while the source ran)")
        ctx.store.set_fact(ctx.key, "final_transfer_from", time.time())
    moved = ctx.target.transfer(ctx.plan, ctx.planned)
    return StepResult(bytes_moved=moved, detail=f"{len(ctx.planned.disks)} disk(s), full copy")


def _should_run(ctx: CutoverContext) -> bool:
    if ctx.options.start_policy == "always":
        return True
    return ctx.store.fact(ctx.key, "source_power_state") == POWERED_ON


def start_target(ctx: CutoverContext) -> StepResult:
    run = _should_run(ctx)
    ctx.target.start(ctx.plan, ctx.planned, run=run)
    return StepResult(detail="started" if run else "created Halted: the source was not running")


def verify(ctx: CutoverContext) -> StepResult:
    if not _should_run(ctx):
        return StepResult(detail="not started, nothing to verify")
    ctx.target.wait_running(ctx.planned, ctx.options.verification.timeout)
    if ctx.store.fact(ctx.key, "target_running_at") is None:
        ctx.store.set_fact(ctx.key, "target_running_at", time.time())
    ctx.target.verify(ctx.planned, ctx.options.verification)
    if ctx.store.fact(ctx.key, "target_verified_at") is None:
        ctx.store.set_fact(ctx.key, "target_verified_at", time.time())
    checks = [
        c
        for c, on in (
            ("console marker", ctx.options.verification.marker),
            ("tcp port", ctx.options.verification.tcp_port),
        )
        if on
    ]
    return StepResult(detail="Running" + (f", {', '.join(checks)} ok" if checks else ""))


def mark_source(ctx: CutoverContext) -> StepResult:
    name = ctx.planned.source_name
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    note = f"Migrated by migrator to {ctx.target.description} as {ctx.planned.target_name} on {when}."
    ctx.source.mark_migrated(name, note)
    if ctx.source.power_state(name) != POWERED_OFF:  # two running copies must never exist
        ctx.source.power_off(name)
    return StepResult(detail=note)


CUTOVER_STEPS: tuple[Step[CutoverContext], ...] = (
    Step("preflight", preflight, "check the plan against the live source and the target"),
    Step("pre-hook", pre_hook, "run the pre-cutover hook"),
    Step("source-off", source_off, "record the power state, shut the source down", touches_source=True),
    Step("transfer", transfer, "final copy of every disk", touches_source=True),
    Step("start", start_target, "create the VirtualMachine and start it", touches_source=True),
    Step("verify", verify, "wait for Running and check the guest", touches_source=True),
    Step("mark-source", mark_source, "mark the source as migrated, leave it off", touches_source=True),
    Step("post-hook", post_hook, "run the post-cutover hook", touches_source=True),
)


def rollback(ctx: CutoverContext) -> list[str]:
    """Stop the target and put the source back as it was. Idempotent; returns what it did."""
    done: list[str] = []
    try:
        done.append(ctx.target.stop(ctx.planned))
    except TargetError as error:
        done.append(f"target {ctx.planned.target_name} could not be stopped: {error.message}")
    recorded = ctx.store.fact(ctx.key, "source_power_state")
    name = ctx.planned.source_name
    if recorded == POWERED_ON:
        if ctx.source.power_state(name) == POWERED_ON:
            done.append(f"source {name} was already powered on")
        else:
            ctx.source.power_on(name)
            done.append(f"source {name} powered back on (it was {recorded} before the cutover)")
    else:
        done.append(f"source {name} left {ctx.source.power_state(name)} (it was {recorded or 'not touched'})")
    return done
