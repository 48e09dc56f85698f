"""The rolling software update (``cluster image update``) as persisted data plus a clock.

There is no storage OS to install here, so an update is a plan of steps that nodes go
through one after another at a configurable pace, with ONTAP's states, phases and
status names. The steps that can do real work do it: pre-update checks verify the
package on every node store, each node's download step re-reads its copy and checks
the sha256, post-update checks confirm every node runs the new version.

Everything is a value: :class:`ProfileState` (node versions, the last validation, the
update) is loaded from and saved to a :class:`ProfileStore` with a revision number, so
any process may advance the update (the first one to save a step wins) and a restart
continues where the last process stopped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol


class UpdateState(StrEnum):
    """``software_reference.state`` (ONTAP 9.7+)."""

    IN_PROGRESS = "in_progress"
    WAITING = "waiting"
    PAUSED_BY_USER = "paused_by_user"
    PAUSED_ON_ERROR = "paused_on_error"
    COMPLETED = "completed"
    CANCELED = "canceled"
    FAILED = "failed"
    PAUSE_PENDING = "pause_pending"
    CANCEL_PENDING = "cancel_pending"

    @property
    def active(self) -> bool:
        """Not finished: downloads and a second update are refused meanwhile."""
        return self not in (UpdateState.COMPLETED, UpdateState.CANCELED, UpdateState.FAILED)

    @property
    def moving(self) -> bool:
        """Steps advance in these states (a pending pause/cancel waits for the step)."""
        return self in (UpdateState.IN_PROGRESS, UpdateState.PAUSE_PENDING,
                        UpdateState.CANCEL_PENDING)

    @property
    def held(self) -> bool:
        """Paused, or about to be paused or canceled: the current step shows this state."""
        return self in (UpdateState.PAUSED_BY_USER, UpdateState.PAUSED_ON_ERROR,
                        UpdateState.PAUSE_PENDING, UpdateState.CANCEL_PENDING)


PRE_CHECKS = "Pre-update checks"
NODE_UPDATES = "Data ONTAP updates"
POST_CHECKS = "Post-update checks"

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:([A-Z]+)(\d+))?", re.IGNORECASE)


def version_key(version: str) -> tuple[int, int, int, int, int]:
    """Order ONTAP versions: 9.16.1 < 9.16.1P3 and 9.17.1RC1 < 9.17.1 (RC before GA)."""
    match = _VERSION.match(version)
    if not match:
        return (0, 0, 0, 0, 0)
    gen, major, minor, tag, number = match.groups()
    rank = {"RC": -1, "X": -1, "D": 0, "P": 1}.get((tag or "").upper(), 0)
    return (int(gen), int(major), int(minor or 0), rank, int(number or 0))


@dataclass(frozen=True)
class ValidationResult:
    """One ``validation_results[]`` (or failed ``post_update_checks[]``) entry."""

    update_check: str
    status: str  # "warning" | "error"
    issue: str
    action: str


@dataclass(frozen=True)
class Step:
    """One step of the plan; ``name`` is what ``status_details[].name`` shows."""

    phase: str
    name: str
    node: str
    seconds: float
    state: str = "waiting"  # waiting | in_progress | completed | failed | canceled
    start_time: float | None = None
    end_time: float | None = None
    message: str = ""
    code: int = 0  # the message's: 0 when it only informs
    action: str = ""  # a failed step's corrective action


@dataclass(frozen=True)
class Update:
    """One rolling update, from the PATCH that started it to its end."""

    version: str
    state: UpdateState
    steps: tuple[Step, ...]
    nodes: tuple[str, ...]
    skip_warnings: bool
    stabilize_minutes: int
    start_time: float
    current: int = 0
    end_time: float | None = None
    message: str = ""
    from_versions: dict[str, str] = field(default_factory=dict)  # each node's, at the start
    post_update_checks: tuple[ValidationResult, ...] = ()  # the failed ones

    @property
    def step(self) -> Step | None:
        return self.steps[self.current] if self.current < len(self.steps) else None

    def with_step(self, step: Step) -> Update:
        steps = list(self.steps)
        steps[self.current] = step
        return replace(self, steps=tuple(steps))


@dataclass(frozen=True)
class HistoryEntry:
    """One node's installation of a version (``/cluster/software/history``)."""

    node: str
    start_time: float
    end_time: float
    from_version: str
    to_version: str
    state: str  # "successful" | "canceled" | "skip_upgrade"


@dataclass(frozen=True)
class Validation:
    """When the last ``validate_only`` ran, and how long its checks are planned to take."""

    start_time: float
    end_time: float
    estimated_seconds: float


@dataclass(frozen=True)
class ProfileState:
    """What ``/cluster/software`` shows, persisted as one document."""

    node_versions: dict[str, str] = field(default_factory=dict)
    validation_results: tuple[ValidationResult, ...] | None = None
    update: Update | None = None
    history: tuple[HistoryEntry, ...] = ()
    validation: Validation | None = None
    ha_configured: bool | None = None  # ``cluster ha modify``; None: never set

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ProfileState:
        results = raw.get("validation_results")
        update = raw.get("update")
        if update is not None:
            update = Update(**{**update, "state": UpdateState(update["state"]),
                               "steps": tuple(Step(**s) for s in update["steps"]),
                               "nodes": tuple(update["nodes"]),
                               "post_update_checks": tuple(
                                   ValidationResult(**r)
                                   for r in update.get("post_update_checks", ()))})
        validation = raw.get("validation")
        return cls(
            node_versions=dict(raw.get("node_versions", {})),
            validation_results=None if results is None else tuple(
                ValidationResult(**r) for r in results),
            update=update,
            history=tuple(HistoryEntry(**h) for h in raw.get("history", ())),
            validation=None if validation is None else Validation(**validation),
            ha_configured=raw.get("ha_configured"),
        )


class ProfileStore(Protocol):
    """Where the profile lives (SQLite today); ``save`` is compare-and-set."""

    def load(self) -> tuple[ProfileState, int]:
        """The state and its revision (0 when nothing was ever saved)."""

    def save(self, state: ProfileState, revision: int) -> bool:
        """Store ``state`` if the stored revision is still ``revision``; False otherwise."""


@dataclass(frozen=True)
class Pace:
    """How long simulated work takes: a step, and one of ``stabilize_minutes``."""

    step_seconds: float = 30.0
    minute_seconds: float = 60.0


def plan(nodes: Sequence[str], pace: Pace, stabilize_minutes: int) -> tuple[Step, ...]:
    """The steps of a rolling update, one node at a time (an HA pair's takeover/giveback)."""
    steps = [Step(PRE_CHECKS, "initialize", nodes[0], pace.step_seconds)]
    for node in nodes:
        steps += [
            Step(NODE_UPDATES, "do-download-job", node, pace.step_seconds),
            Step(NODE_UPDATES, "do-install-job", node, pace.step_seconds),
            Step(NODE_UPDATES, "do-takeover-reboot-giveback", node, pace.step_seconds),
            Step(NODE_UPDATES, "stabilize", node, stabilize_minutes * pace.minute_seconds),
        ]
    steps.append(Step(POST_CHECKS, "post-update-checks", nodes[-1], pace.step_seconds))
    return tuple(steps)


@dataclass(frozen=True)
class StepOutcome:
    """What a finished step reports; pre-update checks also bring their results."""

    message: str
    validation_results: tuple[ValidationResult, ...] | None = None
    code: int = 0  # the message's: 0 when it only informs


class StepFailed(Exception):
    """A step found a problem: the update pauses on error, or fails when ``fatal``.

    ``code`` names the problem and ``action`` what the operator can do about it;
    ``post_update_checks`` are the post-update checks that failed.
    """

    def __init__(self, message: str, *, code: int, action: str, fatal: bool = False,
                 validation_results: tuple[ValidationResult, ...] | None = None,
                 post_update_checks: tuple[ValidationResult, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.action = action
        self.fatal = fatal
        self.validation_results = validation_results
        self.post_update_checks = post_update_checks


# What a step does when its time is up.
StepWork = Callable[[Update, Step, ProfileState], StepOutcome]


def advance(state: ProfileState, now: float, work: StepWork) -> ProfileState:
    """Move the update along to ``now``: finish due steps, start the next ones.

    A step's successor starts when the step ended (not when we noticed), so a slow
    ticker or a restart does not stretch the schedule. Bounded by the number of steps.
    """
    update = state.update
    for _ in range(len(update.steps) + 1 if update else 0):
        update = state.update
        assert update is not None
        step = update.step
        if not update.state.moving or step is None:
            break
        if step.state == "waiting":
            update = update.with_step(replace(step, state="in_progress", start_time=now))
            state = replace(state, update=update)
            continue
        assert step.start_time is not None
        due = step.start_time + step.seconds
        if now < due:
            break
        state = _finish_step(state, update, step, due, work)
    return state


def _finish_step(state: ProfileState, update: Update, step: Step, due: float,
                 work: StepWork) -> ProfileState:
    try:
        outcome = work(update, step, state)
    except StepFailed as exc:
        failed = replace(step, state="failed", end_time=due, message=str(exc), code=exc.code,
                         action=exc.action)
        update = replace(update.with_step(failed), message=str(exc),
                         post_update_checks=exc.post_update_checks,
                         state=UpdateState.FAILED if exc.fatal else UpdateState.PAUSED_ON_ERROR,
                         end_time=due if exc.fatal else None)
        results = exc.validation_results or state.validation_results
        return replace(state, update=update, validation_results=results)
    if outcome.validation_results is not None:
        state = replace(state, validation_results=outcome.validation_results)
    done = replace(step, state="completed", end_time=due, message=outcome.message,
                   code=outcome.code)
    update = replace(update.with_step(done), post_update_checks=())
    versions = dict(state.node_versions)
    history = state.history
    if step.name == "do-takeover-reboot-giveback":
        history += (_installed(update, step.node, versions.get(step.node), due,
                               "successful"),)
        versions[step.node] = update.version
    nxt = update.current + 1
    if nxt >= len(update.steps):
        update = replace(update, state=UpdateState.COMPLETED, end_time=due, current=nxt,
                         message="Image update complete")
    elif update.state is UpdateState.PAUSE_PENDING:
        update = replace(update, state=UpdateState.PAUSED_BY_USER, current=nxt,
                         message="Update paused by user")
    elif update.state is UpdateState.CANCEL_PENDING:
        update = replace(update, state=UpdateState.CANCELED, end_time=due, current=nxt,
                         message="Update canceled by user")
        history += canceled_history(update, versions, due)
    else:
        nxt_step = replace(update.steps[nxt], state="in_progress", start_time=due)
        update = replace(update, current=nxt).with_step(nxt_step)
    return replace(state, update=update, node_versions=versions, history=history)


def _installed(update: Update, node: str, previous: str | None, end: float,
               outcome: str) -> HistoryEntry:
    """The history entry of ``node``'s installation in ``update``: from its first node
    step's start to ``end``."""
    started = next((s.start_time for s in update.steps
                    if s.node == node and s.phase == NODE_UPDATES and s.start_time is not None),
                   end)
    return HistoryEntry(node, started, end, update.from_versions.get(node, previous or ""),
                        update.version, outcome)


def skipped_history(nodes: Sequence[str], version: str,
                    at: float) -> tuple[HistoryEntry, ...]:
    """[I] ``skip_upgrade``: nodes an update left out because they already run its version."""
    return tuple(HistoryEntry(node, at, at, version, version, "skip_upgrade") for node in nodes)


def canceled_history(update: Update, versions: dict[str, str],
                     end: float) -> tuple[HistoryEntry, ...]:
    """A canceled update: the node whose installation had begun and not ended."""
    begun = {s.node for s in update.steps if s.phase == NODE_UPDATES and s.start_time}
    return tuple(_installed(update, node, versions.get(node), end, "canceled")
                 for node in update.nodes
                 if node in begun and versions.get(node) != update.version)


def resume(update: Update, now: float) -> Update:
    """Continue a paused update; a failed step runs again from the start.

    Resuming after the pre-update checks paused on warnings accepts those warnings, as
    ``cluster image resume-update`` does.
    """
    step = update.step
    update = replace(update, state=UpdateState.IN_PROGRESS, message="", skip_warnings=True,
                     post_update_checks=())
    if step is not None:
        update = update.with_step(replace(step, state="in_progress", start_time=now,
                                          end_time=None, message="", code=0, action=""))
    return update


def cancel_now(update: Update, now: float) -> Update:
    """Cancel a paused update at once (nothing is running that must finish first)."""
    return replace(update, state=UpdateState.CANCELED, end_time=now,
                   message="Update canceled by user")
