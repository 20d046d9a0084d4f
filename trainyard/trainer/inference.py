"""`Predictor`: top-k predictions from a checkpoint folder, for the model-testing tab and scripts.

Inputs may be paths, bytes or PIL images. Anything that is not a readable image, or is larger
than `max_pixels`, is refused with `PredictionError` naming the input; nothing is half-done.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from trainyard.trainer.image_cache import MAX_IMAGE_PIXELS

ImageInput = str | os.PathLike[str] | bytes | Image.Image


class PredictionError(ValueError):
    pass


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


class Predictor:
    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str],
        device: str = "cpu",
        max_pixels: int = MAX_IMAGE_PIXELS,
    ) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        path = Path(checkpoint_dir)
        if not (path / "config.json").is_file():
            raise PredictionError(f"not a checkpoint folder (no config.json): {path}")
        self.model = AutoModelForImageClassification.from_pretrained(path).to(device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.device = device
        self.max_pixels = max_pixels
        id2label = self.model.config.id2label
        self.labels = [id2label[i] for i in range(len(id2label))]

    def predict(self, images: list[ImageInput], top_k: int = 5) -> list[list[Prediction]]:
        """Top-k (label, probability) for each image, best first."""
        pil = [self._open(img, i) for i, img in enumerate(images)]  # all checked before any work
        if not pil:
            return []
        k = max(1, min(top_k, len(self.labels)))
        inputs = self.processor(images=pil, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            probs = self.model(**inputs).logits.float().softmax(dim=-1)
        scores, idx = probs.topk(k, dim=-1)
        return [
            [Prediction(self.labels[j], float(s)) for s, j in zip(srow, irow, strict=True)]
            for srow, irow in zip(scores.tolist(), idx.tolist(), strict=True)
        ]

    def _open(self, img: ImageInput, index: int) -> Image.Image:
        name = _describe(img, index)
        if isinstance(img, Image.Image):
            im = img
        else:
            try:
                if isinstance(img, bytes):
                    if not img:
                        raise PredictionError(f"{name}: empty file (0 bytes)")
                    im = Image.open(io.BytesIO(img))
                else:
                    if os.path.getsize(img) == 0:
                        raise PredictionError(f"{name}: empty file (0 bytes)")
                    im = Image.open(img)
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
                raise PredictionError(
                    f"{name}: not an image trainyard can read ({type(e).__name__}); "
                    "use JPEG, PNG, BMP, GIF, WebP or TIFF"
                ) from None
        w, h = im.size
        if w * h > self.max_pixels:
            raise PredictionError(
                f"{name}: {w}x{h} is {w * h / 1e6:.0f} megapixels; the limit is "
                f"{self.max_pixels / 1e6:.0f}. Downscale it first"
            )
        try:
            return im.convert("RGB")
        except (OSError, ValueError) as e:
            raise PredictionError(f"{name}: the image data is corrupt ({e})") from None


def _describe(img: Any, index: int) -> str:
    if isinstance(img, str | os.PathLike):
        return str(img)
    return f"image {index + 1}"
