"""Running a drill: load before, during and after a fault, then heal, then prove that
nothing was lost. Whatever happens (Ctrl-C included) the fault is healed, or the
drill says exactly what it left broken and how to heal it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.drills.faults import DrillLab, DrillTarget, resolve
from lab.drills.load import (
    PULL_REPO,
    Access,
    Load,
    LoadPlan,
    Outcome,
    Registry,
    RegistryFailure,
    outcome_dicts,
)
from lab.drills.plot import timeline
from lab.drills.report import Verdict, Window, judge, numbers
from lab.errors import LabError

BASELINE = 5.0  # seconds of load before the fault
SETTLE = 5.0  # seconds of steady success wanted after healing
HEAL_TIMEOUT = 120.0  # for the lab to answer again after healing
SETTLE_TIMEOUT = 60.0  # for requests to succeed steadily again
LEADER_EVERY = 2.0
SERVING_TIMEOUT = 180.0  # for every registry to serve again after healing
LOST_PATIENCE = 60.0  # a node that was off heals its drives and cache first


def _gives_back(address: str, push: Outcome, access: Access | None) -> bool:
    repo, _, tag = push.ref.rpartition(":")
    try:
        return Registry(address, access=access).pull(repo, tag) == push.digest
    except (RegistryFailure, ValueError, KeyError):
        return False


@dataclass
class DrillOptions:
    seconds: float = 20.0  # how long the fault lasts
    load: LoadPlan | None = None
    out_dir: Path | None = None  # JSON and PNG per drill


class LeaderWatch:
    """Samples the swarm leader every few seconds from a node that is up."""

    def __init__(self, lab: DrillLab, clock: Callable[[], float]):
        self.lab, self.clock = lab, clock
        self.samples: list[tuple[float, str | None]] = []
        self.down: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                leader = self.lab.leader(avoid=self.down)
            except LabError:
                leader = None
            self.samples.append((self.clock(), leader))
            self._stop.wait(LEADER_EVERY)

    def changes(self) -> int:
        known = [leader for _, leader in self.samples if leader]
        return sum(1 for a, b in zip(known, known[1:], strict=False) if a != b)

    def leaderless_seconds(self) -> float:
        longest, since = 0.0, None
        for t, leader in self.samples:
            if leader is None and since is None:
                since = t
            elif leader is not None and since is not None:
                longest, since = max(longest, t - since), None
        if since is not None and self.samples:
            longest = max(longest, self.samples[-1][0] - since)
        return round(longest, 1)


class DrillRun:
    def __init__(self, lab: DrillLab, front: str, registries: list[str], broken_file: Path,
                 say: Callable[[str], None], access: Access | None = None):  # fmt: skip
        self.lab, self.front, self.registries = lab, front, registries
        self.broken_file, self.say = broken_file, say
        self.access = access  # HTTPS and an account, when the lab's registries use TLS

    # ------------------------------------------------------------ one drill

    def run(self, name: str, node: str | None, options: DrillOptions) -> Verdict:
        self.heal_leftover()
        target = resolve(name, self.lab, node)
        self.wait_healthy(target.powered_off)
        load = Load(Registry(self.front, access=self.access), options.load or LoadPlan())
        load.seed()
        watch = LeaderWatch(self.lab, load.now)
        total = BASELINE + options.seconds + HEAL_TIMEOUT + SETTLE_TIMEOUT
        load.start(max_seconds=total)
        watch.start()
        outcomes: list[Outcome] = []
        try:
            fault_at, heal_at = self._fault(target, load, watch, options.seconds)
            self.wait_healthy(None)
            self._settle(load)
        finally:
            outcomes = load.stop()
            watch.stop()
        window = Window(fault_at, heal_at, load.now())
        found = numbers(outcomes, window)
        found.leader_changes, found.leaderless_seconds = watch.changes(), watch.leaderless_seconds()
        self.wait_serving(load.seeded)
        found.lost = self.lost([o for o in outcomes if o.kind == "push" and o.ok])
        verdict = judge(name, target.action, target.promises, target.lessons, found, window)
        self._write(verdict, outcomes, options.out_dir)
        return verdict

    def _fault(self, target: DrillTarget, load: Load, watch: LeaderWatch,
               seconds: float) -> tuple[float, float]:  # fmt: skip
        time.sleep(BASELINE)
        self.say(f"drill {target.drill}: {target.action} for {seconds:.0f} s")
        self._mark_broken(target)
        watch.down = target.powered_off
        fault_at = load.now()
        try:
            target.inject()
            time.sleep(max(0.0, seconds - (load.now() - fault_at)))
        finally:
            heal_at = load.now()
            self._heal(target)
            watch.down = None
        return fault_at, heal_at

    def _heal(self, target: DrillTarget) -> None:
        try:
            target.heal()
        except (LabError, OSError) as exc:
            raise LabError(
                f"drill {target.drill} could not heal: {exc}. Still broken: {target.action}. "
                f"Heal it with: {target.heal_hint}"
            ) from None
        except KeyboardInterrupt:
            raise LabError(
                f"interrupted while healing: {target.action} may still be in force. "
                f"Heal it with: {target.heal_hint}"
            ) from None
        self.broken_file.unlink(missing_ok=True)
        self.say(f"drill {target.drill}: {target.healed}")

    def _settle(self, load: Load) -> None:
        """Load goes on until SETTLE seconds passed with only successes (bounded)."""
        deadline = load.now() + SETTLE_TIMEOUT
        while load.now() < deadline:
            recent = [o for o in load.outcomes if o.end >= load.now() - SETTLE]
            if recent and all(o.ok for o in recent) and load.now() > SETTLE:
                return
            time.sleep(0.5)

    # ------------------------------------------------------------ health

    def wait_healthy(self, down: str | None) -> None:
        """Every registry and the front address answer /v2/ (the node that is down aside)."""
        addresses = [a for a in self.registries if down is None or not a.startswith(
            self.lab.spec.node(down).ip + ":")] + [self.front]  # fmt: skip
        deadline = time.monotonic() + HEAL_TIMEOUT
        while not all(Registry(a, timeout=2, access=self.access).answers() for a in addresses):
            if time.monotonic() > deadline:
                raise LabError(
                    f"the lab is not healthy: some of {', '.join(addresses)} do not answer "
                    "/v2/ (inv lab.status; inv phase verify --check)"
                )
            time.sleep(1)

    def wait_serving(self, seeded: list[tuple[str, str]]) -> None:
        """Healed means serving: every node's registry gives back an image pushed before
        the drill (a node that was off restarts its MinIO instance and heals its drive
        first; /v2/ answers long before). Bounded; what still fails counts as lost."""
        tag, digest = seeded[0]
        probe = Outcome("push", 0, 0, True, ref=f"{PULL_REPO}:{tag}", digest=digest)
        deadline = time.monotonic() + SERVING_TIMEOUT
        while time.monotonic() < deadline:
            if all(_gives_back(address, probe, self.access) for address in self.registries):
                return
            time.sleep(2)

    def lost(self, pushes: list[Outcome]) -> list[str]:
        """Acknowledged pushes that some node's registry does not give back unchanged.

        A registry that has just come back may answer before its storage does: what
        is missing is asked again until LOST_PATIENCE seconds passed."""
        wanted = [(push, address) for push in pushes for address in self.registries]
        deadline = time.monotonic() + LOST_PATIENCE
        while True:
            wanted = [(push, address) for push, address in wanted
                      if not _gives_back(address, push, self.access)]  # fmt: skip
            if not wanted or time.monotonic() > deadline:
                return [f"{push.ref} from {address}" for push, address in wanted]
            time.sleep(2)

    # ------------------------------------------------------------ leftovers

    def _mark_broken(self, target: DrillTarget) -> None:
        self.broken_file.parent.mkdir(parents=True, exist_ok=True)
        self.broken_file.write_text(json.dumps(
            {"drill": target.drill, "node": target.node, "action": target.action,
             "heal": target.heal_hint}))  # fmt: skip

    def heal_leftover(self) -> None:
        """A drill killed before it healed left a fault in force: heal it first."""
        if not self.broken_file.exists():
            return
        left = json.loads(self.broken_file.read_text())
        self.say(f"an earlier drill left this in force: {left['action']}; healing it first")
        self._heal(resolve(left["drill"], self.lab, left["node"]))

    # ------------------------------------------------------------ output

    def _write(self, verdict: Verdict, outcomes: list[Outcome], out_dir: Path | None) -> None:
        if out_dir is None:
            return
        data = {**verdict.as_dict(), "outcomes": outcome_dicts(outcomes)}
        (out_dir / f"{verdict.drill}.json").parent.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{verdict.drill}.json").write_text(json.dumps(data, indent=1))
        timeline(outcomes, verdict, out_dir / f"{verdict.drill}.png")
