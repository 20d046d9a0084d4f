"""The Ray cluster trainyard runs on: join one by its dashboard URL, or start a local head.

The web process never calls `ray.init()`: it is not a Ray driver, and a driver inside a
threaded web server ties the app's life to the cluster's. Everything here talks to Ray
through the dashboard's HTTP API (the Jobs API and the State API), which works the same
for a head on this machine and for a remote cluster.

`connect(address)` is the one door: with an address it checks the dashboard answers; without
one it starts (or reuses) a local head with `LocalRayHead`. A head trainyard started is
stopped by trainyard; one it found running is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

AUTH_MODES = ("disabled", "token")
DEFAULT_AUTH_MODE = "disabled"
DEFAULT_DASHBOARD_PORT = 8265
# A Ray job that waits for resources fails after this long. trainyard queues runs in its
# database and submits only when a device is free, so a long wait means a slow start
# (a big runtime env, a node still joining), not a queue: don't fail it after Ray's 900 s.
JOB_START_TIMEOUT_S = 3600
HEAD_START_TIMEOUT_S = 180.0
HEAD_STOP_TIMEOUT_S = 30.0
# Ray's unix sockets live at TEMP_DIR/session_<date>_<pid>/sockets/plasma_store: about 61
# characters below TEMP_DIR, and a socket path may be at most 107 bytes long.
MAX_TEMP_DIR_CHARS = 45
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


# What a client needs to talk to a cluster started with RAY_AUTH_MODE=token.
TOKEN_HINT = (
    "set RAY_AUTH_MODE=token and give trainyard the cluster's token (RAY_AUTH_TOKEN, "
    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) in the environment it starts with"
)


class RayClusterError(RuntimeError):
    """Ray could not be started or reached. The message says what to do about it."""


# ---- environment ---------------------------------------------------------------------------


def ray_env(auth_mode: str | None = None) -> dict[str, str]:
    """The environment every Ray-related process needs: the head, the web process, the CLI.

    `RAY_AUTH_MODE` is always set explicitly. Left unset, Ray 2.60 turns token auth on by
    itself when `~/.ray/auth_token` exists (any earlier local `ray.init()` writes one), so a
    head started today may want a token that a client started without the variable never
    sends: "Missing authentication token". Explicit and equal everywhere, it cannot drift.

    The default is `disabled` because the embedded head is a single-machine cluster whose
    dashboard (and with it the Jobs API, which runs arbitrary commands) listens on 127.0.0.1
    only, and no token has to be created, stored and handed to every process. Set
    `RAY_AUTH_MODE=token` (with `RAY_AUTH_TOKEN` or `RAY_AUTH_TOKEN_PATH`) for a cluster on a
    network: it is honoured here and `ray_cluster.yaml` does so. Note that Ray's GCS port
    listens on all interfaces even for a local head: firewall it on an untrusted network.
    """
    mode = (auth_mode or os.environ.get("RAY_AUTH_MODE") or DEFAULT_AUTH_MODE).lower()
    if mode not in AUTH_MODES:
        raise RayClusterError(
            f"RAY_AUTH_MODE={mode!r} is not one of {', '.join(AUTH_MODES)}; "
            "use 'disabled' for a local head or 'token' for a networked cluster"
        )
    return {
        "RAY_AUTH_MODE": mode,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_JOB_START_TIMEOUT_SECONDS": str(JOB_START_TIMEOUT_S),
    }


def apply_ray_env(auth_mode: str | None = None) -> dict[str, str]:
    """Put `ray_env()` into this process's environment, before it first talks to Ray.

    Ray reads `RAY_AUTH_MODE` once per process and caches it, so setting it after a Ray
    client has run changes nothing. Raises if this process already settled on another mode.
    """
    env = ray_env(auth_mode)
    os.environ.update(env)
    cached = _cached_auth_mode()
    if cached is not None and cached != env["RAY_AUTH_MODE"]:
        raise RayClusterError(
            f"this process already uses Ray auth mode {cached!r} but {env['RAY_AUTH_MODE']!r} "
            "was asked for: set RAY_AUTH_MODE in the environment that starts trainyard"
        )
    return env


def _cached_auth_mode() -> str | None:
    # Private API (ray._raylet has no type stubs for it): the mode Ray cached in this process.
    raylet = importlib.import_module("ray._raylet")
    mode_enum = getattr(raylet, "AuthenticationMode", None)
    get_mode = getattr(raylet, "get_authentication_mode", None)
    if mode_enum is None or get_mode is None:  # a Ray without token auth: nothing to disagree
        return None
    return "token" if get_mode() == mode_enum.TOKEN else "disabled"


# ---- local GPUs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuStats:
    index: int
    name: str
    utilization_pct: float
    memory_used_bytes: int
    memory_total_bytes: int


def local_gpu_stats() -> list[GpuStats]:
    """Utilisation and memory of this machine's GPUs via NVML; empty without NVIDIA's driver.

    These are all physical devices, whatever `CUDA_VISIBLE_DEVICES` says: the numbers are for
    a person watching the machine, not for scheduling (Ray's resources are for that).
    """
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        # NVMLError_LibraryNotFound is what a machine without the driver raises: no GPUs.
        log.debug("NVML unavailable (%s): reporting no GPUs", e)
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                GpuStats(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    utilization_pct=float(util.gpu),
                    memory_used_bytes=int(mem.used),
                    memory_total_bytes=int(mem.total),
                )
            )
        return out
    except pynvml.NVMLError as e:
        log.warning("reading GPU stats through NVML failed: %s", e)
        return []
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def detect_gpus() -> int:
    """How many GPUs a head on this machine should advertise.

    `CUDA_VISIBLE_DEVICES`, when set, wins: Ray hands out exactly those ids, so counting every
    physical device would advertise GPUs no job can see.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return len(ids)
    return len(local_gpu_stats())


# ---- cluster resources ---------------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    ip: str
    alive: bool
    is_head: bool
    resources_total: dict[str, float]

    @property
    def gpus(self) -> float:
        return self.resources_total.get("GPU", 0.0)

    @property
    def cpus(self) -> float:
        return self.resources_total.get("CPU", 0.0)


@dataclass(frozen=True)
class ClusterResources:
    """What the cluster has. Totals count alive nodes only: a dead node's GPUs run nothing."""

    nodes: list[NodeInfo] = field(default_factory=list)

    @property
    def alive_nodes(self) -> list[NodeInfo]:
        return [n for n in self.nodes if n.alive]

    @property
    def total_gpus(self) -> int:
        # Whole GPUs: trainyard books devices, and a fractional GPU is not one.
        return int(sum(n.gpus for n in self.alive_nodes))

    @property
    def total_cpus(self) -> int:
        return int(sum(n.cpus for n in self.alive_nodes))


def check_address_not_overridden(dashboard_url: str) -> None:
    """Refuse to run when `RAY_API_SERVER_ADDRESS` or `RAY_ADDRESS` would redirect us.

    Ray's Jobs and State clients silently prefer those variables to the address they are
    given, so a leftover `RAY_ADDRESS` would send trainyard's runs to another cluster.
    """
    for var in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(var)
        if value and value.rstrip("/") != dashboard_url.rstrip("/"):
            raise RayClusterError(
                f"{var}={value} is set, and Ray's clients would use it instead of "
                f"{dashboard_url}: unset it; trainyard takes the cluster address from "
                "TRAINYARD_RAY_ADDRESS (or --ray-address)"
            )


def cluster_resources(dashboard_url: str, timeout_s: int = 10) -> ClusterResources:
    """The cluster's nodes and their resources, read through the dashboard's State API.

    No `ray.init()`: `list_nodes(address=URL)` is a plain HTTP call, safe in a web process.
    """
    from ray.exceptions import AuthenticationError
    from ray.util.state import list_nodes
    from ray.util.state.exception import RayStateApiException

    check_address_not_overridden(dashboard_url)
    try:
        states = list_nodes(
            address=dashboard_url, detail=True, timeout=timeout_s, raise_on_missing_output=False
        )
    except AuthenticationError as e:
        raise RayClusterError(
            f"the Ray cluster at {dashboard_url} refused to list its nodes: {TOKEN_HINT}"
        ) from e
    except (RayStateApiException, ConnectionError, OSError) as e:
        raise RayClusterError(
            f"cannot read the nodes of the Ray cluster at {dashboard_url}: {e}; "
            "check that the cluster is up (`ray status` on the head)"
        ) from e
    nodes = [
        NodeInfo(
            node_id=s.node_id,
            ip=s.node_ip,
            alive=s.state == "ALIVE",
            is_head=bool(s.is_head_node),
            resources_total={k: float(v) for k, v in (s.resources_total or {}).items()},
        )
        for s in states
    ]
    return ClusterResources(nodes=nodes)


# ---- the dashboard -------------------------------------------------------------------------


def dashboard_auth_mode(dashboard_url: str, timeout_s: float = 2.0) -> str | None:
    """The auth mode a Ray dashboard runs with ("disabled" or "token"), or None when no
    Ray dashboard answers at the URL.

    `/api/authentication_mode` is one of the few routes open without a token, so this tells
    "up" from "down", and says what a client needs, before any authenticated call.
    """
    try:
        with urllib.request.urlopen(
            dashboard_url.rstrip("/") + "/api/authentication_mode", timeout=timeout_s
        ) as resp:
            body = json.loads(resp.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    mode = body.get("authentication_mode") if isinstance(body, dict) else None
    return str(mode) if mode else None


def check_auth_matches(dashboard_url: str, cluster_mode: str, client_mode: str) -> None:
    """Refuse a cluster that wants a token when this process would not send one."""
    if cluster_mode == "token" and client_mode != "token":
        raise RayClusterError(
            f"the Ray cluster at {dashboard_url} requires token authentication: {TOKEN_HINT}"
        )


def dashboard_url_from_address(address: str) -> str:
    """`http://host:8265` from what a user types: a URL, or `host:port` of the dashboard."""
    address = address.strip().rstrip("/")
    if address.startswith("ray://") or address in ("auto", "local"):
        raise RayClusterError(
            f"Ray address {address!r}: trainyard talks to Ray through the dashboard; "
            f"give its URL instead, e.g. http://HEAD_HOST:{DEFAULT_DASHBOARD_PORT}"
        )
    if "://" not in address:
        address = "http://" + address
    if not address.startswith(("http://", "https://")):
        raise RayClusterError(
            f"Ray address {address!r} is not an http(s) URL; "
            f"give the dashboard URL, e.g. http://HEAD_HOST:{DEFAULT_DASHBOARD_PORT}"
        )
    return address


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do: a port whose last connections linger in TIME_WAIT is still free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# ---- a local head --------------------------------------------------------------------------


class LocalRayHead:
    """A Ray head on this machine, started as `ray start --head --block` in its own session.

    `--block` keeps `ray start` alive as the parent of every Ray process of this head, and
    on SIGTERM it tears them all down. So `stop()` signals that one process (then, if
    anything is left, its process group) and touches no other Ray on the machine. `ray stop`
    is never used: it kills every Ray process of every user session on the machine. On
    Linux the head also gets SIGTERM when the process that started it dies, however it dies.

    With `reuse_existing`, a Ray dashboard already answering on the default port is used
    as it is and left running by `stop()`.
    """

    def __init__(
        self,
        dashboard_port: int | None = None,
        reuse_existing: bool = True,
        auth_mode: str | None = None,
    ) -> None:
        self.dashboard_port = dashboard_port
        self.reuse_existing = reuse_existing
        self.auth_mode = auth_mode
        self.dashboard_url: str | None = None
        self.temp_dir: Path | None = None
        self.gcs_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def owned(self) -> bool:
        """True when this object started the head (and so `stop()` will stop it)."""
        return self._proc is not None

    def start(
        self,
        num_gpus: int | None = None,
        num_cpus: int | None = None,
        temp_dir: str | Path | None = None,
        timeout_s: float = HEAD_START_TIMEOUT_S,
    ) -> str:
        """Start the head (or find one) and return its dashboard URL once it answers.

        `num_gpus=None` detects GPUs (NVML, or `CUDA_VISIBLE_DEVICES`); a number advertises
        that many, real or not, which is how tests pretend to have GPUs on a CPU box.
        `num_cpus=None` lets Ray count the cores.
        """
        if self.dashboard_url is not None:
            return self.dashboard_url
        if self.reuse_existing:
            url = f"http://127.0.0.1:{self.dashboard_port or DEFAULT_DASHBOARD_PORT}"
            found = dashboard_auth_mode(url)
            if found is not None:
                check_auth_matches(url, found, ray_env(self.auth_mode)["RAY_AUTH_MODE"])
                log.info("using the Ray head already running at %s; trainyard won't stop it", url)
                self.dashboard_url = url
                return url
        return self._launch(num_gpus, num_cpus, temp_dir, timeout_s)

    def _launch(
        self,
        num_gpus: int | None,
        num_cpus: int | None,
        temp_dir: str | Path | None,
        timeout_s: float,
    ) -> str:
        ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
        if ray_bin is None:
            raise RayClusterError(
                "the `ray` command is not installed next to this Python; "
                "install trainyard's dependencies (pip install 'ray[default,train]')"
            )
        tmp = Path(temp_dir) if temp_dir else Path(tempfile.mkdtemp(prefix="trainyard-ray-"))
        if len(str(tmp)) > MAX_TEMP_DIR_CHARS:
            raise RayClusterError(
                f"Ray temp dir {tmp} is {len(str(tmp))} characters long; Ray's unix socket "
                f"paths under it would pass the 107-byte limit: use a path of at most "
                f"{MAX_TEMP_DIR_CHARS} characters, e.g. under /tmp"
            )
        tmp.mkdir(parents=True, exist_ok=True)
        if num_gpus is None:
            num_gpus = detect_gpus()
        port = self.dashboard_port
        if port is None:
            port = DEFAULT_DASHBOARD_PORT if _port_is_free(DEFAULT_DASHBOARD_PORT) else free_port()
        elif not _port_is_free(port):
            raise RayClusterError(
                f"dashboard port {port} is taken by another program; pick another port "
                "or leave it unset to get a free one"
            )
        self.gcs_port = free_port()
        agent_port = free_port()
        cmd = [
            ray_bin,
            "start",
            "--head",
            "--block",
            f"--temp-dir={tmp}",
            f"--num-gpus={num_gpus}",
            # Free ports, not Ray's defaults (6379, 10001, 52365): a user's own Ray, or a
            # second trainyard, may hold those.
            f"--port={self.gcs_port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={agent_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={port}",
            "--disable-usage-stats",
        ]
        if num_cpus is not None:
            cmd.append(f"--num-cpus={num_cpus}")
        env = {
            **os.environ,
            **ray_env(self.auth_mode),
            # On SIGTERM, `ray start --block` would first wait up to 30 s for running jobs
            # to drain; trainyard stops its jobs itself, so tear down at once.
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        }
        self._log_path = tmp / "ray-start.log"
        log.info("starting a local Ray head: %d GPUs, dashboard port %d", num_gpus, port)
        with open(self._log_path, "wb") as out:
            # A new session: Ctrl-C in the terminal reaches trainyard, which stops the head
            # in order, instead of reaching every Ray process at once.
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
            )
        self.temp_dir = tmp
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while dashboard_auth_mode(url) is None:
            rc = self._proc.poll()
            if rc is not None:
                self.stop()  # reaps whatever it left in its process group
                raise RayClusterError(
                    f"`ray start --head` exited with code {rc}; "
                    f"its log ({self._log_path}) ends with:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RayClusterError(
                    f"the Ray head did not answer on {url} within {timeout_s:.0f} s; "
                    f"see {self._log_path}"
                )
            time.sleep(0.5)
        # The dashboard answers a moment before the head's raylet has registered; until it
        # has, the cluster has no nodes and no resources, and a scheduler would see 0 GPUs.
        # The agent's health route asks the GCS whether this node is alive, and needs no
        # token, so it works whatever auth mode this process runs with.
        while not _http_ok(f"http://127.0.0.1:{agent_port}/api/local_raylet_healthz"):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.stop()
                raise RayClusterError(
                    f"the Ray head at {url} registered no node within {timeout_s:.0f} s; "
                    f"see {self._log_path} and {tmp}/session_latest/logs/raylet.out"
                )
            time.sleep(0.5)
        self.dashboard_url = url
        return url

    def _log_tail(self, lines: int = 20) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = HEAD_STOP_TIMEOUT_S) -> None:
        """Stop the head if this object started it; a reused head is left running."""
        proc, self._proc = self._proc, None
        self.dashboard_url = None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("the Ray head did not stop within %.0f s; killing it", timeout_s)
                proc.kill()
                proc.wait(timeout=10)
        # Whatever outlived the head in its own process group (a dashboard subprocess being
        # slow to exit) gets a moment, then SIGKILL; nothing outside the group is touched.
        deadline = time.monotonic() + 5.0
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> LocalRayHead:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that SIGTERMs the head when this process dies, or None.

    Without it, an app killed with SIGKILL (or SIGTERM, whose default action skips every
    `finally`) leaves its head running with nobody to stop it. Linux only, and only from the
    main thread: the kernel sends the signal when the *thread* that started the child exits,
    so a head started from a short-lived worker thread would die with that thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def hook() -> None:  # runs in the child, between fork and exec
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def _http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# ---- connecting ----------------------------------------------------------------------------


@dataclass
class RayConnection:
    """Where trainyard's Ray is, and the local head it owns, if any. `close()` when done."""

    dashboard_url: str
    head: LocalRayHead | None = None

    @property
    def embedded(self) -> bool:
        """True when trainyard started this head and stops it on `close()`."""
        return self.head is not None and self.head.owned

    def resources(self) -> ClusterResources:
        return cluster_resources(self.dashboard_url)

    def close(self) -> None:
        if self.head is not None:
            self.head.stop()

    def __enter__(self) -> RayConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    address: str | None = None,
    num_gpus: int | None = None,
    num_cpus: int | None = None,
    temp_dir: str | Path | None = None,
    dashboard_port: int | None = None,
    auth_mode: str | None = None,
    timeout_s: float = HEAD_START_TIMEOUT_S,
) -> RayConnection:
    """Join the cluster whose dashboard is at `address`, or with no address, start one here.

    Also puts `ray_env()` into this process's environment (see `apply_ray_env`), so call it
    before anything else in the process talks to Ray.
    """
    apply_ray_env(auth_mode)
    if address:
        url = dashboard_url_from_address(address)
        found = dashboard_auth_mode(url, timeout_s=5.0)
        if found is None:
            raise RayClusterError(
                f"no Ray dashboard answers at {url}: start the cluster (`ray up "
                "ray_cluster.yaml` or `ray start --head`), check the host and port "
                f"(default {DEFAULT_DASHBOARD_PORT}), or leave the address empty to start "
                "a local head"
            )
        check_auth_matches(url, found, os.environ["RAY_AUTH_MODE"])
        log.info("joined the Ray cluster at %s (auth mode %s)", url, found)
        return RayConnection(dashboard_url=url)
    head = LocalRayHead(dashboard_port=dashboard_port, auth_mode=auth_mode)
    url = head.start(num_gpus=num_gpus, num_cpus=num_cpus, temp_dir=temp_dir, timeout_s=timeout_s)
    return RayConnection(dashboard_url=url, head=head)
