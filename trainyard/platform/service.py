"""`Platform`: what the UI and the CLI call. It owns the database engine, the Ray connection
and the control loop, and starts nothing at import time: `Platform.open(settings)` does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from trainyard.platform import configs, projects, runs
from trainyard.platform.control import ControlPlane, JobBackend
from trainyard.platform.db import make_engine, migrate
from trainyard.platform.models import Run
from trainyard.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Platform:
    settings: Settings
    engine: Engine
    jobs: JobBackend | None = None
    control: ControlPlane | None = None
    dashboard_url: str | None = None
    closers: list[Any] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings, with_ray: bool = True, start_loop: bool = True) -> Platform:
        settings.storage_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        migrate(engine)
        plat = cls(settings, engine)
        if with_ray:
            from trainyard.platform.ray_backend import connect_backend

            backend, close = connect_backend(settings)
            plat.jobs = backend
            plat.dashboard_url = backend.dashboard_url
            plat.closers.append(close)
            plat.control = ControlPlane(
                engine, backend, settings.storage_dir, threads_per_run=settings.threads_per_run
            )
            if start_loop:
                plat.control.start()
        return plat

    def close(self) -> None:
        if self.control:
            self.control.stop()
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("error while shutting down")
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except Exception:
                s.rollback()
                raise

    # ---- the actions the UI and CLI share --------------------------------------------------

    def cluster_devices(self) -> int | None:
        if self.control is None:
            return None
        try:
            return self.control.capacity_devices()
        except Exception as e:  # Ray unreachable: the scheduler re-checks before submitting
            log.warning("cannot read cluster capacity: %s", e)
            return None

    def submit(
        self,
        project_id: int,
        config: dict[str, Any],
        *,
        name: str | None = None,
        priority: int = 0,
        devices: int = 1,
        max_retries: int = 0,
        group_id: int | None = None,
        config_id: int | None = None,
    ) -> Run:
        capacity = self.cluster_devices()
        config = self.absolute_data_root(config)
        with self.session() as s:
            return runs.submit_run(
                s,
                project_id,
                config,
                name=name,
                priority=priority,
                devices=devices,
                max_retries=max_retries,
                cluster_devices=capacity,
                group_id=group_id,
                config_id=config_id,
            )

    def absolute_data_root(self, config: dict[str, Any]) -> dict[str, Any]:
        """Jobs run in a directory of Ray's choosing: a relative `data.root` is taken as
        relative to the datasets root (or, failing that, this process's directory)."""
        root = (config.get("data") or {}).get("root")
        if not isinstance(root, str) or not root or Path(root).is_absolute():
            return config
        candidate = self.settings.datasets_dir / root
        path = candidate if candidate.exists() else Path(root)
        return {**config, "data": {**config["data"], "root": str(path.resolve())}}

    def submit_stored(self, config_id: int, **kw: Any) -> Run:
        with self.session() as s:
            stored = configs.get_config(s, config_id)
            body, project_id = stored.body, stored.project_id
        return self.submit(project_id, body, config_id=config_id, **kw)

    def cancel(self, run_id: int) -> Run:
        with self.session() as s:
            return runs.request_cancel(s, run_id)

    def retry(self, run_id: int) -> Run:
        with self.session() as s:
            return runs.retry_run(s, run_id)

    def ensure_project(self, name: str) -> int:
        with self.session() as s:
            existing = [p for p in projects.list_projects(s) if p.name == name]
            project = existing[0] if existing else projects.create_project(s, name)
            return project.id  # type: ignore[return-value]

    def run_dir(self, run_id: int) -> Path | None:
        with self.session() as s:
            run = runs.get_run(s, run_id)
            return Path(run.run_dir) if run.run_dir else None
