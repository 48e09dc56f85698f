"""The cluster's identity and software profile as clients read it (the read model).

Every Ansible module reads ``GET /api/cluster?fields=version`` first, and
``na_ontap_software_update`` reads the nodes' versions. The nodes start at the configured
:class:`~swdepot.config.ClusterIdentity` version; a completed update moves them on, and
from then on the stored versions win over the configuration.

:class:`ClusterProfile` only reads the :class:`~swdepot.software.update.ProfileStore`:
every change (validation, the update, its actions and ticks, ``cluster ha modify``) is
:class:`~swdepot.software.update_engine.UpdateEngine`'s. What it shows are typed values
(:class:`ClusterView`, :class:`SoftwareView`); ``api/views/`` turns them into ONTAP's
JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from swdepot.config import ClusterIdentity
from swdepot.nodes import MODEL
from swdepot.software.update import (
    HistoryEntry,
    ProfileState,
    ProfileStore,
    Update,
    ValidationResult,
    version_key,
)

TIMEZONE = "Etc/UTC"  # every time swdepot reports is UTC


@dataclass(frozen=True)
class VersionParts:
    """``9.16.1P3`` → generation 9, major 16, minor 1 (ONTAP's naming of the parts)."""

    generation: int
    major: int
    minor: int


def version_parts(version: str) -> VersionParts:
    """The parts of an ONTAP version; ValueError for a string that is none."""
    generation, major, minor, _, _ = version_key(version)
    if generation == 0:
        raise ValueError(f"not an ONTAP version: {version!r}")
    return VersionParts(generation, major, minor)


@dataclass(frozen=True)
class ClusterView:
    """``/api/cluster``: the cluster's identity and effective version."""

    name: str
    uuid: str
    version: str  # the lowest any node runs
    timezone: str = TIMEZONE


@dataclass(frozen=True)
class NodeVersion:
    """One node of ``/cluster/software``'s ``nodes[]``."""

    name: str
    version: str
    model: str = MODEL


@dataclass(frozen=True)
class PhaseProgress:
    """One phase on one node (``update_details[]``): its steps' aggregate state."""

    phase: str
    node: str
    state: str
    estimated_seconds: int
    elapsed_seconds: int


@dataclass(frozen=True)
class StepProgress:
    """One step that has started, or the one a held update waits at (``status_details[]``).

    ``state`` is the update's while it is held at this step; ``message`` and ``code`` the
    step's issue (none when ``message`` is empty); ``action`` the corrective action of a
    failed step, else empty.
    """

    name: str
    state: str
    node: str
    start_time: float | None
    end_time: float | None
    message: str
    code: int
    action: str


@dataclass(frozen=True)
class SoftwareView:
    """``/api/cluster/software`` as of one load of the profile.

    Before the first update ``start_time`` … ``steps`` are None, except that the last
    ``validate_only`` gives the durations; ``post_update_checks`` are the failed ones of
    the last update (empty while none fails).
    """

    version: str  # the lowest any node runs
    state: str
    nodes: tuple[NodeVersion, ...]
    pending_version: str | None = None  # while an update is active
    start_time: float | None = None
    end_time: float | None = None
    elapsed_seconds: int | None = None
    estimated_seconds: int | None = None
    phases: tuple[PhaseProgress, ...] | None = None
    steps: tuple[StepProgress, ...] | None = None
    validation_results: tuple[ValidationResult, ...] | None = None
    post_update_checks: tuple[ValidationResult, ...] = ()


class ClusterProfile:
    """Node versions, validation results and the update, read from a :class:`ProfileStore`.

    Never writes: each call loads the stored state, so every process reads the same.
    """

    def __init__(self, identity: ClusterIdentity, store: ProfileStore, *,
                 members: Callable[[], tuple[str, ...]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``members``: the cluster's node names now (``nodes.py``; default: the
        configured ones). Refuses a malformed configured version (ValueError)."""
        version_parts(identity.version)  # refuse a malformed configured version at start-up
        self.identity = identity
        self._store = store
        self._members = members or (lambda: tuple(identity.nodes))
        self._clock = clock

    def members(self) -> tuple[str, ...]:
        """The cluster's node names now."""
        return self._members()

    def state(self) -> ProfileState:
        """The stored profile, as of now."""
        return self._store.load()[0]

    def node_versions(self, state: ProfileState | None = None) -> dict[str, str]:
        """Each member's version (``state``'s, default the stored one), in member order."""
        state = state or self.state()
        return {n: state.node_versions.get(n, self.identity.version) for n in self._members()}

    @property
    def version(self) -> str:
        """The cluster's effective version: the lowest any node runs (as during an update)."""
        return min(self.node_versions().values(), key=version_key)

    def history(self) -> tuple[HistoryEntry, ...]:
        """Every node installation of every update, oldest first."""
        return self.state().history

    def current_update(self) -> Update | None:
        """The running update, or the last one that ended (``None`` before the first)."""
        return self.state().update

    def validation_results(self) -> tuple[ValidationResult, ...] | None:
        """What the last validation found (``None`` before the first)."""
        return self.state().validation_results

    def installed_at(self) -> dict[str, float]:
        """When each node last finished installing a version (nodes never updated are
        missing: nothing records when their first version was installed)."""
        return {e.node: e.end_time for e in self.history() if e.state == "successful"}

    def ha_configured(self) -> bool:
        """``cluster ha show``: as last set, else on exactly when the cluster has two
        nodes (how ONTAP's setup leaves a two-node cluster)."""
        configured = self.state().ha_configured
        return len(self._members()) == 2 if configured is None else configured

    def update_in_progress(self) -> bool:
        update = self.state().update
        return update is not None and update.state.active

    def package_in_use(self, version: str) -> bool:
        """The package an unfinished update installs must stay in the repository."""
        update = self.state().update
        return update is not None and update.state.active and update.version == version

    def cluster(self) -> ClusterView:
        """``/api/cluster``."""
        ident = self.identity
        return ClusterView(ident.name, ident.uuid, self.version)

    def software(self) -> SoftwareView:
        """``/api/cluster/software``: the nodes, the last update's progress (durations to
        now while it runs) and the last validation's."""
        state = self.state()
        versions = self.node_versions(state)
        nodes = tuple(NodeVersion(n, v) for n, v in versions.items())
        lowest = min(versions.values(), key=version_key)
        update = state.update
        view = SoftwareView(lowest, "completed", nodes,
                            validation_results=state.validation_results)
        if update is not None:
            now = self._clock()
            view = SoftwareView(
                lowest, str(update.state), nodes,
                pending_version=update.version if update.state.active else None,
                start_time=update.start_time, end_time=update.end_time,
                elapsed_seconds=round((update.end_time or now) - update.start_time),
                estimated_seconds=round(sum(s.seconds for s in update.steps)),
                phases=phase_progress(update, now), steps=step_progress(update),
                validation_results=state.validation_results,
                post_update_checks=update.post_update_checks)
        validation = state.validation
        if validation is not None and (update is None or (
                not update.state.active and validation.start_time >= update.start_time)):
            view = replace(view, elapsed_seconds=round(validation.end_time
                                                       - validation.start_time),
                           estimated_seconds=round(validation.estimated_seconds))
        return view


def _duration(start: float | None, end: float | None, now: float) -> int:
    if start is None:
        return 0
    return max(0, round((end if end is not None else now) - start))


def _held_at(update: Update, index: int) -> bool:
    """While the update is paused or a pause or cancel is pending, its current step (and
    that step's phase) shows the update's state instead of its own."""
    return update.state.held and index == update.current


def phase_progress(update: Update, now: float) -> tuple[PhaseProgress, ...]:
    """One entry per phase and node, in plan order, with its aggregate state."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, step in enumerate(update.steps):
        groups.setdefault((step.phase, step.node), []).append(index)
    details = []
    for (phase, node), indices in groups.items():
        steps = [update.steps[index] for index in indices]
        states = {s.state for s in steps}
        if any(_held_at(update, index) for index in indices):
            state = str(update.state)
        elif states == {"completed"}:
            state = "completed"
        elif "failed" in states:
            state = "failed"
        elif states == {"waiting"}:
            state = "waiting"
        else:
            state = "in_progress"
        start = next((s.start_time for s in steps if s.start_time is not None), None)
        end = steps[-1].end_time if state == "completed" else None
        details.append(PhaseProgress(phase, node, state, round(sum(s.seconds for s in steps)),
                                     _duration(start, end, now)))
    return tuple(details)


def step_progress(update: Update) -> tuple[StepProgress, ...]:
    """Every step that has started (and the one a paused update waits at), in plan
    order, with its issue and, when it failed, the corrective action."""
    details = []
    for index, step in enumerate(update.steps):
        held = _held_at(update, index)
        if step.start_time is None and not held:
            continue
        details.append(StepProgress(
            step.name, str(update.state) if held else step.state, step.node, step.start_time,
            step.end_time, step.message, step.code,
            step.action if step.state == "failed" else ""))
    return tuple(details)
