"""The database tables (SQLModel). `XBase` holds the user-editable fields, `X(table=True)`
adds what the platform owns; services in the sibling modules take a Session explicitly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from trainyard.platform.status import FailureReason, RunStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


def _fk(target: str) -> Any:
    return Field(foreign_key=target, index=True, ondelete="CASCADE")


class Project(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=100)
    description: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class ExperimentGroup(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = _fk("project.id")
    name: str = Field(max_length=100)
    description: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Dataset(SQLModel, table=True):
    """A registered ImageFolder root, stored relative to the datasets root."""

    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = _fk("project.id")
    name: str = Field(max_length=100)
    path: str  # relative to Settings.datasets_dir
    scan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    scanned_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ModelEntry(SQLModel, table=True):
    """A saved model reference; `parameters` and `image_size` were measured when it was saved
    (building a hub model again for every listing would take seconds each)."""

    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = _fk("project.id")
    name: str = Field(max_length=100)
    kind: str = Field(max_length=20)  # preset, hub or local
    ref: str  # preset name, hub id or absolute folder: what a config's model.name gets
    parameters: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    image_size: int | None = None  # the model's own input side, pixels
    created_at: datetime = Field(default_factory=utcnow)


class AugmentationPreset(SQLModel, table=True):
    """A saved set of augmentation parameters: a trainer preset plus validated overrides, the
    same pair a config's `augmentation` section holds."""

    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = _fk("project.id")
    name: str = Field(max_length=100)
    base: str = Field(max_length=50)  # a trainer preset: none, light, standard, strong
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class StoredConfig(SQLModel, table=True):
    """A saved TrainConfig. Saving under an existing name adds a version; runs freeze a copy."""

    __tablename__ = "train_config"
    __table_args__ = (UniqueConstraint("project_id", "name", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = _fk("project.id")
    name: str = Field(max_length=100)
    version: int = 1
    body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    __table_args__ = (
        # The scheduler's query: queued runs by priority, then age.
        Index("ix_run_queue", "status", "priority", "id"),
        Index("ix_run_project_created", "project_id", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = _fk("project.id")
    group_id: int | None = Field(
        default=None, foreign_key="experimentgroup.id", ondelete="SET NULL"
    )
    config_id: int | None = Field(default=None, foreign_key="train_config.id", ondelete="SET NULL")
    name: str = Field(max_length=200)
    config: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # frozen at submit
    status: RunStatus = Field(default=RunStatus.QUEUED, index=True)
    priority: int = 0
    devices: int = 1
    max_retries: int = 0
    attempt: int = 0  # 1 for the first submission; each retry adds one
    submission_id: str | None = Field(default=None, index=True)
    node: str | None = None
    run_dir: str | None = None
    cancel_requested: bool = False  # the control loop stops the Ray job, then CANCELLED
    failure_reason: FailureReason | None = None
    failure_message: str | None = None
    progress: float = 0.0  # 0..1 over the whole run
    epoch: int | None = None
    best_metric: float | None = None
    log_lines: int = 0  # lines stored, all attempts together (the next seq)
    attempt_log_lines: int = 0  # lines of the current attempt's Ray log already stored
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None


class RunLog(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("run_id", "seq"),)
    # BIGINT: a busy server writes millions of lines. SQLite autoincrements only INTEGER keys.
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    run_id: int = Field(foreign_key="run.id", ondelete="CASCADE")
    seq: int
    attempt: int = 1
    time: datetime = Field(default_factory=utcnow)
    line: str


class Metric(SQLModel, table=True):
    __table_args__ = (Index("ix_metric_run_name", "run_id", "name", "epoch"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", ondelete="CASCADE")
    epoch: int | None = None
    step: int | None = None
    split: str = Field(max_length=20)  # train, val, test
    name: str = Field(max_length=50)
    value: float
    time: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True, max_length=100)
    password_hash: str
    is_admin: bool = False
    created_at: datetime = Field(default_factory=utcnow)
