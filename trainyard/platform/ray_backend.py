"""`RayJobBackend`: the control loop's `JobBackend` on a real Ray cluster.

Adapts `jobs.RayJobs` (the Jobs API) and `ray_cluster` (the head, the State API) to the
small interface `control.ControlPlane` needs, and caches the cluster's capacity for a few
seconds: the scheduler asks every tick, and the answer changes only when nodes come or go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from trainyard.platform.control import Capacity, JobRequest, JobView
from trainyard.platform.jobs import RayJobs
from trainyard.platform.ray_cluster import (
    DEFAULT_DASHBOARD_PORT,
    ClusterResources,
    cluster_resources,
    connect,
    dashboard_url_from_address,
)
from trainyard.settings import Settings

log = logging.getLogger(__name__)

CAPACITY_TTL_S = 5.0


@dataclass
class RayJobBackend:
    dashboard_url: str
    jobs: RayJobs = field(init=False)
    _capacity: tuple[float, Capacity] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.jobs = RayJobs(self.dashboard_url)

    def resources(self) -> ClusterResources:
        return cluster_resources(self.dashboard_url)

    def capacity(self) -> Capacity:
        now = time.monotonic()
        if self._capacity and now - self._capacity[0] < CAPACITY_TTL_S:
            return self._capacity[1]
        res = self.resources()
        cap = Capacity(gpus=res.total_gpus, cpus=res.total_cpus)
        self._capacity = (now, cap)
        return cap

    def submit(self, req: JobRequest) -> None:
        self.jobs.submit(
            req.submission_id,
            req.entrypoint,
            num_gpus=req.num_gpus,
            num_cpus=req.num_cpus,
            env=req.env,
            metadata=req.metadata,
        )  # no working_dir: Ray would upload the checkout (and its 7 GB venv) per job

    def status(self, submission_id: str) -> JobView | None:
        info = self.jobs.status(submission_id)
        if info is None:
            return None
        message = info.message or ""
        if info.driver_exit_code is not None and "exit code" not in message:
            message = f"{message} (exit code {info.driver_exit_code})".strip()
        return JobView(
            phase=info.state,
            message=message,
            exit_code=info.driver_exit_code,
            node=info.driver_node_ip or info.driver_node_id,
        )

    def logs(self, submission_id: str) -> str:
        return self.jobs.logs(submission_id)

    def stop(self, submission_id: str) -> None:
        self.jobs.stop(submission_id)


DASHBOARD_FILE = "ray_dashboard_url"


def connect_backend(settings: Settings) -> tuple[RayJobBackend, Callable[[], None]]:
    """Join `settings.ray_address`, or start (or reuse) the embedded local head. The URL is
    written under the storage root, so the CLI finds a head that had to take another port."""
    conn = connect(settings.ray_address or None, num_gpus=settings.num_gpus)
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    (settings.storage_dir / DASHBOARD_FILE).write_text(conn.dashboard_url)
    log.info(
        "Ray dashboard: %s (%s)",
        conn.dashboard_url,
        "embedded head" if conn.embedded else "joined cluster",
    )
    return RayJobBackend(conn.dashboard_url), conn.close


def default_dashboard_url(settings: Settings) -> str:
    if settings.ray_address:
        return dashboard_url_from_address(settings.ray_address)
    recorded = settings.storage_dir / DASHBOARD_FILE
    if recorded.exists():
        return recorded.read_text().strip()
    return f"http://127.0.0.1:{DEFAULT_DASHBOARD_PORT}"


def cluster_devices_or_none(settings: Settings) -> int | None:
    """Devices of the cluster the CLI would submit to, or None when it is not reachable
    (the scheduler refuses an unsatisfiable run later, when it sees the cluster)."""
    try:
        res = cluster_resources(default_dashboard_url(settings), timeout_s=3)
    except Exception:
        return None
    return Capacity(res.total_gpus, res.total_cpus).devices(settings.threads_per_run)


def describe_cluster(settings: Settings) -> str:
    url = default_dashboard_url(settings)
    try:
        res = cluster_resources(url, timeout_s=5)
    except Exception as e:
        return f"Ray dashboard {url}: not reachable ({e})"
    lines = [
        f"Ray dashboard {url}: {len(res.alive_nodes)} node(s) alive, "
        f"{res.total_gpus} GPU(s), {res.total_cpus} CPU(s)"
    ]
    for n in res.nodes:
        state = "alive" if n.alive else "DEAD"
        lines.append(f"  {n.ip or n.node_id[:12]:<16} {state:<5} GPUs {n.gpus:g}  CPUs {n.cpus:g}")
    return "\n".join(lines)
