"""Decode a split once into a uint8 tensor `[N, 3, S, S]`, optionally cached on disk.

Decoding a JPEG or PNG costs more than a small model's training step, so epochs after the
first read decoded pixels from memory (7-10x faster than decoding each epoch, DESIGN.md).
Decoding runs in threads: torchvision's decoders and resize release the GIL.
A bad image is reported by path; with `on_bad_image: skip` it is left out and listed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file
from torchvision.transforms.v2 import functional as TF

from trainyard.trainer.data import DataError, Split

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
# Beyond this many pixels an image is refused rather than decoded: a decompression bomb or a
# file that is not what it claims to be. 50 megapixels, like the UI's upload limit.
MAX_IMAGE_PIXELS = 50_000_000


class BadImage(Exception):
    pass


def load_image(path: str, size: int | None) -> torch.Tensor:
    """One image as uint8 RGB `[3, S, S]` (or its own size when `size` is None)."""
    return _finish(_decode_one(path, _read(path)), size)


def _read(path: str) -> torch.Tensor:
    if os.path.getsize(path) == 0:
        raise BadImage("empty file (0 bytes)")
    return read_file(path)


def _decode_one(path: str, data: torch.Tensor) -> torch.Tensor:
    if data.numel() == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError:
        return _decode_with_pil(path)  # BMP, TIFF and friends torchvision cannot decode


def _finish(img: torch.Tensor, size: int | None) -> torch.Tensor:
    if img.shape[-1] * img.shape[-2] > MAX_IMAGE_PIXELS:
        raise BadImage(f"{img.shape[-1]}x{img.shape[-2]} pixels is over the limit")
    if size is not None and tuple(img.shape[-2:]) != (size, size):
        img = TF.resize(img, [size, size], antialias=True)
    return img


def _same(img: torch.Tensor) -> torch.Tensor:
    return img


def _is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() > 3 and int(data[0]) == 0xFF and int(data[1]) == 0xD8


def _decode_with_pil(path: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise BadImage(f"{im.width}x{im.height} pixels is over the limit")
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"not a readable image ({type(e).__name__}: {e})") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def bad_images_error(bad: list[tuple[str, str]]) -> DataError:
    """One line: the first bad file, why, how many more, and what to do."""
    path, reason = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return DataError(
        f"unreadable image {path}: {reason}{more}. Fix or remove it, or set data.on_bad_image: skip"
    )


@dataclass
class DecodedSplit:
    name: str
    images: torch.Tensor  # uint8 [N, 3, S, S]
    labels: torch.Tensor  # int64 [N]
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def __len__(self) -> int:
        return len(self.paths)


def decode_split(
    split: Split,
    size: int,
    workers: int,
    on_bad_image: str,
    cache_dir: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DecodedSplit:
    key = _cache_key(split, size) if cache_dir else None
    if cache_dir and key:
        cached = _read_cache(Path(cache_dir), key, split.name)
        if cached is not None:
            log.info("%s: %d decoded images from the disk cache", split.name, len(cached))
            return cached
    images = torch.empty((len(split), 3, size, size), dtype=torch.uint8)
    ok = torch.zeros(len(split), dtype=torch.bool)
    errors: dict[int, str] = {}

    def store(i: int, decode: Callable[[], torch.Tensor]) -> None:
        try:
            images[i] = _finish(decode(), size)
            ok[i] = True
        except BadImage as e:
            errors[i] = str(e)
        except OSError as e:
            errors[i] = f"cannot read ({e.strerror or e})"

    def work(chunk: range) -> None:
        # JPEGs decode as one batch per chunk: one call instead of hundreds (1.5x faster on
        # CIFAR-10 here). Anything else, or a batch with a broken file, goes one by one.
        datas: dict[int, torch.Tensor] = {}
        for i in chunk:
            try:
                datas[i] = _read(split.paths[i])
            except BadImage as e:
                errors[i] = str(e)
            except (OSError, RuntimeError) as e:
                errors[i] = f"cannot read ({e})"
        jpegs = [i for i, d in datas.items() if _is_jpeg(d)]
        if jpegs:
            try:
                batch = decode_jpeg([datas[i] for i in jpegs], mode=ImageReadMode.RGB)
            except RuntimeError:
                batch = None
            if batch is not None:
                for i, img in zip(jpegs, batch, strict=True):
                    store(i, functools.partial(_same, img))
                    del datas[i]
        for i, data in datas.items():
            store(i, functools.partial(_decode_one, split.paths[i], data))

    chunk = 256
    chunks = [range(a, min(a + chunk, len(split))) for a in range(0, len(split), chunk)]
    with _native_stderr_silenced(), ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for k, _ in enumerate(pool.map(work, chunks)):
            if progress:
                progress(chunks[k][-1] + 1, len(split))
    skipped = [(split.paths[i], errors[i]) for i in sorted(errors)]
    if skipped and on_bad_image == "fail":
        raise bad_images_error(skipped)
    for path, reason in skipped:
        log.warning("skipped unreadable image %s: %s", path, reason)
    keep = ok.nonzero().flatten()
    out = DecodedSplit(
        name=split.name,
        images=images[keep] if skipped else images,
        labels=torch.tensor(split.labels, dtype=torch.int64)[keep],
        paths=[split.paths[i] for i in keep.tolist()],
        skipped=skipped,
    )
    if len(out) == 0:
        raise DataError(f"{split.name}/: no readable images")
    if cache_dir and key:
        _write_cache(Path(cache_dir), key, out)
    return out


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """libpng and libjpeg print their own complaints about a broken file to fd 2; we report
    each bad file ourselves, in one line, so their noise is dropped while decoding."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# ---- disk cache ---------------------------------------------------------------------------


def _cache_key(split: Split, size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}:{size}".encode())
    for path, label in zip(split.paths, split.labels, strict=True):
        st = os.stat(path)
        h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _read_cache(folder: Path, key: str, name: str) -> DecodedSplit | None:
    meta_path = folder / f"{key}.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        images = torch.from_numpy(np.load(folder / f"{key}.images.npy"))
        labels = torch.from_numpy(np.load(folder / f"{key}.labels.npy"))
    except (OSError, ValueError) as e:
        log.warning("ignoring a broken cache entry %s: %s", meta_path, e)
        return None
    return DecodedSplit(name, images, labels, meta["paths"], [(p, r) for p, r in meta["skipped"]])


def _write_cache(folder: Path, key: str, split: DecodedSplit) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # Arrays first, manifest last and atomically: a reader sees a complete entry or none.
    for suffix, arr in (("images", split.images), ("labels", split.labels)):
        _atomic_save(folder / f"{key}.{suffix}.npy", arr.numpy())
    meta = {"paths": split.paths, "skipped": split.skipped, "format": CACHE_FORMAT_VERSION}
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f)
    os.replace(tmp, folder / f"{key}.json")


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


# ---- batches ------------------------------------------------------------------------------


class TensorBatches:
    """Shuffled index batches over decoded images; one generator per epoch, so a resumed run
    sees the same order as an uninterrupted one. With `world` > 1 (data-parallel training),
    every rank draws the same permutation and takes its own disjoint slice of it, and every
    rank gets the same number of batches (DDP waits for all ranks at each step)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rank, self.world = rank, world
        self.shard = len(labels) // world if world > 1 else len(labels)
        # A last batch of one breaks BatchNorm; drop the remainder only when there is more.
        self.drop_last = (drop_last and self.shard > batch_size) or world > 1
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        n = self.shard
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g).to(self.images.device)
        else:
            order = torch.arange(n, device=self.images.device)
        if self.world > 1:
            order = order[: self.shard * self.world][self.rank :: self.world]
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.images[idx], self.labels[idx]


class StreamingDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """`cache: none`: decode every epoch, for datasets larger than memory."""

    def __init__(self, paths: list[str], labels: list[int], size: int) -> None:
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_image(self.paths[i], self.size), self.labels[i]


def verify_split(split: Split, workers: int, on_bad_image: str) -> Split:
    """For `cache: none`: open every image's header once before training, so a bad file is
    found now and not hours into an epoch. Returns the split without the bad files."""
    from PIL import Image

    def check(path: str) -> str | None:
        try:
            if os.path.getsize(path) == 0:
                return "empty file (0 bytes)"
            with Image.open(path) as im:
                im.verify()
        except Exception as e:  # PIL raises many kinds for broken files
            return f"not a readable image ({type(e).__name__}: {e})"
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = list(pool.map(check, split.paths))
    bad = [(p, r) for p, r in zip(split.paths, problems, strict=True) if r]
    if bad and on_bad_image == "fail":
        raise bad_images_error(bad)
    good = Split(split.name)
    for p, y, r in zip(split.paths, split.labels, problems, strict=True):
        if r is None:
            good.paths.append(p)
            good.labels.append(y)
    return good
