"""The software update's engine: ``PATCH /api/cluster/software`` and the update's ticks.

``PATCH /api/cluster/software`` validates a package, starts a rolling update
(:mod:`swdepot.software.update`) or pauses, resumes or cancels it. Each runs as a job, as
in ONTAP; what can be refused without work is refused before the job starts. Every
process's ticks advance the running update and do each step's real work (re-reading and
hashing the package's copies).

:class:`UpdateEngine` is the profile's only writer (``cluster ha modify`` included):
every change is one compare-and-set of the :class:`~swdepot.software.update.ProfileStore`,
so processes sharing a store never lose one another's. What it reads it reads through
the :class:`~swdepot.software.profile.ClusterProfile` read model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from swdepot.errors import (
    ALREADY_AT_VERSION,
    INTERNAL_ERROR,
    INVALID_VALUE,
    PACKAGE_NOT_IN_REPOSITORY,
    PACKAGE_PROCESSING_FAILED,
    REPOSITORY_EMPTY,
    REPOSITORY_PLACEMENT_FAILED,
    UPDATE_COMPLETE,
    UPDATE_IN_PROGRESS,
    VERSION_MISSING,
    Conflict,
    InvalidInput,
    NotFound,
    OntapError,
)
from swdepot.jobs.model import Job, JobKind
from swdepot.jobs.runner import JobContext, JobRunner
from swdepot.leases import Leases
from swdepot.repository.catalog import PackageRecord
from swdepot.repository.repository import Repository
from swdepot.software.profile import ClusterProfile
from swdepot.software.update import (
    Pace,
    ProfileState,
    ProfileStore,
    Step,
    StepFailed,
    StepOutcome,
    Update,
    UpdateState,
    Validation,
    ValidationResult,
    advance,
    cancel_now,
    canceled_history,
    plan,
    resume,
    skipped_history,
    version_key,
)

log = logging.getLogger(__name__)

DESCRIPTION = "PATCH /api/cluster/software"
SAVE_ATTEMPTS = 20


RESTARTED = "The job was interrupted because the service restarted."


def _taken_over(_ctx: JobContext) -> str:
    """A validate/update/action job whose process died before it ended. Its effect is one
    compare-and-set of the profile: either it happened (the profile shows it) or not;
    the job cannot tell which from its row, so it fails and the client looks again."""
    raise OntapError(INTERNAL_ERROR, RESTARTED)


class UpdateEngine:
    """Validation, the rolling update and its actions, over a :class:`ProfileStore`."""

    UPDATE_LEASE = "software-update"

    def __init__(self, profile: ClusterProfile, store: ProfileStore, *,
                 repository: Repository, runner: JobRunner, pace: Pace, node: str = "",
                 leases: Leases | None = None, lease_seconds: float = 15.0,
                 clock: Callable[[], float] = time.time) -> None:
        """``profile``: the read model over the same ``store``. ``leases``: where the
        processes of a cluster settle which of them advances a running update (without,
        every caller of :meth:`tick` does the steps' work)."""
        self._profile = profile
        self._store = store
        self._repository = repository
        self._runner = runner
        runner.register(JobKind.SOFTWARE, _taken_over, internal_code=INTERNAL_ERROR)
        self._pace = pace
        self._node = node or profile.identity.nodes[0]
        self._leases = leases
        self._lease_seconds = lease_seconds
        self._clock = clock

    # --- cluster high availability (``cluster ha``) --------------------------------------

    def configure_ha(self, configured: bool) -> str | None:
        """``cluster ha modify -configured``; returns a warning for the operator, if any.

        Cluster HA applies to two-node clusters only (ONTAP's command reference). A single
        node has no partner, so turning it on there is refused; on larger clusters it is
        stored with a warning, because NetApp's own upgrade sample turns it on for every
        cluster of more than one node before an update.
        """
        count = len(self._profile.members())
        if configured and count < 2:
            raise Conflict(INVALID_VALUE, "Cluster high availability cannot be configured "
                           "on a single-node cluster.", target="configured")
        self._save(lambda state: replace(state, ha_configured=configured))
        if configured and count > 2:
            return (f"Warning: Cluster high availability applies only to two-node clusters; "
                    f"this cluster has {count} nodes.")
        return None

    # --- PATCH: validate, update, act ---------------------------------------------------

    def validate(self, version: str | None, nodes: Sequence[str] | None = None) -> Job:
        """``validate_only=true``: run the pre-update checks in a job, keep the results.

        ``nodes``: check only these (``cluster image validate -nodes``); default all."""
        record = self._package(version)
        checked = self._known_nodes(nodes, target="nodes") if nodes else self._profile.members()
        return self._start_job(lambda ctx: self._validate(record, checked))

    def _validate(self, record: PackageRecord, nodes: Sequence[str]) -> str:
        start = self._clock()
        results = self.checks(record, nodes, self._profile.node_versions())
        ran = Validation(start, self._clock(), self._pace.step_seconds)
        self._save(lambda state: replace(state, validation_results=results, validation=ran))
        return "success"

    def start_update(self, version: str | None, *, skip_warnings: bool,
                     nodes_to_update: Sequence[str] | None, stabilize_minutes: int) -> Job:
        """Refuse what is refused at once, then record the update in a job."""
        update, skipped = self.prepare_update(version, skip_warnings=skip_warnings,
                                              nodes_to_update=nodes_to_update,
                                              stabilize_minutes=stabilize_minutes)
        return self._start_job(lambda ctx: self._begin(update, skipped))

    def prepare_update(self, version: str | None, *, skip_warnings: bool,
                       nodes_to_update: Sequence[str] | None,
                       stabilize_minutes: int) -> tuple[Update, tuple[str, ...]]:
        """The update :meth:`start_update` would start, planned but not started (also
        ``cluster image update -estimate-only``), and the nodes it leaves out because they
        run its version already; refuses what would be refused."""
        if self._profile.update_in_progress():
            raise Conflict(UPDATE_IN_PROGRESS, "Cannot perform an update when a previous "
                           "update is still in progress.")
        record = self._package(version)
        nodes = (self._known_nodes(nodes_to_update, target="nodes_to_update")
                 if nodes_to_update else self._profile.members())
        versions = self._profile.node_versions()
        skipped = tuple(n for n in nodes if versions[n] == record.version)
        nodes = tuple(n for n in nodes if n not in skipped)
        if not nodes:
            raise Conflict(ALREADY_AT_VERSION, f'All nodes are already running version '
                           f'"{record.version}".', target="version")
        return Update(version=record.version, state=UpdateState.IN_PROGRESS,
                      steps=plan(nodes, self._pace, stabilize_minutes), nodes=nodes,
                      skip_warnings=skip_warnings, stabilize_minutes=stabilize_minutes,
                      start_time=self._clock(), from_versions={n: versions[n] for n in nodes}
                      ), skipped

    def _known_nodes(self, nodes: Sequence[str], *, target: str) -> tuple[str, ...]:
        members = self._profile.members()
        unknown = [n for n in nodes if n not in members]
        if unknown:
            raise InvalidInput(INVALID_VALUE, f'Node "{unknown[0]}" is not a node of this '
                               "cluster.", target=target)
        return tuple(nodes)

    def _begin(self, update: Update, skipped: Sequence[str]) -> str:
        """Record the update; the nodes it leaves out at their version go to the history."""
        def begin(state: ProfileState) -> ProfileState:
            if state.update is not None and state.update.state.active:
                raise Conflict(UPDATE_IN_PROGRESS, "Cannot perform an update when a previous "
                               "update is still in progress.")
            now = self._clock()
            first = replace(update.steps[0], state="in_progress", start_time=now)
            return replace(state, update=replace(update, start_time=now).with_step(first),
                           history=state.history + skipped_history(skipped, update.version,
                                                                   now))

        self._save(begin)
        log.info("software update to %s started on %s", update.version, ", ".join(update.nodes))
        return "success"

    def act(self, action: str) -> Job:
        """``action=pause|resume|cancel`` on the running update."""
        self._apply_action(self._profile.state(), action)  # refuse now what would be refused later
        return self._start_job(lambda ctx: self._act(action))

    def _act(self, action: str) -> str:
        self._save(lambda state: self._apply_action(state, action))
        return "success"

    def _apply_action(self, state: ProfileState, action: str) -> ProfileState:
        update = state.update
        if update is None or not update.state.active:
            raise Conflict(INVALID_VALUE, f'The "{action}" action is not valid: no software '
                           "update is in progress.", target="action")
        now = self._clock()
        paused = update.state in (UpdateState.PAUSED_BY_USER, UpdateState.PAUSED_ON_ERROR)
        if action == "pause" and update.state is UpdateState.IN_PROGRESS:
            update = replace(update, state=UpdateState.PAUSE_PENDING,
                             message="Pause requested; the current step finishes first")
        elif action == "resume" and paused:
            update = resume(update, now)
        elif action == "cancel" and paused:
            update = cancel_now(update, now)
            return replace(state, update=update, history=state.history + canceled_history(
                update, state.node_versions, now))
        elif action == "cancel" and update.state.moving:
            update = replace(update, state=UpdateState.CANCEL_PENDING,
                             message="Cancel requested; the current step finishes first")
        else:
            raise Conflict(INVALID_VALUE, f'The "{action}" action is not valid while the '
                           f'update is "{update.state}".', target="action")
        return replace(state, update=update)

    # --- the engine ---------------------------------------------------------------------

    def tick(self) -> None:
        """Advance a running update to now (called by every process's housekeeping).

        Only the holder of the update's lease does a step's work (re-reading and hashing
        copies); the others return, and take over once its lease runs out. Saves with
        the revision it loaded: should another process still have advanced it first,
        this attempt is dropped and the next tick starts from the newer state.
        """
        state, revision = self._store.load()
        if state.update is None or not state.update.state.moving:
            return
        now = self._clock()
        if self._leases is not None and not self._leases.acquire(
                self.UPDATE_LEASE, self._runner.owner, self._runner.node, now,
                now + self._lease_seconds):
            return  # another process advances it
        advanced = advance(state, self._clock(), self._step_work)
        if advanced != state and not self._store.save(advanced, revision):
            log.debug("update tick lost a race; retrying on the next tick")

    def _step_work(self, update: Update, step: Step, state: ProfileState) -> StepOutcome:
        record = self._repository.catalog.by_version(update.version)
        if record is None:
            raise StepFailed(f'Package "{update.version}" is no longer in the repository.',
                             code=PACKAGE_NOT_IN_REPOSITORY,
                             action="Cancel the update, download the package again, then "
                             "start the update again.")
        if step.name == "initialize":
            return self._pre_update_checks(update, record, state)
        if step.name == "do-download-job":
            if not self._repository.copy_intact(record, step.node):
                raise StepFailed(f'The copy of package "{record.version}" for node '
                                 f'"{step.node}" is missing or corrupt.',
                                 code=REPOSITORY_PLACEMENT_FAILED,
                                 action="Run `swdepot repository verify --repair` to restore "
                                 "the copy from the other node's, then resume the update; "
                                 "or cancel it.")
            return StepOutcome("Software image downloaded and verified.")
        if step.name == "do-install-job":
            return StepOutcome(f"Software image {record.version} installed.")
        if step.name == "do-takeover-reboot-giveback":
            return StepOutcome(f"Node rebooted into {record.version}; giveback complete.")
        if step.name == "stabilize":
            return StepOutcome("Node is stable.")
        return self._post_update_checks(update, state)

    def _post_update_checks(self, update: Update, state: ProfileState) -> StepOutcome:
        """Every updated node runs the new version; one failed check per node that does not.

        [decision] Nothing but an inconsistency of swdepot's own state can fail it, hence
        INTERNAL_ERROR as its code."""
        behind = [n for n in update.nodes if state.node_versions.get(n) != update.version]
        if behind:
            retry = "Resume the update to run the check again, or cancel it."
            raise StepFailed(
                f"Nodes not at {update.version}: {', '.join(behind)}.", code=INTERNAL_ERROR,
                action=retry, post_update_checks=tuple(
                    ValidationResult("Version check", "error",
                                     f"Node {n} runs {state.node_versions.get(n, '')}, "
                                     f"expected {update.version}.", retry)
                    for n in behind))
        return StepOutcome("Image update complete", code=UPDATE_COMPLETE)

    def _pre_update_checks(self, update: Update, record: PackageRecord,
                           state: ProfileState) -> StepOutcome:
        results = self.checks(record, update.nodes, self._profile.node_versions(state))
        if any(r.status == "error" for r in results):
            raise StepFailed("Pre-update checks failed; see validation_results.", fatal=True,
                             validation_results=results, code=PACKAGE_PROCESSING_FAILED,
                             action="Correct what validation_results names, then start the "
                             "update again.")
        if results and not update.skip_warnings:
            raise StepFailed("Pre-update checks reported warnings; resume the update to "
                             "continue anyway, or cancel it.", validation_results=results,
                             code=PACKAGE_PROCESSING_FAILED,
                             action="Use PATCH /api/cluster/software?action=resume to accept "
                             "the warnings and continue, or action=cancel.")
        return StepOutcome("Pre-update checks complete.", results)

    def checks(self, record: PackageRecord, nodes: Sequence[str],
               versions: dict[str, str]) -> tuple[ValidationResult, ...]:
        """The pre-update checks that mean something here; they read every stored copy."""
        results = []
        problems = self._repository.copy_problems(record)
        bad = [name for name, problem in problems.items()
               if problem is not None and problem != "unreachable"]
        unreachable = [name for name, problem in problems.items() if problem == "unreachable"]
        if bad or len(unreachable) == len(problems):
            results.append(ValidationResult(
                "Package integrity", "error",
                f'The copy of package "{record.version}" on {", ".join(bad + unreachable)} '
                "is missing, does not match its sha256 or cannot be read.",
                "Delete the package and download it again; if a store is down, bring it "
                "back first."))
        elif unreachable:
            # [decision] one copy is enough to update from: a store that is down is a
            # warning, as ONTAP warns of a node it cannot reach, not an error.
            results.append(ValidationResult(
                "Package integrity", "warning",
                f'The copy of package "{record.version}" on {", ".join(unreachable)} cannot '
                "be read: its store does not answer. The update reads the intact copy.",
                "Bring the store back, then run `swdepot repository verify`."))
        older = [n for n in nodes if version_key(record.version) < version_key(versions[n])]
        if older:
            results.append(ValidationResult(
                "Version compatibility", "error",
                f'Nodes {", ".join(older)} run a later version than "{record.version}"; an '
                "update cannot go back.",
                "Choose a package newer than the version the nodes run."))
        if record.signer is None:
            results.append(ValidationResult(
                "Package signature", "warning",
                f'Package "{record.version}" is not signed by a trusted key.',
                "Use a signed package, or skip this warning if the source is trusted."))
        return tuple(results)

    # --- helpers ------------------------------------------------------------------------

    def _package(self, version: str | None) -> PackageRecord:
        if not version:
            raise InvalidInput(VERSION_MISSING, 'Missing value for required field "version".',
                               target="version")
        if not self._repository.images():
            raise NotFound(REPOSITORY_EMPTY, "Failed to find the package in the package "
                           "repository.", target="version")
        record = self._repository.catalog.by_version(version)
        if record is None:
            raise NotFound(PACKAGE_NOT_IN_REPOSITORY, "The required package version is not "
                           "present in the repository.", target="version")
        return record

    def _start_job(self, work: Callable[[JobContext], str]) -> Job:
        job = Job.new(JobKind.SOFTWARE, DESCRIPTION, node=self._node)
        self._runner.start(job, work)
        return job

    def _save(self, change: Callable[[ProfileState], ProfileState]) -> None:
        """Load, change, compare-and-set; retried when another process saved in between."""
        for _ in range(SAVE_ATTEMPTS):
            state, revision = self._store.load()
            if self._store.save(change(state), revision):
                return
        raise OntapError(UPDATE_IN_PROGRESS, "The software profile is changing too often; "
                         "retry the operation.")
