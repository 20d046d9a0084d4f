from pathlib import Path

import pytest
from PIL import Image

from trainyard.trainer.checkpoint import find_checkpoint, read_info, save_checkpoint
from trainyard.trainer.inference import PredictionError, Predictor
from trainyard.trainer.models import create_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    m = create_model("resnet-tiny", ["cat", "dog", "fish"])
    dest = tmp_path_factory.mktemp("ckpt") / "best"
    return save_checkpoint(dest, m.model, m.processor, {"epoch": 1})


def test_checkpoint_swap_keeps_one_complete_folder(checkpoint: Path) -> None:
    m = create_model("resnet-tiny", ["cat", "dog", "fish"])
    save_checkpoint(checkpoint, m.model, m.processor, {"epoch": 2})
    assert read_info(checkpoint)["epoch"] == 2
    assert not any(p.name.startswith(".") for p in checkpoint.parent.iterdir())


def test_find_checkpoint_falls_back_to_the_copy_a_crash_left(tmp_path: Path) -> None:
    m = create_model("resnet-tiny", ["a", "b"])
    save_checkpoint(tmp_path / "last", m.model, m.processor, {"epoch": 1})
    assert find_checkpoint(tmp_path) == tmp_path / "last"
    (tmp_path / "last").rename(tmp_path / ".last.old")  # as if killed between the two renames
    assert find_checkpoint(tmp_path) == tmp_path / ".last.old"
    assert find_checkpoint(tmp_path, "best") is None


def test_predictor_returns_top_k_labels(checkpoint: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(img)
    out = Predictor(checkpoint).predict([img, img.read_bytes(), Image.open(img)], top_k=2)
    assert len(out) == 3 and all(len(p) == 2 for p in out)
    assert {p.label for p in out[0]} <= {"cat", "dog", "fish"}
    assert out[0][0].score >= out[0][1].score
    assert out[0] == out[1] == out[2]


def test_predictor_refuses_what_is_not_an_image(checkpoint: Path, tmp_path: Path) -> None:
    p = Predictor(checkpoint, max_pixels=1_000_000)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    big = tmp_path / "big.png"
    Image.new("L", (2000, 1000)).save(big)
    with pytest.raises(PredictionError, match="notes.txt: not an image"):
        p.predict([txt])
    with pytest.raises(PredictionError, match="empty.png: empty file"):
        p.predict([empty])
    with pytest.raises(PredictionError, match="big.png: 2000x1000 is 2 megapixels; the limit is 1"):
        p.predict([big])
    with pytest.raises(PredictionError, match="image 1: not an image"):
        p.predict([b"GIF89a-not-really"])
    with pytest.raises(PredictionError, match="no config.json"):
        Predictor(tmp_path)
