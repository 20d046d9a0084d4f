"""Stored training configs (validated `TrainConfig`s, versioned by name) and experiment groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import and_, func
from sqlmodel import Session, col, select

from trainyard.platform.datasets import data_root_folder
from trainyard.platform.errors import Conflict, NotFound, PlatformError
from trainyard.platform.models import ExperimentGroup, StoredConfig
from trainyard.platform.projects import clean_name, get_project
from trainyard.trainer.config import ConfigError, TrainConfig

MISSING = "(not set)"  # config_diff's value for a field one version does not have


def validate(body: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.from_dict(body)
    except ConfigError as e:
        raise PlatformError(str(e).removeprefix("config: ")) from None


def save_config(session: Session, project_id: int, name: str, body: dict[str, Any]) -> StoredConfig:
    """Validate and store; saving an existing name adds a new version (runs keep theirs)."""
    return store_config(session, project_id, name, body)[0]


def store_config(
    session: Session,
    project_id: int,
    name: str,
    body: dict[str, Any],
    datasets_dir: Path | None = None,
) -> tuple[StoredConfig, bool]:
    """`save_config`, and whether a version was added: saving the newest version's body
    again adds none (a list of identical versions would hide the ones that differ). With
    `datasets_dir`, two spellings of one `data.root` folder count as the same."""
    get_project(session, project_id)
    name = clean_name(name, "config name")
    resolved = validate(body).to_dict()
    latest = session.exec(
        select(StoredConfig)
        .where(StoredConfig.project_id == project_id, StoredConfig.name == name)
        .order_by(col(StoredConfig.version).desc())
    ).first()
    same = comparable_body(resolved, datasets_dir)
    if latest is not None and comparable_body(latest.body, datasets_dir) == same:
        return latest, False
    version = (latest.version if latest else 0) + 1
    row = StoredConfig(project_id=project_id, name=name, version=version, body=resolved)
    session.add(row)
    session.flush()
    return row, True


def get_config(session: Session, config_id: int) -> StoredConfig:
    row = session.get(StoredConfig, config_id)
    if row is None:
        raise NotFound(f"no config with id {config_id}")
    return row


def list_config_versions(session: Session, project_id: int, name: str) -> list[StoredConfig]:
    """Every version of one config, newest first. Saving an older body again restores it as
    a new version; versions are never rewritten, so a run's `config_id` stays meaningful."""
    get_project(session, project_id)
    name = (name or "").strip()
    stmt = (
        select(StoredConfig)
        .where(StoredConfig.project_id == project_id, StoredConfig.name == name)
        .order_by(col(StoredConfig.version).desc())
    )
    rows = list(session.exec(stmt))
    if not rows:
        names = ", ".join(c.name for c in list_configs(session, project_id)) or "none saved yet"
        raise NotFound(f"this project has no config named {name!r} (configs: {names})")
    return rows


def get_config_version(session: Session, project_id: int, name: str, version: int) -> StoredConfig:
    return find_version(list_config_versions(session, project_id, name), version)


def find_version(versions: list[StoredConfig], version: int) -> StoredConfig:
    """`version` among one config's versions (newest first, as `list_config_versions` gives)."""
    for row in versions:
        if row.version == version:
            return row
    newest = versions[0]
    raise NotFound(f"config {newest.name!r} has no version {version} (1 to {newest.version})")


def comparable_body(body: dict[str, Any], datasets_dir: Path | None) -> dict[str, Any]:
    """`body` with `data.root` as the folder it names (relative roots lie under the datasets
    root), so `digits` and `/srv/datasets/digits` compare equal. Without a datasets root,
    `body` as it is."""
    data = body.get("data") or {}
    folder = data_root_folder(data.get("root"), datasets_dir) if datasets_dir else None
    return body if folder is None else {**body, "data": {**data, "root": str(folder)}}


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted field, old value, new value) for every field that differs, in the order the
    fields appear; a field one side lacks has the value `MISSING` there."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    keys = list(flat_old) + [k for k in flat_new if k not in flat_old]
    return [
        (k, flat_old.get(k, MISSING), flat_new.get(k, MISSING))
        for k in keys
        if flat_old.get(k, MISSING) != flat_new.get(k, MISSING)
    ]


def _flatten(body: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, dict):  # an empty mapping adds no field: {} and absent agree
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


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
