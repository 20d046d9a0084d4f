from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from trainyard.trainer.data import DataError, scan_dataset
from trainyard.trainer.image_cache import TensorBatches, decode_split, verify_split


def test_scan_reports_classes_and_counts(make_dataset: Callable[..., Path]) -> None:
    root = make_dataset(per_class=4)
    scan = scan_dataset(root)
    assert scan.classes == ["a", "b", "c"]
    assert scan.summary()["counts"] == {"train": [4, 4, 4], "val": [4, 4, 4], "test": [4, 4, 4]}


def test_hidden_and_non_image_files_are_ignored(make_dataset: Callable[..., Path]) -> None:
    root = make_dataset(per_class=2)
    (root / "train" / "a" / "notes.txt").write_text("hi")
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "val" / "b" / ".hidden").mkdir()
    scan = scan_dataset(root)
    assert scan.classes == ["a", "b", "c"]
    assert len(scan.splits["train"]) == 6
    assert any(p.endswith("notes.txt") for p in scan.ignored)


def _renamed(root: Path, src: str, dst: str) -> Path:
    (root / src).rename(root / dst)
    return root


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r / "missing", "dataset folder not found"),
        (lambda r: _renamed(r, "val", "validation"), "has no val/ folder"),
        (lambda r: _renamed(r, "val/c", "val/d"), "only in train/: c; only in val/: d"),
        (lambda r: _renamed(r, "test/c", "test/z"), "test/ has class folders that train/ lacks: z"),
        (lambda r: r / "train", "looks like one split"),
    ],
    ids=["missing-root", "no-val", "classes-differ", "test-extra-class", "pointed-at-split"],
)
def test_layout_errors_say_what_and_where(make_dataset, mutate, expected: str) -> None:
    root = mutate(make_dataset(per_class=2))
    with pytest.raises(DataError) as e:
        scan_dataset(root)
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def _broken(root: Path, kind: str) -> Path:
    bad = root / "train" / "b" / "bad.png"
    bad.write_bytes(b"" if kind == "empty" else b"\x89PNG\r\n\x1a\n garbage not a png")
    return bad


@pytest.mark.parametrize("kind", ["empty", "corrupt"])
def test_bad_images_fail_by_path(make_dataset, kind: str) -> None:
    root = make_dataset(per_class=3)
    bad = _broken(root, kind)
    split = scan_dataset(root).splits["train"]
    with pytest.raises(DataError) as e:
        decode_split(split, 16, workers=2, on_bad_image="fail")
    assert str(bad) in str(e.value)
    assert ("0 bytes" in str(e.value)) == (kind == "empty")
    with pytest.raises(DataError, match="bad.png"):
        verify_split(split, workers=2, on_bad_image="fail")


@pytest.mark.parametrize("kind", ["empty", "corrupt"])
def test_bad_images_can_be_skipped(make_dataset, kind: str) -> None:
    root = make_dataset(per_class=3)
    bad = _broken(root, kind)
    split = scan_dataset(root).splits["train"]
    out = decode_split(split, 16, workers=2, on_bad_image="skip")
    assert len(out) == 9 and [p for p, _ in out.skipped] == [str(bad)]
    assert out.images.shape == (9, 3, 16, 16) and out.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert len(verify_split(split, workers=2, on_bad_image="skip")) == 9


def test_decode_resizes_and_disk_cache_round_trips(make_dataset, tmp_path: Path) -> None:
    split = scan_dataset(make_dataset(per_class=2)).splits["val"]
    first = decode_split(split, 24, workers=2, on_bad_image="fail", cache_dir=str(tmp_path / "c"))
    assert first.images.shape == (6, 3, 24, 24) and first.images.dtype == torch.uint8
    assert len(list((tmp_path / "c").glob("*.json"))) == 1
    second = decode_split(split, 24, workers=2, on_bad_image="fail", cache_dir=str(tmp_path / "c"))
    assert torch.equal(first.images, second.images) and second.paths == first.paths


def test_batches_shuffle_per_epoch_reproducibly() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    labels = torch.arange(10)
    b = TensorBatches(images, labels, batch_size=4, shuffle=True, drop_last=True, seed=1)
    assert len(b) == 2
    b.epoch = 1
    e1 = [y.tolist() for _, y in b]
    b.epoch = 2
    e2 = [y.tolist() for _, y in b]
    b.epoch = 1
    assert [y.tolist() for _, y in b] == e1 != e2
    everything = TensorBatches(images, labels, batch_size=4, shuffle=False, drop_last=False)
    assert [len(y) for _, y in everything] == [4, 4, 2]
