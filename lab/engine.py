"""The engine: run a phase's plan over SSH, wait for readiness, check, checkpoint.

Phases only describe (lab/phases/); providers only make nodes
(lab/providers/); this module is where they meet. Progress is kept in
build/<lab>/state.json so that `inv lab.up` resumes after the last phase that
passed and `inv phase NAME` can roll back to the checkpoint before NAME.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Protocol

from rich.console import Console

from lab.errors import LabError, UnknownName
from lab.output import make_console
from lab.phases import PHASES, phase_module
from lab.phases.context import STAGING, PhaseContext
from lab.plan import ABSENT, Check, CheckResult, Step
from lab.providers.base import Provider
from lab.remote import CommandResult, Remote
from lab.state import KIT, RESET, TRAINEE, LabState, PhaseRecord, utc_now
from lab.transcripts import save as save_transcript

FIRST_CHECKPOINT = "after-nodes"
STDERR_TAIL = 5
# Between tries of a readiness step or a settling check. A try is one SSH command (tens
# of milliseconds); after a restore most waits end within a second of the service
# coming back, so a whole second between tries was up to a second lost per wait.
POLL_SECONDS = 0.5


class Shell(Protocol):
    """What the engine needs from the SSH layer (lab.remote, or a stand-in in tests)."""

    def run(self, node: str, command: str, *, timeout: float, echo: bool) -> CommandResult: ...

    def upload(self, node: str, local: Path, remote: str, mode: int) -> None: ...

    def user(self, node: str) -> str: ...


class SshShell:
    """lab.remote.Remote seen as a Shell: uploads create their directory first."""

    def __init__(self, remote: Remote):
        self.remote = remote

    def run(self, node: str, command: str, *, timeout: float, echo: bool) -> CommandResult:
        return self.remote.run(node, command, timeout=timeout, stream=echo)

    def upload(self, node: str, local: Path, remote: str, mode: int) -> None:
        parent = remote.rsplit("/", 1)[0] if "/" in remote else "."
        self.remote.run(node, f"mkdir -p {parent}", timeout=30, stream=False, check=True)
        self.remote.put(node, local.read_bytes(), remote, mode)

    def user(self, node: str) -> str:
        return self.remote.nodes[node].user


class OfflineShell:
    """For --dry-run and --explain: knows the login users, runs nothing."""

    def __init__(self, users: dict[str, str]):
        self.users = users

    def run(self, node: str, command: str, *, timeout: float, echo: bool) -> CommandResult:
        raise LabError("--dry-run runs nothing")

    def upload(self, node: str, local: Path, remote: str, mode: int) -> None:
        raise LabError("--dry-run uploads nothing")

    def user(self, node: str) -> str:
        return self.users[node]


class PhaseFailed(LabError):
    """A step failed: names the node, the command, its exit code and last stderr lines."""

    def __init__(self, phase: str, step: Step, result: CommandResult | None, hint: str):
        self.phase = phase
        lines = [f"phase {phase}: step '{step.title}' failed"]
        if result is not None:
            shown = step.display or result.command
            lines.append(f"  node: {result.node}  exit code: {result.exit_code}")
            lines.append(f"  command: {shown}")
            tail = [ln for ln in result.stderr.strip().splitlines() if ln.strip()][-STDERR_TAIL:]
            tail = tail or result.stdout.strip().splitlines()[-STDERR_TAIL:]
            lines += [f"  | {ln}" for ln in tail]
        lines.append(f"  hint: {hint}")
        super().__init__("\n".join(lines))


class ChecksFailed(LabError):
    """Checks failed; their FAIL lines (with hints) were already printed as they failed."""

    def __init__(self, phase: str, failures: list[CheckResult]):
        self.phase = phase
        self.failures = failures
        names = "; ".join(f.check.name for f in failures)
        super().__init__(f"phase {phase}: {len(failures)} check(s) failed: {names}")

    def lines(self) -> list[str]:
        return [f"error: phase {self.phase}: {len(self.failures)} check(s) failed (see FAIL above)"]


def fail_line(result: CheckResult) -> str:
    """One line in plain words: what should be true, and what was seen instead."""
    check = result.check
    where = ""
    if check.node and check.node not in check.name:
        where = f" (asked on {check.node})"
    if Check.absent(result.seen):
        return f"FAIL: {check.name}{where}: not there ({result.seen[len(ABSENT) :].strip()})"
    return f"FAIL: {check.name}{where}: expected {check.expect!r}, saw {result.seen!r}"


def hint_line(check: Check, hint: str) -> str:
    """The command that shows the problem, and where to type it."""
    where = f"on {check.node}" if check.node else "on this host"
    return f"  hint ({where}): {hint}"


def _render_command(command: str, values: dict[str, str]) -> str:
    """Fill ``{name}`` placeholders; braces for docker's Go templates stay as ``{{ }}``."""
    out = command
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


class Engine:
    def __init__(
        self,
        ctx: PhaseContext,
        provider: Provider,
        shell: Shell,
        console: Console | None = None,
    ):
        self.ctx = ctx
        self.provider = provider
        self.remote = shell
        self.console = console or make_console()
        self.state = LabState.load(ctx.build)

    # ----------------------------------------------------------- commands

    def _node_values(self, node: str) -> dict[str, str]:
        sudo = "" if self.remote.user(node) == "root" else "sudo "
        return {**self.ctx.vars, "node": node, "node_ip": self.ctx.ip(node), "sudo": sudo}

    def _run_on(self, phase: str, step: Step, node: str) -> CommandResult | None:
        values = self._node_values(node)
        if step.guard:
            guard = self.remote.run(
                node, _render_command(step.guard, values), timeout=60, echo=False
            )
            if guard.exit_code == 0:
                self.console.print(f"  [dim]{node}: already done[/dim]")
                return None
        for upload in step.uploads:
            local = Path(str(upload.local).replace("{node}", node))  # a per-node file
            self.remote.upload(node, local, _render_command(upload.remote, values), upload.mode)
        command = _render_command(step.command, values)
        if step.stdin_file is not None:
            # Staged 0600 and removed at once: the value never appears on a command line.
            staged = f"{STAGING}/{node}/.stdin-{step.stdin_file.name}"
            self.remote.upload(node, step.stdin_file, staged, 0o600)
            command = f"{command} < {staged}; rc=$?; rm -f {staged}; exit $rc"
        retry_for = self.ctx.caps.scaled(step.retry_for)
        deadline = time.monotonic() + retry_for
        while True:
            quiet = bool(step.retry_for or step.capture)  # polling, or a value such as a token
            timeout = self.ctx.caps.scaled(step.timeout)
            result = self.remote.run(node, command, timeout=timeout, echo=not quiet)
            if result.exit_code == 0 or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        if result.exit_code != 0:
            hint = (
                f"still failing after {retry_for:.0f} s"
                if retry_for
                else f"fix it and run `inv phase {phase} --no-restore`"
            )
            raise PhaseFailed(phase, step, result, hint)
        return result

    def _host_action(self, phase: str, step: Step) -> str:
        """Run a host-side action, retrying until ``retry_for`` runs out (services converge)."""
        assert step.host_action is not None
        deadline = time.monotonic() + self.ctx.caps.scaled(step.retry_for)
        while True:
            try:
                return step.host_action(self.ctx)
            except Exception as exc:  # any failure of the action is the step's failure
                if time.monotonic() >= deadline:
                    result = CommandResult("host", step.display or step.title, 1, "", str(exc), 0.0)
                    raise PhaseFailed(
                        phase, step, result, "is the service up? see the error above"
                    ) from None
            time.sleep(2.0)

    def run_step(self, phase: str, step: Step) -> None:
        self.console.print(f"[bold cyan]>[/bold cyan] {step.title}")
        if step.host_action is not None:
            self.console.print(f"  host: {self._host_action(phase, step)}")
            return
        if not step.command:
            return
        with ThreadPoolExecutor(max_workers=max(1, len(step.nodes))) as pool:
            futures = [pool.submit(self._run_on, phase, step, node) for node in step.nodes]
            results = [f.result() for f in futures]
        if step.capture:
            ran = [r for r in results if r is not None]
            if ran:
                self.ctx.vars[step.capture] = ran[0].stdout.strip()
            else:  # guarded away: the value must still be known to later steps
                raise PhaseFailed(phase, step, None, "a capturing step may not have a guard")

    # ------------------------------------------------------------- checks

    def _probe(self, check: Check) -> str:
        if check.probe is not None:
            try:
                return check.probe(self.ctx)
            except Exception as exc:  # a probe's failure is a seen value, not a crash
                return f"error: {exc}"
        if check.across:
            return " ".join(f"{node}={self._seen_on(check, node)}" for node in check.across)
        assert check.node is not None
        return self._seen_on(check, check.node)

    def _seen_on(self, check: Check, node: str) -> str:
        command = _render_command(check.command, self._node_values(node))
        timeout = self.ctx.caps.scaled(check.timeout)
        result = self.remote.run(node, command, timeout=timeout, echo=False)
        seen = result.stdout.strip()
        if result.exit_code != 0 and not seen:
            seen = f"exit {result.exit_code}: {result.stderr.strip()[-200:]}"
        return seen

    def run_check(self, check: Check, settle: bool = True) -> CheckResult:
        deadline = time.monotonic() + (self.ctx.caps.scaled(check.settle_for) if settle else 0.0)
        while True:
            seen = self._probe(check)
            passed = check.passes(seen)
            if passed or check.absent(seen) or time.monotonic() >= deadline:
                return CheckResult(check, passed, seen)
            time.sleep(POLL_SECONDS)

    def run_checks(self, module: ModuleType) -> list[CheckResult]:
        # In order: a later check may rely on an earlier one (a pull fills Redis).
        # Once a check has failed after its settle time the lab has had its chance to
        # converge: later checks are probed once (a trainee's --check ends in seconds).
        results = []
        for check in module.checks(self.ctx):
            result = self.run_check(check, settle=all(r.passed for r in results))
            results.append(result)
            self._report(result)
        return results

    def _report(self, result: CheckResult) -> None:
        """One line per check; a failure also gets its hint. Printed once, here."""
        check = result.check
        if result.passed:
            where = ""
            if check.node and check.node not in check.name:
                where = f" (asked on {check.node})"
            self.console.print(f"  [green]ok[/green]   {check.name}{where}")
            return
        self.console.print(fail_line(result), markup=False, soft_wrap=True)
        self.console.print(hint_line(check, self._hint(check)), markup=False, soft_wrap=True)

    def _hint(self, check: Check) -> str:
        hint = check.hint or check.command or "inv lab.status"
        return _render_command(hint, self._node_values(check.node)) if check.node else hint

    # ------------------------------------------------------------- phases

    def checkpoint_before(self, phase: str) -> str:
        index = PHASES.index(phase)
        return FIRST_CHECKPOINT if index == 0 else f"after-{PHASES[index - 1]}"

    def run_phase(self, phase: str, *, checkpoint: bool = True) -> None:
        self._start_transcript()
        try:
            self._run_phase(phase, checkpoint=checkpoint)
        finally:
            self._keep_transcript(phase)

    def _run_phase(self, phase: str, *, checkpoint: bool) -> None:
        module = phase_module(phase)
        started = time.monotonic()
        self.console.rule(f"[bold]phase {phase}[/bold]: {module.TITLE}")
        skip = module.skip_reason(self.ctx) if hasattr(module, "skip_reason") else None
        if skip:
            self.console.print(f"  skipped: {skip}")
        else:
            for step in module.plan(self.ctx):
                self.run_step(phase, step)
        results = self.run_checks(module)
        failures = [r for r in results if not r.passed]
        seconds = time.monotonic() - started
        if failures:
            self._record(phase, "failed", seconds, None, KIT, failures)
            raise ChecksFailed(phase, failures)
        name = f"after-{phase}"
        if checkpoint:
            if name in self.provider.snapshot_list():
                self.provider.snapshot_delete(name)
            saving = time.monotonic()
            self.provider.snapshot_save(name)
            self.console.print(f"checkpoint {name} taken in {time.monotonic() - saving:.1f} s")
        self._record(phase, "passed", round(seconds, 1), name if checkpoint else None, KIT, [])
        self._mark_later_stale(phase)
        self.state.save(self.ctx.build)
        self.console.print(f"[green]phase {phase} passed[/green] in {seconds:.1f} s")

    def _record(
        self,
        phase: str,
        status: str,
        seconds: float,
        checkpoint: str | None,
        by: str,
        failures: list[CheckResult],
    ) -> None:
        self.state.phases[phase] = PhaseRecord(
            status,
            seconds,
            checkpoint,
            by=by,
            at=utc_now(),
            failed_checks=[f.check.name for f in failures],
        )
        self.state.save(self.ctx.build)

    # ---------------------------------------------------------- transcripts

    def _start_transcript(self) -> None:
        if self.console.record:
            self.console.export_text(clear=True)  # drop what came before this phase

    def _keep_transcript(self, phase: str) -> None:
        if self.console.record:
            secrets = self.ctx.secrets
            values = (
                secrets.minio_access_key,
                secrets.minio_secret_key,
                secrets.registry_http_secret,
            )
            save_transcript(self.ctx.build, phase, self.console.export_text(clear=True), values)

    def _mark_later_stale(self, phase: str) -> None:
        for later in PHASES[PHASES.index(phase) + 1 :]:
            if later in self.state.phases:
                self.state.phases[later].stale = True

    def up(self, phases: Sequence[str] = PHASES, until: str | None = None) -> dict[str, float]:
        """Run every phase not yet passed, in order, stopping after ``until`` if given;
        returns seconds per phase run."""
        if until is not None:
            if until not in phases:
                raise UnknownName(f"no phase {until!r}; phases: {', '.join(phases)}")
            phases = phases[: list(phases).index(until) + 1]
        timings: dict[str, float] = {}
        for phase in phases:
            if self.state.passed(phase):
                self.console.print(f"[dim]phase {phase}: passed earlier[/dim]")
                continue
            started = time.monotonic()
            self.run_phase(phase)
            timings[phase] = time.monotonic() - started
        return timings

    def replay(self, phase: str, *, restore: bool = True) -> None:
        if restore:
            self._restore(self.checkpoint_before(phase), phase)
        self.run_phase(phase)

    def _restore(self, wanted: str, phase: str = "") -> None:
        existing = self.provider.snapshot_list()
        if wanted not in existing:
            have = ", ".join(existing) or "none"
            what = f" to replay {phase} from" if phase else ""
            raise UnknownName(
                f"no checkpoint {wanted!r}{what} (checkpoints: {have}); run `inv lab.up` first"
            )
        self.console.print(f"restoring checkpoint {wanted} on all nodes")
        started = time.monotonic()
        self.provider.snapshot_restore(wanted)
        self.console.print(f"restored {wanted} in {time.monotonic() - started:.1f} s")

    def check_only(self, phase: str) -> list[CheckResult]:
        """Grade the lab as it is; a phase put back by --reset is graded as the trainee's."""
        started = time.monotonic()
        results = self.run_checks(phase_module(phase))
        failures = [r for r in results if not r.passed]
        before = self.state.phases.get(phase)
        by = TRAINEE if before and (before.by == TRAINEE or before.status == RESET) else KIT
        checkpoint = before.checkpoint if before else None
        status = "failed" if failures else "passed"
        self._record(phase, status, round(time.monotonic() - started, 1), checkpoint, by, failures)
        return results

    def reset(self, phase: str) -> None:
        """Put the lab back to just before ``phase`` for a trainee to do it by hand: restore
        the checkpoint before it, run its preparing steps, mark it and later phases undone."""
        module = phase_module(phase)
        self._restore(self.checkpoint_before(phase))
        index = PHASES.index(phase)
        if index > 0:
            # After a restore the services come back one by one: hand over only once the
            # lab is as the previous phase left it (its checks pass, or have had their time).
            previous = PHASES[index - 1]
            self.console.print(f"waiting until the lab is as phase {previous} left it")
            self.run_checks(phase_module(previous))
        for step in module.plan(self.ctx):
            if step.prepares:
                self.run_step(phase, step)
        self.state.phases[phase] = PhaseRecord(RESET, by=TRAINEE, at=utc_now())
        self._mark_later_stale(phase)
        self.state.save(self.ctx.build)

    def dry_run(self, phase: str) -> list[str]:
        """The exact commands per node, with captured values left as placeholders."""
        module = phase_module(phase)
        lines = [f"# phase {phase}: {module.TITLE}"]
        for step in module.plan(self.ctx):
            lines.append(f"# {step.title}")
            if step.host_action is not None:
                lines.append(f"host: {step.display or 'S3 API call from the host'}")
            for node in step.nodes:
                values = {
                    k: v for k, v in self._node_values(node).items() if k not in self.ctx.vars
                }
                for upload in step.uploads:
                    local = upload.local.name.replace("{node}", node)
                    remote = upload.remote.replace("{node}", node)
                    lines.append(f"{node}: upload {local} -> {remote}")
                shown = step.display or step.command
                if step.stdin_file is not None:
                    shown += f" < {step.stdin_file.name}"
                lines.append(f"{node}: {_render_command(shown, values)}")
        return lines
