"""Cluster: Ray's nodes (alive or dead) and their devices, what trainyard's runs hold, the queue,
this host's GPUs through NVML, and a link to the Ray dashboard.

Ray is read through its dashboard's HTTP API (never `ray.init()` in the web process), behind a
short shared cache: the cluster is the same for every session, so ten open browsers polling
every few seconds still cost one request per `RESOURCES_TTL_S`.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import gradio as gr
import pandas as pd
from sqlalchemy import func
from sqlmodel import col, select

from trainyard.platform import runs
from trainyard.platform.control import Capacity
from trainyard.platform.models import Run
from trainyard.platform.ray_cluster import (
    ClusterResources,
    GpuStats,
    cluster_resources,
    local_gpu_stats,
)
from trainyard.platform.status import RunStatus
from trainyard.ui.common import UIContext, user_errors

log = logging.getLogger(__name__)

REFRESH_PERIOD_S = 5.0
RESOURCES_TTL_S = 4.0
RAY_TIMEOUT_S = 3  # a dashboard that does not answer must not hold a handler thread long
QUEUE_ROWS = 20
GIB = 1024**3
NODE_COLUMNS = ["node", "ip", "role", "state", "GPUs", "CPUs", "memory GiB", "busy", "runs"]
GPU_COLUMNS = ["GPU", "name", "use %", "memory used GiB", "memory total GiB"]
RUN_COLUMNS = ["run", "name", "status", "node", "devices", "progress"]
QUEUE_COLUMNS = ["run", "name", "priority", "devices", "waiting since"]
NO_NVML = "no GPUs visible to NVML on this host"


class SharedReading:
    """`fetch()` at most once per `ttl_s`, shared by every session. A failure is kept too, as
    its message: an unreachable dashboard is asked once per period, not once per browser."""

    def __init__(
        self,
        fetch: Callable[[], Any],
        ttl_s: float = RESOURCES_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._value: Any = None

    def get(self) -> Any:
        """The value, or a one-line message (a str) saying why it could not be read."""
        with self._lock:  # one request in flight; concurrent callers wait for its answer
            if self._at is None or self._clock() - self._at >= self.ttl_s:
                try:
                    self._value = self._fetch()
                except Exception as e:  # Ray's errors vary by failure; all mean "not now"
                    log.warning("reading the cluster failed: %s", e)
                    self._value = f"{type(e).__name__}: {e}"
                self._at = self._clock()
            return self._value


def nodes_table(res: ClusterResources, active: list[Any]) -> pd.DataFrame:
    rows = []
    for n in sorted(res.nodes, key=lambda n: (not n.alive, not n.is_head, n.ip)):
        here = [r for r in active if r.node in (n.ip, n.node_id)]
        rows.append(
            {
                "node": n.node_id[:12],
                "ip": n.ip,
                "role": "head" if n.is_head else "worker",
                "state": "alive" if n.alive else "dead",
                "GPUs": int(n.gpus),
                "CPUs": int(n.cpus),
                "memory GiB": round(n.resources_total.get("memory", 0.0) / GIB, 1),
                "busy": sum(r.devices for r in here),
                "runs": ", ".join(f"#{r.id}" for r in here),
            }
        )
    return pd.DataFrame(rows, columns=NODE_COLUMNS)


def gpu_table(stats: list[GpuStats]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "GPU": g.index,
                "name": g.name,
                "use %": round(g.utilization_pct),
                "memory used GiB": round(g.memory_used_bytes / GIB, 2),
                "memory total GiB": round(g.memory_total_bytes / GIB, 2),
            }
            for g in stats
        ],
        columns=GPU_COLUMNS,
    )


def runs_table(active: list[Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run": r.id,
                "name": r.name,
                "status": str(r.status),
                "node": r.node or "",
                "devices": r.devices,
                "progress": f"{r.progress:.0%}",
            }
            for r in active
        ],
        columns=RUN_COLUMNS,
    )


def queue_table(queued: list[Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run": r.id,
                "name": r.name,
                "priority": r.priority,
                "devices": r.devices,
                "waiting since": r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            }
            for r in queued
        ],
        columns=QUEUE_COLUMNS,
    )


def summary_markdown(
    url: str | None, res: ClusterResources | str | None, busy: int, queued: int, threads: int
) -> str:
    lines = []
    if url is None:
        lines.append(
            "**Ray is not connected**: this app was opened without a Ray cluster, so queued "
            "runs wait and nothing trains. `python app.py` starts a local Ray head, or joins "
            "a cluster with `--ray-address http://HEAD:8265`."
        )
    else:
        link = html.escape(url, quote=True)
        line = f'Ray dashboard: <a href="{link}" target="_blank" rel="noopener">{link}</a>'
        host = urlsplit(url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            # The link works in a browser on the server itself; elsewhere it needs a tunnel.
            port = urlsplit(url).port or 8265
            line += f" (on the server; from elsewhere: `ssh -L {port}:127.0.0.1:{port} SERVER`)"
        lines.append(line)
    if isinstance(res, str):
        lines.append(
            f"**The Ray dashboard at {html.escape(url or '')} is not answering** ({res}). "
            "Check that the Ray head is up (`ray status` on it) and reachable from this server."
        )
    elif res is not None:
        devices = Capacity(res.total_gpus, res.total_cpus).devices(threads)
        unit = "GPUs" if res.total_gpus else f"CPU slots of {threads} cores"
        dead = len(res.nodes) - len(res.alive_nodes)
        lines.append(
            f"**{len(res.alive_nodes)} node(s) alive**"
            + (f", **{dead} dead**" if dead else "")
            + f" · {res.total_gpus} GPUs, {res.total_cpus} CPUs"
            + f" · devices ({unit}): **{max(devices - busy, 0)} free**, {busy} busy of {devices}"
        )
    lines.append(f"Runs holding devices: **{busy}** device(s) · queue: **{queued}** run(s) waiting")
    return "\n\n".join(lines)


def create_cluster_tab(ctx: UIContext) -> dict[str, Any]:
    url = ctx.ray_dashboard_url
    cluster = (
        SharedReading(lambda: cluster_resources(url, timeout_s=RAY_TIMEOUT_S)) if url else None
    )
    host_gpus = SharedReading(local_gpu_stats)
    threads = ctx.platform.settings.threads_per_run
    with gr.Row(equal_height=True):
        summary = gr.Markdown("Reading the cluster...", elem_id="ty-cluster-summary")
        with gr.Column(scale=0, min_width=200):
            refresh = gr.Button("Refresh", size="sm")
            live = gr.Checkbox(value=True, label=f"Refresh every {REFRESH_PERIOD_S:g} s")
    nodes = gr.Dataframe(pd.DataFrame(columns=NODE_COLUMNS), interactive=False, label="Nodes")
    gpus_note = gr.Markdown()
    gpus = gr.Dataframe(
        pd.DataFrame(columns=GPU_COLUMNS), interactive=False, label="GPUs on this host (NVML)"
    )
    with gr.Row():
        active = gr.Dataframe(
            pd.DataFrame(columns=RUN_COLUMNS), interactive=False, label="Runs holding devices"
        )
        queue = gr.Dataframe(
            pd.DataFrame(columns=QUEUE_COLUMNS),
            interactive=False,
            label=f"Queue (first {QUEUE_ROWS}, in start order)",
        )
    timer = gr.Timer(REFRESH_PERIOD_S, active=True)

    @user_errors
    def cluster_status() -> tuple[str, pd.DataFrame, str, pd.DataFrame, Any, Any]:
        with ctx.platform.session() as s:
            running = runs.active_runs(s)
            waiting = runs.queued_runs(s, limit=QUEUE_ROWS)
            queued = s.exec(
                select(func.count(col(Run.id))).where(Run.status == RunStatus.QUEUED)
            ).one()
        busy = sum(r.devices for r in running)
        res = cluster.get() if cluster else None
        node_rows = (
            nodes_table(res, running)
            if isinstance(res, ClusterResources)
            else pd.DataFrame(columns=NODE_COLUMNS)
        )
        stats = host_gpus.get()
        gpu_rows = gpu_table(stats if isinstance(stats, list) else [])
        return (
            summary_markdown(url, res, busy, int(queued), threads),
            node_rows,
            "" if len(gpu_rows) else NO_NVML,
            gpu_rows,
            runs_table(running),
            queue_table(waiting),
        )

    outputs = [summary, nodes, gpus_note, gpus, active, queue]
    refresh.click(cluster_status, None, outputs, api_name="cluster_status")
    timer.tick(cluster_status, None, outputs, api_visibility="private")
    gr.on(None, cluster_status, None, outputs, api_visibility="private")  # on page load
    live.change(lambda on: gr.Timer(active=bool(on)), [live], [timer], api_visibility="private")
    return {"summary": summary, "nodes": nodes}
