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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from core.childenv import child_env
from core.errors import InputError, MigratorError, SourceError
from core.plan import Plan, PlannedVM
from core.wait import wait_until
from migrator.convert.gate import check_not_blocked
from migrator.convert.guest import skip_by_default
from migrator.cutover.drift import plan_drift
from migrator.cutover.pipeline import Step, StepResult
from migrator.cutover.ports import ClusterAccess, CutoverSource, CutoverTarget, Verification
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
    skip_conversion: bool | None = None  # True: virtio-ready guest, no virt-v2v; None: $MIGRATOR_SKIP_CONVERSION
    # rollback: seconds the target gets to shut down cleanly before it is destroyed (announced)
    stop_grace: float = 30.0


@dataclass
class CutoverContext:
    plan: Plan
    planned: PlannedVM
    source: CutoverSource
    target: CutoverTarget
    store: StateStore
    options: CutoverOptions
    announce: Callable[[str], None] = lambda _line: None
    cluster_access: ClusterAccess | None = None  # a cluster target's kubeconfig and context, recorded by ``begin``

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
    def reached() -> bool:
        return ctx.source.power_state(ctx.planned.source_name) == state

    return bool(wait_until(reached, timeout=timeout, interval=ctx.options.poll_interval))


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


def convert_guest(ctx: CutoverContext) -> StepResult:
    skip = ctx.options.skip_conversion
    detail = ctx.target.convert_guest(ctx.plan, ctx.planned, skip=skip_by_default() if skip is None else skip)
    ctx.store.set_fact(ctx.key, "guest", detail)
    return StepResult(detail=detail)


def should_run(ctx: CutoverContext) -> bool:
    """Whether the target is started: always, or when the source was running before the cutover."""
    if ctx.options.start_policy == "always":
        return True
    return ctx.store.fact(ctx.key, "source_power_state") == POWERED_ON


def start_target(ctx: CutoverContext) -> StepResult:
    run = should_run(ctx)
    ctx.target.start(ctx.plan, ctx.planned, run=run)
    return StepResult(detail="started" if run else "created Halted: the source was not running")


def verify(ctx: CutoverContext) -> StepResult:
    if not should_run(ctx):
        return StepResult(detail="not started, nothing to verify")
    # One deadline for Running and the guest checks together: --verify-timeout bounds the whole step.
    timeout = ctx.options.verification.timeout
    deadline = time.monotonic() + timeout
    ctx.target.wait_running(ctx.planned, timeout)
    if ctx.store.fact(ctx.key, "target_running_at") is None:
        ctx.store.set_fact(ctx.key, "target_running_at", time.time())
    remaining = max(deadline - time.monotonic(), 0.001)
    ctx.target.verify(ctx.planned, replace(ctx.options.verification, timeout=remaining))
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
    note = ctx.store.fact(ctx.key, "source_note")
    if note is None:  # recorded once, with the note as it was, so a rollback can put it back
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        note = f"Migrated by migrator to {ctx.target.description} as {ctx.planned.target_name} on {when}."
        ctx.store.set_fact(ctx.key, "source_annotation_before", ctx.source.annotation(name))
        ctx.store.set_fact(ctx.key, "source_note", note)
    ctx.source.mark_migrated(name, note)
    if ctx.source.power_state(name) != POWERED_OFF:  # two running copies must never exist
        ctx.source.power_off(name)
    return StepResult(detail=note)


CUTOVER_STEPS: tuple[Step[CutoverContext], ...] = (
    Step("preflight", preflight, "check the plan against the live source and the target"),
    Step("pre-hook", pre_hook, "run the pre-cutover hook"),
    Step("source-off", source_off, "record the power state, shut the source down", touches_source=True),
    Step("transfer", transfer, "final copy of every disk", touches_source=True),
    Step("convert-guest", convert_guest, "make the guest OS run on virtio (virt-v2v)", touches_source=True),
    Step("start", start_target, "create the VirtualMachine and start it", touches_source=True),
    Step("verify", verify, "wait for Running and check the guest", touches_source=True),
    Step("mark-source", mark_source, "mark the source as migrated, leave it off", touches_source=True),
    Step("post-hook", post_hook, "run the post-cutover hook", touches_source=True),
)


class TargetNotStopped(MigratorError):
    """The target could not be confirmed stopped: the source stays off (two copies must never run)."""

    exit_code = 4


def rollback(ctx: CutoverContext) -> list[str]:
    """Stop the target, then put the source back as it was. Idempotent; returns what it did.

    The source is powered back on only once the target is confirmed stopped; otherwise the
    source is left off and ``TargetNotStopped`` says so (the two copies would share an identity,
    and a guest writing to the same data twice is the one failure a rollback must not cause).
    """
    name, target_name = ctx.planned.source_name, ctx.planned.target_name
    grace = ctx.options.stop_grace
    ctx.announce(f"rollback: stopping target {target_name}: clean shutdown, destroyed after {grace:.0f}s if still up")
    stopped = ctx.target.stop(ctx.planned, grace)
    if not stopped.confirmed:
        ctx.store.set_fact(ctx.key, "target_not_confirmed_stopped", True)
        log.warning("rollback of %s: %s", ctx.key, stopped.detail)
        raise TargetNotStopped(
            f"rollback of {ctx.key} stopped: {stopped.detail}; the target is not confirmed stopped, so the source "
            f"{name} is left {ctx.source.power_state(name)}"
        )
    ctx.store.set_fact(ctx.key, "target_not_confirmed_stopped", None)
    done = [stopped.detail]
    note = ctx.store.fact(ctx.key, "source_note")
    if note is not None:
        before = ctx.store.fact(ctx.key, "source_annotation_before") or ""
        if ctx.source.unmark_migrated(name, note, before):
            done.append(f"source {name}: note restored as it was before the cutover")
    recorded = ctx.store.fact(ctx.key, "source_power_state")
    if recorded == POWERED_ON:
        if ctx.source.power_state(name) == POWERED_ON:
            done.append(f"source {name} was already powered on")
        else:
            ctx.source.power_on(name)
            done.append(f"source {name} powered back on (it was {recorded} before the cutover)")
        off, back = (ctx.store.fact(ctx.key, fact) for fact in ("source_off_at", "source_back_on_at"))
        if off is not None and back is None:
            ctx.store.set_fact(ctx.key, "source_back_on_at", time.time())  # the downtime ends here
    else:
        done.append(f"source {name} left {ctx.source.power_state(name)} (it was {recorded or 'not touched'})")
    return done
