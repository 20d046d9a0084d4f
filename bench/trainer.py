"""Benchmark the trainer against baselines measured beside it, in the same run of this script.

    .venv/bin/python bench/trainer.py --cifar ../shared/datasets/cifar10 [--only a,b] [--quick]

(a) Data pipeline: the trainer's (scan, decode once into a uint8 cache, batched augmentation)
    against torchvision `ImageFolder` + `DataLoader` with the same transforms (random crop with
    padding 4, flip, normalise) and as many worker processes as the trainer has decode threads.
    First epoch (decoding included) and cached epochs.
(b) Training images/s: trainyard's `Trainer` against a minimal plain-PyTorch loop on the same
    model, decoded images, batch size, threads and augmentation.
(c) End to end against HuggingFace `transformers.Trainer` (PIL + torchvision per image in
    DataLoader workers): images/s of wall time and test accuracy, same model, data, epochs,
    optimizer, schedule and label smoothing.
(d) The shipped CIFAR-10 config through the CLI: test accuracy and wall time.

Both sides of a ratio run in this process (or its children), one after the other, with
`torch.set_num_threads(--threads)`. Throughput figures are medians of --reps repetitions ((b)'s
ratio: the median of each repetition's own ratio); (c) runs --c-seeds seeds per side on
CIFAR-10, (d) runs once. Before each measurement the script waits until no
other process is using the CPUs, and it flags any figure that another process disturbed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
# Quiet, offline defaults, set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402  (after the environment above)
import torch.nn.functional as F  # noqa: E402

from trainyard.trainer.augment import build_cpu_augment, resolve_params  # noqa: E402
from trainyard.trainer.config import TrainConfig, read_config_file  # noqa: E402
from trainyard.trainer.data import scan_dataset  # noqa: E402
from trainyard.trainer.engine import Trainer  # noqa: E402
from trainyard.trainer.events import EventWriter, parse_event  # noqa: E402
from trainyard.trainer.host_memory import keep_freed_memory  # noqa: E402
from trainyard.trainer.image_cache import DecodedSplit, TensorBatches, decode_split  # noqa: E402
from trainyard.trainer.models import create_model  # noqa: E402

CIFAR_CONFIG = REPO / "configs" / "cifar10-resnet-small.yaml"
DIGITS_CONFIG = REPO / "configs" / "digits-resnet-tiny.yaml"
CLI_LIMIT_S = 7 * 60  # target (d): the whole CLI run, decoding and evaluation included
# Other processes using more CPU than this (in cores) disturb a figure. Not zero: an idle Ray
# cluster on the same machine takes 0.1-0.3 of a core.
QUIET_CORES = 0.3
SPLITS = ("train", "val", "test")


# ---- what is measured on -----------------------------------------------------------------


@dataclass
class Bench:
    """One dataset with the recipe (a trainer config) the benchmark follows on it."""

    name: str
    root: Path
    recipe: dict[str, Any]  # the config file as a dict, data.root replaced
    cfg: TrainConfig

    @property
    def size(self) -> int:
        return self.cfg.data.image_size or 32

    @property
    def batch_size(self) -> int:
        return self.cfg.data.batch_size

    @property
    def workers(self) -> int:
        return self.cfg.data.workers

    @property
    def aug(self) -> Any:
        return resolve_params(self.cfg.augmentation.preset, self.cfg.augmentation.params)

    def config(self, **sections: dict[str, Any]) -> TrainConfig:
        """The recipe with some sections' fields replaced."""
        raw = json.loads(json.dumps(self.recipe))
        for name, fields in sections.items():
            raw.setdefault(name, {}).update(fields)
        return TrainConfig.from_dict(raw, source=f"{self.name} recipe")


def load_bench(name: str, root: Path, config_path: Path) -> Bench:
    raw = read_config_file(config_path)
    raw["data"]["root"] = str(root)
    return Bench(name, root, raw, TrainConfig.from_dict(raw, source=str(config_path)))


def make_view(src: Path, dst: Path, per_class: Mapping[str, int | None]) -> Path:
    """An ImageFolder of symlinks: at most `per_class[split]` images per class of each split
    (None: all of them; a split missing from the dict is left out)."""
    shutil.rmtree(dst, ignore_errors=True)
    for split, limit in per_class.items():
        if not (src / split).is_dir():
            continue
        for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            out = dst / split / cls.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:limit]:
                (out / f.name).symlink_to(f.resolve())
    return dst


def warm_page_cache(root: Path) -> None:
    # Both sides read the same files; read them once first so neither pays for a cold disk.
    for path in root.rglob("*"):
        if path.is_file():
            path.read_bytes()


# ---- other processes on the machine ------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU clock ticks used so far), from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # the process ended while we looked
        fields = stat[stat.rfind(")") + 2 :].split()  # the name may hold spaces and ')'
        table[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def _foreign(table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """CPU ticks of every process that is not this one or one of its descendants."""
    ours = {os.getpid()}
    grew = True
    while grew:
        new = {pid for pid, (ppid, _) in table.items() if ppid in ours} - ours
        ours |= new
        grew = bool(new)
    return {pid: ticks for pid, (_, ticks) in table.items() if pid not in ours}


class ForeignLoad:
    """Average CPU cores used by other processes while the `with` block runs (Linux /proc)."""

    def __init__(self, period_s: float = 1.0) -> None:
        self.period_s = period_s
        self.cores = 0.0
        self._stop = threading.Event()
        self._ticks = 0
        self._prev: dict[int, int] = {}
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _sample(self, prev: dict[int, int]) -> dict[int, int]:
        now = _foreign(_proc_table())
        self._ticks += sum(max(0, t - prev.get(pid, 0)) for pid, t in now.items())
        return now

    def _watch(self) -> None:
        while not self._stop.wait(self.period_s):
            self._prev = self._sample(self._prev)

    def __enter__(self) -> ForeignLoad:
        self._available = Path("/proc/self/stat").exists()
        if self._available:
            self._prev = _foreign(_proc_table())
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        if self._available:
            self._stop.set()
            self._thread.join()
            self._prev = self._sample(self._prev)
            self.cores = self._ticks / self._hz / max(wall, 1e-9)


def wait_for_quiet(max_wait_s: float, quiet_cores: float) -> float:
    """Wait until other processes have used < `quiet_cores` cores for 2 s in a row; returns
    the seconds waited. Gives up (and says so) after `max_wait_s`."""
    t0 = time.monotonic()
    calm = 0
    while calm < 2:
        with ForeignLoad(period_s=10.0) as load:
            time.sleep(1.0)
        calm = calm + 1 if load.cores < quiet_cores else 0
        if time.monotonic() - t0 > max_wait_s:
            say(f"  ! other processes still use {load.cores:.1f} cores; measuring anyway")
            break
    return time.monotonic() - t0


# ---- results -----------------------------------------------------------------------------


@dataclass
class Row:
    part: str
    dataset: str
    what: str
    unit: str
    trainer: float
    baseline: float
    baseline_name: str
    ratio: float  # > 1: the trainer is better
    target: float | None  # minimum ratio, None: for information
    busy_cores: float = 0.0  # the most other processes used during the row's measurements
    disturbed: bool = False  # busy_cores was over --quiet-cores
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)  # (d): absolute targets
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        target = ""
        if row.target is not None:
            target = f" (target >= {row.target:g}x: {'met' if row.met else 'NOT met'})"
        busy = f"  [other processes used {row.busy_cores:.1f} cores]" if row.disturbed else ""
        say(
            f"  => ({row.part}) {row.dataset} {row.what}: trainer {shown(row.trainer, row.unit)}, "
            f"{row.baseline_name} {shown(row.baseline, row.unit)}, ratio {row.ratio:.2f}x"
            f"{target}{busy}"
        )
        if row.note:
            say(f"     {row.note}")


def shown(v: float, unit: str) -> str:
    return f"{100 * v:.2f}%" if unit == "accuracy" else f"{fmt(v)} {unit}"


def fmt(v: float) -> str:
    if abs(v) < 1:
        return f"{v:.4f}"
    return f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"


def say(line: str) -> None:
    print(line, flush=True)


class Measure:
    """Timings of one side. `run(fn)` waits for quiet CPUs, runs `fn`, and runs it again (up to
    `retries` times) when another process used the CPUs meanwhile."""

    def __init__(self, args: argparse.Namespace, retries: int | None = None) -> None:
        self.max_wait_s = args.max_wait_s
        self.quiet_cores = args.quiet_cores
        self.retries = args.retries if retries is None else retries
        self.busy_cores = 0.0  # the most other processes used during a kept measurement

    def run(self, fn: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            wait_for_quiet(self.max_wait_s, self.quiet_cores)
            with ForeignLoad() as load:
                out = fn()
            if load.cores < self.quiet_cores or attempt == self.retries:
                break
            say(f"  ! other processes used {load.cores:.1f} cores meanwhile; measuring again")
        self.busy_cores = max(self.busy_cores, load.cores)
        return out


def busy_of(*measures: Measure) -> tuple[float, bool]:
    """(the most CPU other processes used, whether that disturbed the figure)."""
    worst = max(measures, key=lambda m: m.busy_cores)
    return worst.busy_cores, worst.busy_cores >= worst.quiet_cores


# ---- (a) data pipeline -------------------------------------------------------------------


def trainer_pipeline(b: Bench, epochs: int, seed: int) -> list[float]:
    """Seconds per epoch of the trainer's pipeline; the first includes scanning and decoding."""
    aug = b.aug
    lm = create_model(b.cfg.model.name, ["x", "y"], b.cfg.data.image_size)
    augment = build_cpu_augment(aug, torch.tensor(lm.mean), torch.tensor(lm.std))
    times = []
    t0 = time.perf_counter()
    scan = scan_dataset(b.root)
    train = decode_split(scan.splits["train"], lm.image_size, b.workers, "fail")
    batches = TensorBatches(train.images, train.labels, b.batch_size, True, True, seed)
    for epoch in range(1, epochs + 1):
        batches.epoch = epoch
        for x, _ in batches:
            augment(x)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        t0 = t1
    return times


def torchvision_transforms(b: Bench, size: int, native: int, train: bool) -> Any:
    import torchvision.transforms as T

    lm = create_model(b.cfg.model.name, ["x", "y"], size)
    ops: list[Any] = [T.Resize((size, size))] if size != native else []
    aug = b.aug
    if train:
        pad = max(1, round(aug.translate * size)) if aug.translate > 0 else 0
        if pad:
            ops.append(T.RandomCrop(size, padding=pad))
        if aug.hflip > 0:
            ops.append(T.RandomHorizontalFlip(aug.hflip))
    ops += [T.ToTensor(), T.Normalize(lm.mean, lm.std)]
    return T.Compose(ops)


def native_size(root: Path) -> int:
    from PIL import Image

    first = next(p for p in sorted((root / "train").rglob("*")) if p.is_file())
    with Image.open(first) as im:
        return max(im.size)


def torchvision_pipeline(b: Bench, epochs: int, seed: int) -> list[float]:
    """Seconds per epoch of ImageFolder + DataLoader; the first includes starting the workers."""
    from torchvision.datasets import ImageFolder

    transform = torchvision_transforms(b, b.size, native_size(b.root), train=True)
    times = []
    t0 = time.perf_counter()
    ds = ImageFolder(str(b.root / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=b.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=b.workers,
        persistent_workers=b.workers > 0,  # later epochs do not pay for starting workers
        generator=torch.Generator().manual_seed(seed),
    )
    for _ in range(epochs):
        for _batch in loader:
            pass
        t1 = time.perf_counter()
        times.append(t1 - t0)
        t0 = t1
    del loader  # stops the persistent workers
    return times


def part_a(b: Bench, args: argparse.Namespace, report: Report, epochs: int) -> None:
    say(f"(a) data pipeline on {b.name}: {epochs} epochs per repetition, {args.reps} repetitions")
    warm_page_cache(b.root / "train")
    ours, theirs = Measure(args), Measure(args)
    t_ours: list[list[float]] = []
    t_theirs: list[list[float]] = []
    for rep in range(args.reps):
        # Alternate which side goes first, so a slow drift in the machine favours neither.
        for side in (0, 1) if rep % 2 == 0 else (1, 0):
            if side == 0:
                t_ours.append(ours.run(partial(trainer_pipeline, b, epochs, rep)))
            else:
                t_theirs.append(theirs.run(partial(torchvision_pipeline, b, epochs, rep)))
        say(
            f"  rep {rep + 1}: trainer {' '.join(f'{t:.2f}s' for t in t_ours[-1])}; "
            f"ImageFolder+DataLoader {' '.join(f'{t:.2f}s' for t in t_theirs[-1])}"
        )
    busy = busy_of(ours, theirs)
    first_o = statistics.median(t[0] for t in t_ours)
    first_t = statistics.median(t[0] for t in t_theirs)
    cached_o = statistics.median(s for t in t_ours for s in t[1:])
    cached_t = statistics.median(s for t in t_theirs for s in t[1:])
    name = f"ImageFolder+DataLoader({b.workers} workers)"
    for what, o, t, target in (
        ("first epoch (decode included)", first_o, first_t, 1.3),
        ("cached epoch", cached_o, cached_t, 5.0),
    ):
        report.add(Row("a", b.name, what, "s", o, t, name, t / o, target, *busy))
    report.details[f"a/{b.name}"] = {"trainer_s": t_ours, "torchvision_s": t_theirs}


# ---- (b) training loop -------------------------------------------------------------------


def fast_crop_flip(aug: Any, mean: torch.Tensor, std: torch.Tensor) -> Callable[..., Any]:
    """Pad-crop and flip a uint8 batch with two gathers (the flip reverses the column index),
    then normalise: what a hand-written loop over a decoded cache would do."""
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (mean / std).view(1, -1, 1, 1)

    def run(x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pad = max(1, round(aug.translate * min(h, w))) if aug.translate > 0 else 0
        if pad:
            x = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,))
        dx = torch.randint(0, 2 * pad + 1, (b,))
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # [B,1,H,1]
        x = x.gather(2, rows.expand(b, c, h, x.shape[-1]))  # [B,C,H,W+2p]
        cols = dx[:, None] + torch.arange(w)  # [B,W]
        flip = torch.rand(b) < aug.hflip
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        x = x.gather(3, cols[:, None, None, :].expand(b, c, h, w))  # [B,C,H,W]
        return x.float().mul_(scale).sub_(shift)

    return run


def plain_loop(
    b: Bench, data: DecodedSplit, classes: list[str], epochs: int, augment_kind: str, seed: int
) -> tuple[int, float]:
    """A minimal training loop: (images trained on, seconds in the loop)."""
    torch.manual_seed(seed)
    lm = create_model(b.cfg.model.name, classes, b.cfg.data.image_size)
    # channels_last like the trainer (faster oneDNN convolutions), so (b) compares the loops.
    model = cast(torch.nn.Module, lm.model).to(memory_format=torch.channels_last)
    mean, std = torch.tensor(lm.mean), torch.tensor(lm.std)
    if augment_kind == "trainer":
        augment = build_cpu_augment(b.aug, mean, std)
    else:
        augment = fast_crop_flip(b.aug, mean, std)
    o = b.cfg.optimizer
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    bs = b.batch_size
    steps = len(data.labels) // bs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=steps * epochs)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=b.cfg.loss.label_smoothing)
    g = torch.Generator().manual_seed(seed)
    model.train()
    seconds = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(data.labels), generator=g)
        for s in range(steps):
            idx = order[s * bs : (s + 1) * bs]
            x = augment(data.images[idx]).contiguous(memory_format=torch.channels_last)
            y = data.labels[idx]
            loss = loss_fn(model(pixel_values=x).logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if b.cfg.loop.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), b.cfg.loop.clip_grad_norm)
            opt.step()
            sched.step()
        seconds += time.perf_counter() - t0
    return steps * bs * epochs, seconds


def run_trainer(cfg: TrainConfig, run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """trainyard's Trainer in this process: (results, events)."""
    stream = io.StringIO()
    results = Trainer(cfg, run_dir, events=EventWriter(stream)).run()
    events = [e for e in map(parse_event, stream.getvalue().splitlines()) if e]
    return results, events


def trainer_loop(
    b: Bench, view: Path, cache: Path, run_dir: Path, epochs: int
) -> tuple[int, float]:
    """(images trained on, seconds in the loop) from the trainer's own progress events."""
    cfg = b.config(
        data={"root": str(view), "cache": "disk", "cache_dir": str(cache)},
        loop={"epochs": epochs, "threads": torch.get_num_threads(), "progress_interval_s": 1e9},
        checkpoint={"save_best": False},
    )
    _, events = run_trainer(cfg, run_dir)
    last: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["event"] == "progress":
            last[e["epoch"]] = e  # the last one of an epoch covers the whole epoch
    images = sum(e["step"] * b.batch_size for e in last.values())
    seconds = sum(e["step"] * b.batch_size / e["images_per_s"] for e in last.values())
    return images, seconds


def part_b(b: Bench, args: argparse.Namespace, report: Report, work: Path, epochs: int) -> None:
    say(f"(b) training loop on {b.name}: {epochs} epochs per repetition, {args.reps} repetitions")
    # train/ in full; a small val/ and no test/, so the trainer's run is mostly training.
    view = make_view(b.root, work / f"b-{b.name}", {"train": None, "val": 20})
    cache = work / "cache"
    scan = scan_dataset(view)
    data = decode_split(scan.splits["train"], b.size, b.workers, "fail", str(cache))
    sides = {k: Measure(args) for k in ("trainer", "plain", "plain-gather")}
    rates: dict[str, list[float]] = {k: [] for k in sides}
    faults: dict[str, list[int]] = {k: [] for k in sides}  # minor page faults per image

    def one(side: str, rep: int) -> tuple[int, float]:
        if side == "trainer":
            return trainer_loop(b, view, cache, work / f"b-run-{b.name}-{rep}", epochs)
        kind = "trainer" if side == "plain" else "gather"
        return plain_loop(b, data, scan.classes, epochs, kind, rep)

    for rep in range(args.reps):
        order = list(sides)
        for side in order[rep % 3 :] + order[: rep % 3]:  # each side goes first once in 3
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            n, s = sides[side].run(partial(one, side, rep))
            rates[side].append(n / s)
            faults[side].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        shown = ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items())
        paged = ", ".join(f"{k} {v[-1]:,}" for k, v in faults.items())
        say(f"  rep {rep + 1}: images/s {shown}; minor page faults {paged}")
    med = {k: statistics.median(v) for k, v in rates.items()}
    # The ratio is the median of each repetition's own ratio: the sides of one repetition run
    # back to back, so the ratio cancels this VM's drift (its speed wanders by 10-20% over
    # minutes), which a ratio of medians taken from different minutes would not.
    ratio = {
        k: statistics.median(t / r for t, r in zip(rates["trainer"], rates[k], strict=True))
        for k in ("plain", "plain-gather")
    }
    report.add(
        Row(
            "b",
            b.name,
            "train images/s, same augmentation code",
            "img/s",
            med["trainer"],
            med["plain"],
            "plain loop (trainer's augment)",
            ratio["plain"],
            0.97,
            *busy_of(sides["trainer"], sides["plain"]),
        )
    )
    report.add(
        Row(
            "b",
            b.name,
            "train images/s, plain loop with its own gather crop+flip",
            "img/s",
            med["trainer"],
            med["plain-gather"],
            "plain loop (gather crop+flip)",
            ratio["plain-gather"],
            0.97,
            *busy_of(sides["trainer"], sides["plain-gather"]),
        )
    )
    report.details[f"b/{b.name}"] = {"images_per_s": rates, "page_faults": faults, "epochs": epochs}


# ---- (c) against HuggingFace Trainer -----------------------------------------------------


class PilImageFolder(torch.utils.data.Dataset[dict[str, Any]]):
    """The usual HF image-classification dataset: PIL decode + torchvision transforms."""

    def __init__(self, root: Path, transform: Any) -> None:
        from torchvision.datasets import ImageFolder

        self.samples = ImageFolder(str(root)).samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as im:
            return {"pixel_values": self.transform(im.convert("RGB")), "labels": label}


def comparable_schedule(b: Bench, epochs: int) -> tuple[dict[str, Any], str, float]:
    """A schedule both trainers implement: (trainyard schedule, HF lr_scheduler_type, warm-up
    epochs). onecycle (warm-up 25%, linear decay) becomes linear with a 25% warm-up."""
    s = b.cfg.schedule
    if s.name in ("cosine", "linear", "constant") and s.min_lr_ratio == 0:
        warm = s.warmup_epochs if s.warmup_epochs < epochs else 0.0
        hf = {"constant": "constant_with_warmup"}.get(s.name, s.name)
        return {"name": s.name, "warmup_epochs": warm}, hf, warm
    warm = epochs / 4
    return {"name": "linear", "warmup_epochs": warm, "min_lr_ratio": 0.0}, "linear", warm


@functools.cache  # one folder scan per dataset, not one per run
def list_test_images(root: Path) -> list[str]:
    """test/'s images, counted apart from either side's loader: each side's test accuracy must
    have scored exactly these."""
    return scan_dataset(root).splits["test"].paths


def hf_run(b: Bench, root: Path, epochs: int, workers: int, out: Path, seed: int) -> dict[str, Any]:
    from transformers import Trainer as HFTrainer
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    native = native_size(root)
    _, hf_schedule, warm_epochs = comparable_schedule(b, epochs)
    t0 = time.perf_counter()
    train = PilImageFolder(root / "train", torchvision_transforms(b, b.size, native, True))
    evaluate = torchvision_transforms(b, b.size, native, False)
    val = PilImageFolder(root / "val", evaluate)
    test = PilImageFolder(root / "test", evaluate)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    torch.manual_seed(seed)  # the same initial weights as the trainyard run of this seed
    model = cast(
        torch.nn.Module, create_model(b.cfg.model.name, classes, b.cfg.data.image_size).model
    )
    steps_per_epoch = -(-len(train) // b.batch_size)
    o = b.cfg.optimizer
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=b.batch_size,
        per_device_eval_batch_size=b.cfg.data.eval_batch_size or 2 * b.batch_size,
        num_train_epochs=epochs,
        learning_rate=o.lr,
        weight_decay=o.weight_decay,
        adam_beta1=o.betas[0],
        adam_beta2=o.betas[1],
        optim="adamw_torch",
        lr_scheduler_type=hf_schedule,
        warmup_steps=round(warm_epochs * steps_per_epoch),
        label_smoothing_factor=b.cfg.loss.label_smoothing,
        max_grad_norm=b.cfg.loop.clip_grad_norm or 0.0,  # 0: no clipping (HF's default is 1)
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,  # like trainyard: test the best epoch on val
        metric_for_best_model="accuracy",
        logging_strategy="epoch",
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        seed=seed,
    )

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    trainer = HFTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=val, compute_metrics=accuracy
    )
    trainer.remove_callback(PrinterCallback)
    threads = torch.get_num_threads()
    out_train = trainer.train()
    # predict(), not evaluate(test): with persistent workers, evaluate() reuses its cached
    # "eval" DataLoader for any dataset passed to it and would score val/ again
    # (huggingface/transformers#30527). The length check keeps that from coming back.
    pred: Any = trainer.predict(test, metric_key_prefix="test")
    wall = time.perf_counter() - t0
    scored, n_test = len(pred.label_ids), len(list_test_images(root))
    if scored != n_test:
        raise RuntimeError(f"HF scored {scored} images, test/ has {n_test}")
    return {
        "wall_s": wall,
        "images": epochs * len(train),
        "test_accuracy": pred.metrics["test_accuracy"],
        "hf_train_samples_per_second": out_train.metrics.get("train_samples_per_second"),
        "torch_threads": threads,
        "workers": workers,
    }


def trainyard_run(b: Bench, root: Path, epochs: int, run_dir: Path, seed: int) -> dict[str, Any]:
    schedule, _, _ = comparable_schedule(b, epochs)
    loop = {"epochs": epochs, "threads": torch.get_num_threads(), "progress_interval_s": 30}
    cfg = b.config(
        data={"root": str(root), "cache": "memory"},
        schedule=schedule,
        loop=loop | {"seed": seed},
    )
    t0 = time.perf_counter()
    results, events = run_trainer(cfg, run_dir)
    wall = time.perf_counter() - t0
    start = next(e for e in events if e["event"] == "start")
    scored, n_test = sum(map(sum, results["test"]["confusion"])), len(list_test_images(root))
    if scored != n_test:
        raise RuntimeError(f"trainyard scored {scored} images, test/ has {n_test}")
    return {
        "wall_s": wall,
        "images": epochs * start["steps_per_epoch"] * b.batch_size,
        "test_accuracy": results["test"]["metrics"]["accuracy"],
        "best_epoch": results["best_epoch"],
        "torch_threads": torch.get_num_threads(),
    }


def part_c(
    b: Bench,
    args: argparse.Namespace,
    report: Report,
    work: Path,
    epochs: int,
    seeds: int,
    target: bool,
) -> None:
    try:
        import accelerate  # noqa: F401  (transformers.Trainer needs it on PyTorch)
    except ImportError:
        say("(c) skipped: transformers.Trainer needs accelerate: pip install 'accelerate>=1.1'")
        return
    workers = b.workers if args.hf_workers is None else args.hf_workers
    say(f"(c) against transformers.Trainer on {b.name}: {epochs} epochs, seeds 0-{seeds - 1}")
    ours, theirs = Measure(args, retries=0), Measure(args, retries=0)
    runs: dict[str, list[dict[str, Any]]] = {"trainyard": [], "transformers": []}
    for seed in range(seeds):
        # Each seed gives both sides the same initial weights; they alternate who goes first.
        sides = [
            (
                ours,
                "trainyard",
                partial(
                    trainyard_run, b, b.root, epochs, work / f"c-trainyard-{b.name}-{seed}", seed
                ),
            ),
            (
                theirs,
                "transformers",
                partial(hf_run, b, b.root, epochs, workers, work / f"c-hf-{b.name}-{seed}", seed),
            ),
        ]
        for measure, side, fn in sides if seed % 2 == 0 else sides[::-1]:
            runs[side].append(measure.run(fn))
            say(f"  seed {seed} {side}: {runs[side][-1]}")
    busy = busy_of(ours, theirs)
    rate_t = statistics.median(r["images"] / r["wall_s"] for r in runs["trainyard"])
    rate_h = statistics.median(r["images"] / r["wall_s"] for r in runs["transformers"])
    name = f"transformers.Trainer ({workers} workers)"
    report.add(
        Row(
            "c",
            b.name,
            f"images/s of wall time, {epochs} epochs"
            + (f", median of {seeds}" if seeds > 1 else ""),
            "img/s",
            rate_t,
            rate_h,
            name,
            rate_t / rate_h,
            2.0 if target else None,
            *busy,
        )
    )
    accs = {k: [r["test_accuracy"] for r in v] for k, v in runs.items()}
    acc_t, acc_h = statistics.mean(accs["trainyard"]), statistics.mean(accs["transformers"])
    each = "; ".join(f"{k}: " + ", ".join(f"{100 * a:.2f}" for a in v) for k, v in accs.items())
    # A seed gives both sides the same initial weights: its difference is one paired sample.
    diffs = [100 * (t - h) for t, h in zip(accs["trainyard"], accs["transformers"], strict=True)]
    if len(diffs) > 1:
        se = statistics.stdev(diffs) / len(diffs) ** 0.5
        each += f"; paired difference {statistics.mean(diffs):+.2f} pt, standard error {se:.2f}"
    report.add(
        Row(
            "c",
            b.name,
            f"test accuracy after {epochs} epochs"
            + (f", mean of {seeds} seeds" if seeds > 1 else ""),
            "accuracy",
            acc_t,
            acc_h,
            name,
            acc_t / acc_h,
            1.0 if target else None,
            *busy,
            note=f"per seed (%): {each}",
        )
    )
    report.details[f"c/{b.name}"] = runs


# ---- (d) the shipped config through the CLI ----------------------------------------------


def part_d(
    b: Bench, config: Path, args: argparse.Namespace, report: Report, work: Path, quick: bool
) -> None:
    run_dir = work / "d-cli"
    cmd = [
        sys.executable,
        "-m",
        "trainyard.trainer",
        "--config",
        str(config),
        "--run-dir",
        str(run_dir),
        "--set",
        f"data.root={b.root}",
    ]
    if quick:
        cmd += ["--set", "loop.epochs=1"]
    say(f"(d) the CLI: {' '.join(cmd)}")
    m = Measure(args, retries=0)
    log = work / "d-cli.log"

    def cli() -> tuple[subprocess.CompletedProcess[bytes], float]:
        with log.open("w") as f:
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, check=False)
            return proc, time.perf_counter() - t0

    proc, wall = m.run(cli)
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-20:]
        raise SystemExit(f"(d) the CLI failed ({proc.returncode}):\n" + "\n".join(tail))
    results = json.loads((run_dir / "results.json").read_text())
    acc = results["test"]["metrics"]["accuracy"]
    checks = [
        ("test accuracy", acc, 0.75, acc >= 0.75),
        ("wall time s", wall, CLI_LIMIT_S, wall <= CLI_LIMIT_S),
    ]
    for what, value, limit, ok in checks:
        rel = ">=" if what == "test accuracy" else "<="
        report.checks.append(
            {
                "part": "d",
                "dataset": b.name,
                "what": what,
                "value": value,
                "target": f"{rel} {limit:g}",
                "met": None if quick else ok,
                "busy_cores": m.busy_cores,
                "disturbed": m.busy_cores >= m.quiet_cores,
            }
        )
        verdict = "quick run, not judged" if quick else ("met" if ok else "NOT met")
        say(f"  => (d) {b.name} {what}: {fmt(value)} (target {rel} {limit:g}: {verdict})")
    report.details["d"] = {
        "command": cmd,
        "wall_s": wall,
        "best_epoch": results["best_epoch"],
        "best_val": results["best_val"],
        "test": results["test"]["metrics"],
        "busy_cores": m.busy_cores,
    }


# ---- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cifar", type=Path, required=True, help="CIFAR-10 as an ImageFolder")
    p.add_argument(
        "--digits",
        type=Path,
        default=REPO / "datasets" / "digits",
        help="the digits demo dataset (`make demo-data`)",
    )
    p.add_argument("--only", default="a,b,c,d", help="parts to run, e.g. a,b")
    p.add_argument("--quick", action="store_true", help="small subsets, one epoch: smoke test")
    p.add_argument("--reps", type=int, default=3, help="repetitions of each throughput figure")
    p.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    p.add_argument("--cifar-config", type=Path, default=CIFAR_CONFIG)
    p.add_argument("--digits-config", type=Path, default=DIGITS_CONFIG)
    p.add_argument("--c-epochs", type=int, default=3, help="epochs of each (c) run on CIFAR-10")
    p.add_argument(
        "--c-seeds", type=int, default=5, help="(c) on CIFAR-10: runs per side, seeds 0..N-1"
    )
    p.add_argument(
        "--hf-workers", type=int, default=None, help="HF DataLoader workers (default: data.workers)"
    )
    p.add_argument(
        "--max-wait-s", type=float, default=120.0, help="longest wait for quiet CPUs per figure"
    )
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=QUIET_CORES,
        help="other processes' CPU use (cores) that counts as disturbing a measurement",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="measure a throughput figure again when another process used the CPUs",
    )
    p.add_argument("--work-dir", type=Path, default=None, help="keep runs here (default: temp)")
    p.add_argument("--json", type=Path, default=None, help="write all figures here")
    args = p.parse_args(argv)
    args.parts = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.parts) - set("abcd")
    if unknown:
        p.error(f"--only: unknown parts {sorted(unknown)}; choose from a, b, c, d")
    for name, path in (("--cifar", args.cifar), ("--digits", args.digits)):
        if not (path / "train").is_dir():
            hint = " (make demo-data)" if name == "--digits" else ""
            p.error(f"{name}: {path} has no train/ folder{hint}")
    return args


def print_table(report: Report) -> None:
    say("\n| part | dataset | figure | trainyard | baseline | baseline value | ratio | target |")
    say("|---|---|---|---|---|---|---|---|")
    for r in report.rows:
        target = "-" if r.target is None else f">= {r.target:g}x {'met' if r.met else 'NOT met'}"
        busy = " (busy*)" if r.disturbed else ""
        ratio = f"{r.ratio:.2f}x"
        if r.unit == "accuracy":
            ratio += f" ({100 * (r.trainer - r.baseline):+.1f} pt)"
        say(
            f"| {r.part} | {r.dataset} | {r.what} | {shown(r.trainer, r.unit)} | "
            f"{r.baseline_name} | {shown(r.baseline, r.unit)} | {ratio}{busy} | {target} |"
        )
    for c in report.checks:
        met = {True: "met", False: "NOT met", None: "not judged"}[c["met"]]
        busy = " (busy*)" if c["disturbed"] else ""
        say(
            f"| {c['part']} | {c['dataset']} | CLI {c['what']} | {fmt(c['value'])}{busy} | - | - "
            f"| - | {c['target']} {met} |"
        )
    if any(r.disturbed for r in report.rows) or any(c["disturbed"] for c in report.checks):
        say("* another process used the CPUs during that figure; rerun on an idle machine")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # The trainer sets this in its own process (host_memory.py); set once here, before any
    # side runs, every baseline gets the same allocator whatever the order of the sides.
    keep_freed_memory()
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.work_dir:
            work = args.work_dir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        cifar_root, digits_root = args.cifar.resolve(), args.digits.resolve()
        if args.quick:
            limits = {"train": 200, "val": 50, "test": 100}
            cifar_root = make_view(cifar_root, work / "cifar-quick", limits)
        cifar = load_bench("cifar10", cifar_root, args.cifar_config)
        digits = load_bench("digits", digits_root, args.digits_config)
        say(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs, CUDA {'available' if torch.cuda.is_available() else 'no'}"
            f"{', quick mode' if args.quick else ''}"
        )
        report = Report()
        if "a" in args.parts:
            part_a(cifar, args, report, epochs=3 if not args.quick else 2)
            part_a(digits, args, report, epochs=6)
        if "b" in args.parts:
            part_b(cifar, args, report, work, epochs=1)
            part_b(digits, args, report, work, epochs=20)  # 1.1k images: longer windows
        if "c" in args.parts:
            c_epochs, c_seeds = (1, 1) if args.quick else (args.c_epochs, args.c_seeds)
            part_c(cifar, args, report, work, c_epochs, c_seeds, target=True)
            digits_epochs = 1 if args.quick else digits.cfg.loop.epochs
            part_c(digits, args, report, work, digits_epochs, 1, target=False)
        if "d" in args.parts:
            part_d(cifar, args.cifar_config, args, report, work, args.quick)
        print_table(report)
        say(f"benchmark wall time: {time.monotonic() - started:.0f}s")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "date": time.strftime("%Y-%m-%d"),
                "torch": torch.__version__,
                "threads": args.threads,
                "quick": args.quick,
                "rows": [asdict(r) | {"met": r.met} for r in report.rows],
                "checks": report.checks,
                "details": report.details,
            }
            args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
