"""Stored training configs (validated `TrainConfig`s, versioned by name) and experiment groups."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func
from sqlmodel import Session, col, select

from trainyard.platform.errors import Conflict, NotFound, PlatformError
from trainyard.platform.models import ExperimentGroup, StoredConfig
from trainyard.platform.projects import get_project
from trainyard.trainer.config import ConfigError, TrainConfig


def validate(body: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.from_dict(body)
    except ConfigError as e:
        raise PlatformError(str(e).removeprefix("config: ")) from None


def save_config(session: Session, project_id: int, name: str, body: dict[str, Any]) -> StoredConfig:
    """Validate and store; saving an existing name adds a new version (runs keep theirs)."""
    get_project(session, project_id)
    name = (name or "").strip()
    if not name:
        raise PlatformError("config name: must not be empty")
    cfg = validate(body)
    latest = session.exec(
        select(func.max(StoredConfig.version)).where(
            StoredConfig.project_id == project_id, StoredConfig.name == name
        )
    ).one()
    row = StoredConfig(
        project_id=project_id, name=name, version=(latest or 0) + 1, body=cfg.to_dict()
    )
    session.add(row)
    session.flush()
    return row


def get_config(session: Session, config_id: int) -> StoredConfig:
    row = session.get(StoredConfig, config_id)
    if row is None:
        raise NotFound(f"no config with id {config_id}")
    return row


def list_configs(session: Session, project_id: int) -> list[StoredConfig]:
    """The newest version of each name."""
    newest = (
        select(StoredConfig.name, func.max(StoredConfig.version).label("v"))
        .where(StoredConfig.project_id == project_id)
        .group_by(StoredConfig.name)
        .subquery()
    )
    stmt = (
        select(StoredConfig)
        .join(
            newest,
            and_(col(StoredConfig.name) == newest.c.name, col(StoredConfig.version) == newest.c.v),
        )
        .where(StoredConfig.project_id == project_id)
        .order_by(col(StoredConfig.name))
    )
    return list(session.exec(stmt))


def create_group(
    session: Session, project_id: int, name: str, description: str = ""
) -> ExperimentGroup:
    get_project(session, project_id)
    name = (name or "").strip()
    if not name:
        raise PlatformError("group name: must not be empty")
    if session.exec(
        select(ExperimentGroup).where(
            ExperimentGroup.project_id == project_id, ExperimentGroup.name == name
        )
    ).first():
        raise Conflict(f"this project already has a group named {name!r}")
    group = ExperimentGroup(project_id=project_id, name=name, description=description)
    session.add(group)
    session.flush()
    return group


def list_groups(session: Session, project_id: int) -> list[ExperimentGroup]:
    stmt = select(ExperimentGroup).where(ExperimentGroup.project_id == project_id)
    return list(session.exec(stmt.order_by(col(ExperimentGroup.name))))
