"""The cluster build's phases file (infra/ansible/phases.yaml) as typed models: phases of role runs ordered by
`after`, the gate that must hold before the next phase, and the secrets the roles read from their environment.

Every problem is one line naming the file and the bad value, with a did-you-mean hint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.errors import did_you_mean, read_yaml


class PhasesError(ValueError):
    """A phases file, or a selection from it, that cannot be used."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleRun(_Model):
    """One Ansible role applied to the hosts a pattern names, after the roles of its phase it names."""

    role: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    hosts: str
    after: tuple[str, ...] = ()
    become: bool = True  # escalate with sudo on the hosts (false for a role that only calls APIs from localhost)


class ComplianceGate(_Model):
    """Every host of the phase scores at least min_score (percent) on the policy."""

    policy: str
    min_score: float = Field(ge=0, le=100)


class Gate(_Model):
    """What must hold once a phase is applied, before the next phase starts."""

    compliance: ComplianceGate | None = None
    nodes_ready: bool = False
    workers_registered: bool = False


class Phase(_Model):
    """A step of the build: a DAG of role runs."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    description: str = ""
    roles: tuple[RoleRun, ...]
    gate: Gate | None = None

    @model_validator(mode="after")
    def _dag(self) -> Phase:
        names = [r.role for r in self.roles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"phase {self.name}: role {dupes[0]!r} appears more than once")
        for run in self.roles:
            for before in run.after:
                if before not in names:
                    raise ValueError(f"phase {self.name}: role {run.role} runs after {before!r}, which is not a role "
                                     f"of this phase{did_you_mean(before, names)}")
        topological_order(self)  # a cycle is an error here already
        return self

    def run(self, role: str) -> RoleRun:
        """The role run of that role."""
        for run in self.roles:
            if run.role == role:
                return run
        raise PhasesError(f"phase {self.name} has no role {role!r}{did_you_mean(role, [r.role for r in self.roles])}")


class Phases(_Model):
    """The whole build: phases in order and the secrets (environment variable -> Prefect Secret block)."""

    phases: tuple[Phase, ...]
    secrets: dict[str, str] = {}

    @model_validator(mode="after")
    def _unique(self) -> Phases:
        names = [p.name for p in self.phases]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"phase {dupes[0]!r} appears more than once")
        return self

    def phase(self, name: str) -> Phase:
        """The phase of that name."""
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise PhasesError(f"no phase {name!r}{did_you_mean(name, [p.name for p in self.phases])}")


def topological_order(phase: Phase) -> list[RoleRun]:
    """The phase's role runs so that each comes after those it names (file order among the ready ones);
    a cycle is an error naming the roles on it."""
    runs = {r.role: r for r in phase.roles}
    done: list[RoleRun] = []
    placed: set[str] = set()
    while len(done) < len(runs):
        ready = [r for r in phase.roles if r.role not in placed and all(a in placed for a in r.after if a in runs)]
        if not ready:
            left = sorted(set(runs) - placed)
            raise ValueError(f"phase {phase.name}: the roles {', '.join(left)} wait for each other (a cycle in after)")
        done += ready
        placed |= {r.role for r in ready}
    return done


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        models: dict[int, type[BaseModel]] = {0: Phases, 2: Phase, 4: RoleRun}
        model: type[BaseModel] = models.get(len(loc) - 1, Phases)
        if len(loc) >= 3 and loc[2] == "gate":
            model = Gate if len(loc) == 4 else ComplianceGate
        return f"unknown key {where}{did_you_mean(str(loc[-1]), list(model.model_fields))}"
    message = error["msg"].removeprefix("Value error, ")
    suffix = "" if error["type"] == "value_error" else f", got {error.get('input')!r}"
    return f"{where + ': ' if where else ''}{message}{suffix}"


def parse_phases(data: Any, source: str, roles_dir: Path | None = None) -> Phases:
    """Validate phases data read from `source`; with roles_dir, every role must be a directory there."""
    if not isinstance(data, dict):
        raise PhasesError(f"{source}: the phases file must be a mapping at the top level")
    try:
        phases = Phases.model_validate(data)
    except ValidationError as exc:
        raise PhasesError(f"{source}: {_describe(exc)}") from None
    if roles_dir is not None:
        known = sorted(p.name for p in roles_dir.iterdir() if p.is_dir()) if roles_dir.is_dir() else []
        for phase in phases.phases:
            for run in phase.roles:
                if run.role not in known:
                    raise PhasesError(f"{source}: phase {phase.name}: role {run.role!r} is not in {roles_dir}"
                                      f"{did_you_mean(run.role, known) if known else ' (no roles there)'}")
    return phases


def load_phases(path: str | Path, roles_dir: Path | None = None) -> Phases:
    """Read and validate a phases YAML file."""
    path = Path(path)
    return parse_phases(read_yaml(path, "the phases file", PhasesError), str(path), roles_dir)


def select(phases: Phases, names: Sequence[str] | None = None, roles: Sequence[str] | None = None) -> list[Phase]:
    """The phases to run (all, or those named, in file order), each with only the roles named (if any); `after`
    entries naming a role left out are dropped. An unknown phase or role is an error with a hint."""
    for name in names or ():
        phases.phase(name)
    every_role = [r.role for p in phases.phases for r in p.roles]
    for role in roles or ():
        if role not in every_role:
            raise PhasesError(f"no role {role!r} in any phase{did_you_mean(role, every_role)}")
    chosen: list[Phase] = []
    for phase in phases.phases:
        if names and phase.name not in names:
            continue
        if roles:
            kept = [r for r in phase.roles if r.role in roles]
            if not kept:
                continue
            keep = {r.role for r in kept}
            phase = phase.model_copy(update={"roles": tuple(
                r.model_copy(update={"after": tuple(a for a in r.after if a in keep)}) for r in kept)})
        chosen.append(phase)
    return chosen


def mermaid(phases: Sequence[Phase]) -> str:
    """The phases as a mermaid flowchart: one subgraph per phase, an edge per `after`, the gate between phases."""
    lines = ["flowchart TD"]
    previous_exit: str | None = None
    for phase in phases:
        lines.append(f"  subgraph {phase.name}[\"{phase.name}\"]")
        for run in phase.roles:
            lines.append(f"    {phase.name}__{run.role}[\"{run.role}<br/>{run.hosts}\"]")
        for run in phase.roles:
            lines += [f"    {phase.name}__{a} --> {phase.name}__{run.role}" for a in run.after]
        lines.append("  end")
        if previous_exit:
            lines.append(f"  {previous_exit} --> {phase.name}")
        previous_exit = phase.name
        if phase.gate is not None:
            holds = []
            if phase.gate.compliance:
                holds.append(f"{phase.gate.compliance.policy} >= {phase.gate.compliance.min_score:g}%")
            if phase.gate.nodes_ready:
                holds.append("RKE2 nodes Ready")
            if phase.gate.workers_registered:
                holds.append("workers registered")
            gate = f"{phase.name}__gate"
            lines += [f"  {gate}{{{{\"gate: {', '.join(holds)}\"}}}}", f"  {phase.name} --> {gate}"]
            previous_exit = gate
    return "\n".join(lines) + "\n"
