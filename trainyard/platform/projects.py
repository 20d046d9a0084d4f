"""Projects: the top level. Deleting one deletes its contents, refused while runs are active."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from trainyard.platform.errors import Conflict, NotFound, PlatformError
from trainyard.platform.models import Project, Run
from trainyard.platform.status import RunStatus

MAX_NAME = 100


def clean_name(name: str, what: str = "project name") -> str:
    """`name` stripped; refused when empty or longer than the columns hold (100)."""
    name = (name or "").strip()
    if not name:
        raise PlatformError(f"{what}: must not be empty")
    if len(name) > MAX_NAME:
        raise PlatformError(f"{what}: at most {MAX_NAME} characters (got {len(name)})")
    return name


def create_project(session: Session, name: str, description: str = "") -> Project:
    name = clean_name(name)
    if session.exec(select(Project).where(Project.name == name)).first():
        raise Conflict(f"a project named {name!r} already exists")
    project = Project(name=name, description=description)
    session.add(project)
    try:
        session.flush()
    except IntegrityError:  # a concurrent create won the race
        session.rollback()
        raise Conflict(f"a project named {name!r} already exists") from None
    return project


def get_project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project with id {project_id}")
    return project


def find_project(session: Session, name: str) -> Project:
    project = session.exec(select(Project).where(Project.name == name)).first()
    if project is None:
        raise NotFound(f"no project named {name!r}")
    return project


def list_projects(session: Session) -> list[Project]:
    return list(session.exec(select(Project).order_by(col(Project.name))))


def rename_project(session: Session, project_id: int, new_name: str) -> Project:
    project = get_project(session, project_id)
    new_name = clean_name(new_name)
    clash = session.exec(select(Project).where(Project.name == new_name)).first()
    if clash and clash.id != project_id:
        raise Conflict(f"a project named {new_name!r} already exists")
    project.name = new_name
    session.add(project)
    return project


def delete_project(session: Session, project_id: int) -> None:
    project = get_project(session, project_id)
    active = session.exec(
        select(func.count())
        .select_from(Run)
        .where(
            Run.project_id == project_id,
            col(Run.status).in_([RunStatus.STARTING, RunStatus.RUNNING]),
        )
    ).one()
    if active:
        raise Conflict(f"project {project.name!r} has {active} active run(s); cancel them first")
    session.delete(project)  # ON DELETE CASCADE removes groups, datasets, configs, runs, logs


def run_counts(session: Session, project_id: int) -> dict[str, int]:
    rows = session.exec(
        select(Run.status, func.count()).where(Run.project_id == project_id).group_by(Run.status)
    ).all()
    counts = Counter({str(status): n for status, n in rows})
    return {s.value: counts.get(s.value, 0) for s in RunStatus}
