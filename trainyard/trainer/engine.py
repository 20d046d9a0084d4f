"""The training loop: one run from a `TrainConfig` to checkpoints, events and results.

The order matters for the user: everything that can be wrong with the config, the data or
the model is found (and reported in one line) before the first training step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from trainyard.trainer import checkpoint as ckpt
from trainyard.trainer.augment import build_augment, normalize, resolve_params
from trainyard.trainer.config import TrainConfig
from trainyard.trainer.data import scan_dataset
from trainyard.trainer.events import EventWriter
from trainyard.trainer.host_memory import keep_freed_memory
from trainyard.trainer.image_cache import (
    DecodedSplit,
    StreamingDataset,
    TensorBatches,
    decode_split,
    verify_split,
)
from trainyard.trainer.losses import create_loss
from trainyard.trainer.metrics import MetricAccumulator
from trainyard.trainer.models import LoadedModel, count_parameters, create_model
from trainyard.trainer.optim import create_optimizer, create_scheduler
from trainyard.trainer.run_info import run_metadata

log = logging.getLogger(__name__)


@dataclass
class Precision:
    autocast_dtype: torch.dtype | None  # None: fp32
    use_scaler: bool  # fp16 needs loss scaling; bf16 does not

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.autocast_dtype]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in data-parallel training (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    # The launcher (Ray Train, torchrun) initialises the process group; the trainer only
    # reads it, so it never depends on how it was started.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    return DistInfo()


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from trainyard.trainer.config import ConfigError

            raise ConfigError("loop.device: cuda asked for, but no CUDA device is visible")
        # Ray narrows CUDA_VISIBLE_DEVICES to our GPU(s); with several, one per local rank.
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def pick_precision(choice: str, device: torch.device) -> Precision:
    if choice == "off" or (choice == "auto" and device.type == "cpu"):
        return Precision(None, False)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, False)
        return Precision(torch.float16, True)
    return Precision(torch.bfloat16, False)  # "on" on a CPU: bf16 autocast


def _fmt_duration(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path,
        resume: bool = False,
        events: EventWriter | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.dist = dist_info()
        self.out = events or EventWriter()
        if not self.dist.is_main:
            self.out.enabled = False
        self.ckpt_dir = self.run_dir / "checkpoints"

    # ---- set-up: every check happens here, before training -----------------------------

    def setup(self) -> None:
        cfg = self.cfg
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a job log
        # Reuse freed step buffers instead of page-faulting fresh ones every step (~15% of a
        # CPU step; see host_memory.py).
        keep_freed_memory()
        if cfg.loop.threads:
            torch.set_num_threads(cfg.loop.threads)
        self.device = pick_device(cfg.loop.device, self.dist.local_rank)
        self.precision = pick_precision(cfg.loop.mixed_precision, self.device)
        self.scan = scan_dataset(cfg.data.root)
        self.classes = self.scan.classes
        self.aug_params = resolve_params(cfg.augmentation.preset, cfg.augmentation.params)

        self.resume_from = ckpt.find_checkpoint(self.ckpt_dir) if self.resume else None
        if self.resume and self.resume_from is None:
            self.out.say("no checkpoint to resume from in this run folder; starting from scratch")
        self._seed(cfg.loop.seed)
        name = str(self.resume_from) if self.resume_from else cfg.model.name
        self.loaded: LoadedModel = create_model(
            name, self.classes, cfg.data.image_size, cfg.model.pretrained
        )
        self.model = self.loaded.model
        self.size = self.loaded.image_size
        self.model.to(self.device)  # type: ignore[attr-defined]
        # channels_last: faster convolutions with cuDNN and with oneDNN on the CPU alike
        # (+13% images/s for resnet-small on 2 CPU cores here).
        self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[attr-defined]
        # What trains: the model itself, or its DDP wrapper (which all-reduces gradients).
        # Evaluation and checkpoints always use the plain model.
        self.train_model: Any = self.model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)

        self.mean = torch.tensor(self.loaded.mean, device=self.device)
        self.std = torch.tensor(self.loaded.std, device=self.device)
        self.augment = build_augment(self.aug_params, self.mean, self.std, self.device)
        self.train_data = self._prepare_split("train")
        self.val_data = self._prepare_split("val")

    def _prepare_split(self, name: str) -> DecodedSplit | StreamingDataset:
        d = self.cfg.data
        split = self.scan.splits[name]
        if d.cache == "none":
            good = verify_split(split, d.workers, d.on_bad_image)
            kept = set(good.paths)
            self._report_skipped(name, [p for p in split.paths if p not in kept])
            return StreamingDataset(good.paths, good.labels, self.size)
        cache_dir = (d.cache_dir or _default_cache_dir()) if d.cache == "disk" else None
        t0 = time.monotonic()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= self.cfg.loop.progress_interval_s or done == total:
                last[0] = now
                self.out.say(f"decoding {name}/: {done}/{total} images")

        decoded = decode_split(split, self.size, d.workers, d.on_bad_image, cache_dir, progress)
        self.out.say(f"{name}/: {len(decoded)} images ready in {time.monotonic() - t0:.1f}s")
        self._report_skipped(name, [p for p, _ in decoded.skipped])
        if self.device.type == "cuda":
            decoded.images = _to_device_or_pinned(decoded.images, self.device)
            decoded.labels = decoded.labels.to(decoded.images.device)
        return decoded

    def _report_skipped(self, split: str, paths: list[str]) -> None:
        if paths:
            self.skipped = getattr(self, "skipped", {})
            self.skipped[split] = paths
            self.out.say(
                f"skipped {len(paths)} unreadable images in {split}/: "
                f"{', '.join(paths[:5])}{' ...' if len(paths) > 5 else ''}"
            )

    def _batches(self, data: DecodedSplit | StreamingDataset, train: bool) -> Any:
        d = self.cfg.data
        bs = d.batch_size if train else (d.eval_batch_size or d.batch_size * 2)
        # Evaluation runs whole on every rank (same weights, same answer, no collectives).
        rank, world = (self.dist.rank, self.dist.world) if train else (0, 1)
        if isinstance(data, DecodedSplit):
            return TensorBatches(
                data.images,
                data.labels,
                bs,
                shuffle=train,
                drop_last=train,
                seed=self.cfg.loop.seed,
                rank=rank,
                world=world,
            )
        g = torch.Generator().manual_seed(self.cfg.loop.seed)
        sampler: DistributedSampler[Any] | None = None
        if world > 1:
            sampler = torch.utils.data.DistributedSampler(
                data,
                num_replicas=world,
                rank=rank,
                shuffle=True,
                seed=self.cfg.loop.seed,
                drop_last=True,
            )
        return torch.utils.data.DataLoader(
            data,
            batch_size=bs,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(data) > bs,
            num_workers=d.workers,
            generator=g,
            pin_memory=self.device.type == "cuda",
            persistent_workers=d.workers > 0,
        )

    # ---- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        t_start = time.monotonic()
        self.setup()
        cfg, model = self.cfg, self.model
        meta = run_metadata()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml())
            (self.run_dir / "run_info.json").write_text(json.dumps(meta, indent=2))

        train_batches = self._batches(self.train_data, train=True)
        steps_per_epoch = max(1, len(train_batches) // cfg.loop.grad_accum_steps)
        total_steps = steps_per_epoch * cfg.loop.epochs
        if cfg.loop.max_steps:
            total_steps = min(total_steps, cfg.loop.max_steps)
        self.optimizer = create_optimizer(model, cfg.optimizer)  # type: ignore[arg-type]
        self.scheduler = create_scheduler(
            self.optimizer, cfg.schedule, steps_per_epoch * cfg.loop.epochs, steps_per_epoch
        )
        self.loss_fn = create_loss(cfg.loss)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.use_scaler)
        self.best: dict[str, Any] = {"epoch": None, "metrics": None}
        self.stale_epochs = 0
        self.global_step = 0
        start_epoch = 1
        if self.resume_from is not None:
            start_epoch = self._restore(self.resume_from) + 1

        from torch.utils.tensorboard import SummaryWriter

        self.tb: Any = _NullWriter()
        if self.dist.is_main:
            self.tb = SummaryWriter(
                log_dir=str(self.run_dir / "tensorboard"),
                purge_step=self.global_step if self.resume_from else None,
            )
        self.out.emit(
            "start",
            run_dir=str(self.run_dir),
            model=cfg.model.name,
            params=count_parameters(model),
            device=str(self.device),
            precision=self.precision.name,
            classes=self.classes,
            train_size=len(self.train_data),
            val_size=len(self.val_data),
            epochs=cfg.loop.epochs,
            steps_per_epoch=steps_per_epoch,
            image_size=self.size,
            start_epoch=start_epoch,
            version=meta.get("trainyard_version"),
            pid=os.getpid(),
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
            world_size=self.dist.world,
        )
        self.out.say(
            f"training {cfg.model.name} ({count_parameters(model) / 1e6:.2f}M params) on "
            f"{self.device} [{self.precision.name}], {len(self.classes)} classes, "
            f"{len(self.train_data)} train / {len(self.val_data)} val images, "
            f"{cfg.loop.epochs} epochs x {steps_per_epoch} steps"
        )
        status = "succeeded"
        self.t_train = time.monotonic()
        self.steps_done_here = 0
        for epoch in range(start_epoch, cfg.loop.epochs + 1):
            if isinstance(train_batches, TensorBatches):
                train_batches.epoch = epoch
            elif isinstance(getattr(train_batches, "sampler", None), DistributedSampler):
                train_batches.sampler.set_epoch(epoch)
            train_metrics = self._train_epoch(epoch, train_batches, steps_per_epoch, total_steps)
            val_acc = self.evaluate(self.val_data)
            val_metrics = val_acc.compute()
            lr = self.optimizer.param_groups[0]["lr"]
            self._log_epoch(epoch, train_metrics, val_metrics, lr)
            improved = self._is_better(val_metrics)
            if improved:
                self.best = {"epoch": epoch, "metrics": val_metrics}
                self.stale_epochs = 0
            else:
                self.stale_epochs += 1
            if self.dist.is_main:
                self._save(epoch, improved, val_acc)
            patience = cfg.loop.early_stopping_patience
            if patience and self.stale_epochs >= patience:
                self.out.say(
                    f"early stopping: no improvement in val {cfg.loop.monitor} for "
                    f"{patience} epochs (best epoch {self.best['epoch']})"
                )
                status = "stopped_early"
                break
            if cfg.loop.max_steps and self.global_step >= cfg.loop.max_steps:
                self.out.say(f"reached loop.max_steps={cfg.loop.max_steps}; stopping")
                break
        self.tb.close()
        results = self._finish(status, time.monotonic() - t_start)
        return results

    def _train_epoch(
        self, epoch: int, batches: Any, steps_per_epoch: int, total_steps: int
    ) -> dict[str, float]:
        cfg, model, opt = self.cfg, self.train_model, self.optimizer
        accum = cfg.loop.grad_accum_steps
        model.train()
        # Sums stay on the device: a .item() per step would sync the GPU every step.
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        t_epoch = time.monotonic()
        t_last_print = t_epoch
        opt.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(batches):
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            x = self.augment(x)
            x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = model(pixel_values=x).logits
                loss = self.loss_fn(logits, y)
            self.scaler.scale(loss / accum).backward()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if (i + 1) % accum:
                continue
            if cfg.loop.clip_grad_norm:
                self.scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(
                    model.parameters(),
                    cfg.loop.clip_grad_norm,
                )
            self.scaler.step(opt)
            self.scaler.update()
            opt.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.global_step += 1
            self.steps_done_here += 1
            step = (i + 1) // accum
            if self.global_step % cfg.loop.log_every_steps == 0:
                self.tb.add_scalar("train/loss_step", float(loss.detach()), self.global_step)
                self.tb.add_scalar("train/lr", opt.param_groups[0]["lr"], self.global_step)
            now = time.monotonic()
            if now - t_last_print >= cfg.loop.progress_interval_s or step == steps_per_epoch:
                t_last_print = now
                self._progress(
                    epoch,
                    step,
                    steps_per_epoch,
                    total_steps,
                    float(loss.detach()),
                    seen,
                    now - t_epoch,
                )
            if cfg.loop.max_steps and self.global_step >= cfg.loop.max_steps:
                break
            if step >= steps_per_epoch:
                break
        n = max(1, seen)
        return {"loss": float(loss_sum) / n, "accuracy": float(correct) / n}

    def _progress(
        self, epoch: int, step: int, spe: int, total: int, loss: float, seen: int, elapsed: float
    ) -> None:
        rate = seen / max(elapsed, 1e-9)
        step_time = (time.monotonic() - self.t_train) / max(1, self.steps_done_here)
        eta = (total - self.global_step) * step_time
        lr = self.optimizer.param_groups[0]["lr"]
        self.out.emit(
            "progress",
            epoch=epoch,
            epochs=self.cfg.loop.epochs,
            step=step,
            steps_per_epoch=spe,
            global_step=self.global_step,
            total_steps=total,
            loss=loss,
            lr=lr,
            images_per_s=round(rate, 1),
            eta_s=round(eta, 1),
        )
        self.out.say(
            f"epoch {epoch}/{self.cfg.loop.epochs}  step {step}/{spe}  loss {loss:.4f}  "
            f"lr {lr:.2e}  {rate:.0f} img/s  ETA {_fmt_duration(eta)}"
        )

    @torch.inference_mode()
    def evaluate(
        self, data: DecodedSplit | StreamingDataset, model: Any = None
    ) -> MetricAccumulator:
        model = model or self.model
        model.eval()
        acc = MetricAccumulator(len(self.classes))
        for x, y in self._batches(data, train=False):
            x = normalize(x.to(self.device, non_blocking=True), self.mean, self.std)
            y = y.to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = model(pixel_values=x).logits
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            acc.update(logits, y, float(loss.detach()))
        return acc

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.precision.autocast_dtype)

    def _is_better(self, metrics: dict[str, float]) -> bool:
        if self.best["metrics"] is None:
            return True
        key = self.cfg.loop.monitor
        new, old = metrics[key], self.best["metrics"][key]
        return bool(new < old) if key == "loss" else bool(new > old)

    def _log_epoch(
        self, epoch: int, train: dict[str, float], val: dict[str, float], lr: float
    ) -> None:
        for split, values in (("train", train), ("val", val)):
            for k, v in values.items():
                self.tb.add_scalar(f"{split}/{k}", v, epoch)
            self.out.emit("metrics", epoch=epoch, split=split, values=values, lr=lr)
        self.tb.add_scalar("train/lr_epoch", lr, epoch)
        self.tb.flush()
        extra = f"  val top5 {val['top5']:.4f}" if "top5" in val else ""
        self.out.say(
            f"epoch {epoch}/{self.cfg.loop.epochs} done  train loss {train['loss']:.4f} "
            f"acc {train['accuracy']:.4f}  val loss {val['loss']:.4f} acc {val['accuracy']:.4f} "
            f"f1 {val['f1_macro']:.4f}{extra}"
        )

    # ---- checkpoints ---------------------------------------------------------------------

    def _info(self, epoch: int, metrics: dict[str, float] | None) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "val": metrics,
            "classes": self.classes,
            "model": self.cfg.model.name,
            "image_size": self.size,
        }

    def _save(self, epoch: int, improved: bool, val_acc: MetricAccumulator) -> None:
        m, p = self.model, self.loaded.processor
        val = val_acc.compute()
        info = self._info(epoch, val)
        if improved and self.cfg.checkpoint.save_best:
            info_best = {
                **info,
                "confusion": val_acc.confusion.tolist(),
                "per_class_accuracy": val_acc.per_class_accuracy(self.classes),
            }
            path = ckpt.save_checkpoint(self.ckpt_dir / "best", m, p, info_best)
            self.out.emit("checkpoint", epoch=epoch, kind="best", path=str(path))
        every = self.cfg.checkpoint.save_every_epochs
        if every and epoch % every == 0:
            path = ckpt.save_checkpoint(self.ckpt_dir / f"epoch-{epoch}", m, p, info)
            self.out.emit("checkpoint", epoch=epoch, kind="epoch", path=str(path))
        path = ckpt.save_checkpoint(self.ckpt_dir / "last", m, p, info, self._state(epoch))
        self.out.emit("checkpoint", epoch=epoch, kind="last", path=str(path))

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best": self.best,
            "stale_epochs": self.stale_epochs,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "python": random.getstate(),
                "numpy": np.random.get_state(),
            },
        }

    def _restore(self, path: Path) -> int:
        state = ckpt.load_training_state(path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.best = state["best"]
        self.stale_epochs = state["stale_epochs"]
        self.global_step = state["global_step"]
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        epoch = int(state["epoch"])
        self.out.emit("resume", epoch=epoch, checkpoint=str(path))
        self.out.say(f"resuming from {path} after epoch {epoch} (step {self.global_step})")
        return epoch

    # ---- the end -------------------------------------------------------------------------

    def _finish(self, status: str, elapsed: float) -> dict[str, Any]:
        if not self.dist.is_main:
            return {}
        best_dir = ckpt.find_checkpoint(self.ckpt_dir, "best")
        test: dict[str, Any] | None = None
        if "test" in self.scan.splits and best_dir is not None:
            self.out.say(f"evaluating {best_dir} on test/")
            from transformers import AutoModelForImageClassification

            best_model = AutoModelForImageClassification.from_pretrained(best_dir)
            best_model.to(self.device)
            test_acc = self.evaluate(self._prepare_split("test"), best_model)
            test = {
                "metrics": test_acc.compute(),
                "per_class_accuracy": test_acc.per_class_accuracy(self.classes),
                "confusion": test_acc.confusion.tolist(),
            }
            self.out.emit(
                "metrics", epoch=self.best["epoch"], split="test", values=test["metrics"], lr=None
            )
        results = {
            "status": status,
            "classes": self.classes,
            "best_epoch": self.best["epoch"],
            "best_val": self.best["metrics"],
            "monitor": self.cfg.loop.monitor,
            "test": test,
            "skipped_images": getattr(self, "skipped", {}),
            "best_checkpoint": str(best_dir) if best_dir else None,
            "elapsed_s": round(elapsed, 2),
        }
        tmp = self.run_dir / ".results.json.tmp"
        tmp.write_text(json.dumps(results, indent=2))
        os.replace(tmp, self.run_dir / "results.json")
        self.out.emit(
            "finished",
            status=status,
            best_epoch=self.best["epoch"],
            best=self.best["metrics"],
            test=test["metrics"] if test else None,
            elapsed_s=round(elapsed, 2),
        )
        summary = f"best val {self.cfg.loop.monitor} "
        summary += f"{(self.best['metrics'] or {}).get(self.cfg.loop.monitor, float('nan')):.4f}"
        summary += f" at epoch {self.best['epoch']}"
        if test:
            summary += f"; test accuracy {test['metrics']['accuracy']:.4f}"
        self.out.say(f"finished ({status}) in {_fmt_duration(elapsed)}: {summary}")
        return results

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


class _NullWriter:
    """TensorBoard on data-parallel ranks other than 0: rank 0 writes for the run."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _default_cache_dir() -> str:
    return os.environ.get("TRAINYARD_CACHE_DIR") or str(Path.home() / ".cache" / "trainyard")


def _to_device_or_pinned(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Small datasets live on the GPU whole (no host-to-device copies per step, airbench-style);
    # larger ones stay in pinned host memory for asynchronous copies.
    free, _ = torch.cuda.mem_get_info(device)
    if images.nbytes < 0.25 * free:
        return images.to(device)
    return images.pin_memory()
