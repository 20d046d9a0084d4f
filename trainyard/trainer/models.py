"""Model registry: presets built from a config with random weights, hub ids, local folders.

`create_model(name, labels)` is the one door. It returns the model (a
`transformers` `AutoModelForImageClassification` with our label names) and the image
processor that goes with it, so every checkpoint loads in
`transformers.pipeline("image-classification", model=DIR)` as it is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainyard.trainer.config import ConfigError
from trainyard.trainer.registry import Registry

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECK_LABELS = ("a", "b")  # any two labels build the classifier head; counts barely change


@dataclass(frozen=True)
class Preset:
    """A random-weight architecture small enough to train on a CPU."""

    build_config: Callable[[], object]  # -> transformers.PreTrainedConfig
    image_size: int


MODELS: Registry[Preset] = Registry("model preset")


def _resnet(embedding: int, hidden: list[int], depths: list[int]) -> Callable[[], object]:
    def build() -> object:
        from transformers import ResNetConfig

        return ResNetConfig(
            embedding_size=embedding, hidden_sizes=hidden, depths=depths, layer_type="basic"
        )

    return build


def _vit(size: int, patch: int, hidden: int, layers: int, heads: int) -> Callable[[], object]:
    def build() -> object:
        from transformers import ViTConfig

        return ViTConfig(
            image_size=size,
            patch_size=patch,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=hidden * 2,
        )

    return build


MODELS.add(
    "resnet-tiny",
    Preset(_resnet(16, [16, 32, 64, 128], [1, 1, 1, 1]), 32),
    "ResNet, 4 basic blocks, 0.3M parameters, 32 px. Trains on a CPU in seconds.",
)
MODELS.add(
    "resnet-small",
    Preset(_resnet(32, [32, 64, 128, 256], [1, 1, 1, 1]), 32),
    "ResNet, 4 basic blocks, 1.2M parameters, 32 px. CIFAR-sized photos on a CPU.",
)
MODELS.add(
    "resnet-18",
    Preset(_resnet(64, [64, 128, 256, 512], [2, 2, 2, 2]), 224),
    "ResNet-18 architecture with random weights, 224 px. Wants a GPU.",
)
MODELS.add(
    "vit-tiny",
    Preset(_vit(32, 4, 64, 2, 2), 32),
    "ViT, 2 layers of width 64, patch 4, 32 px, 75k parameters. Learns slowly: a smoke test.",
)


@dataclass
class LoadedModel:
    model: object  # transformers.PreTrainedModel
    processor: object  # transformers image processor
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # "preset", "local" or "hub"


def create_model(
    name: str,
    labels: list[str],
    image_size: int | None = None,
    pretrained: bool = True,
) -> LoadedModel:
    """Build `name` for `labels`. Raises ConfigError that says what to do when it cannot."""
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    if name in MODELS:
        return _from_preset(name, id2label, label2id, image_size)
    if Path(name).expanduser().is_dir():
        return _from_pretrained(
            str(Path(name).expanduser()), id2label, label2id, image_size, pretrained, "local"
        )
    if "/" in name or not name.replace("-", "").replace("_", "").isalnum():
        return _from_pretrained(name, id2label, label2id, image_size, pretrained, "hub")
    raise ConfigError(f"model.name: {MODELS.unknown_message(name)}; or give a hub id or a folder")


def _processor(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> object:
    from transformers import ViTImageProcessor

    return ViTImageProcessor(
        do_resize=True,
        size={"height": size, "width": size},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(mean),
        image_std=list(std),
    )


def _from_preset(
    name: str, id2label: dict[int, str], label2id: dict[str, int], image_size: int | None
) -> LoadedModel:
    from transformers import AutoModelForImageClassification

    preset = MODELS.get(name)
    config = preset.build_config()
    size = image_size or preset.image_size
    config.num_labels = len(id2label)  # type: ignore[attr-defined]
    config.id2label = id2label  # type: ignore[attr-defined]
    config.label2id = label2id  # type: ignore[attr-defined]
    if hasattr(config, "image_size"):
        config.image_size = size
    model = AutoModelForImageClassification.from_config(config)
    return LoadedModel(
        model,
        _processor(size, IMAGENET_MEAN, IMAGENET_STD),
        size,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "preset",
    )


def _from_pretrained(
    ref: str,
    id2label: dict[int, str],
    label2id: dict[str, int],
    image_size: int | None,
    pretrained: bool,
    source: str,
) -> LoadedModel:
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        processor = AutoImageProcessor.from_pretrained(ref)
        kwargs = dict(num_labels=len(id2label), id2label=id2label, label2id=label2id)
        if pretrained:
            model = AutoModelForImageClassification.from_pretrained(
                ref, ignore_mismatched_sizes=True, **kwargs
            )
        else:
            config = AutoConfig.from_pretrained(ref, **kwargs)
            model = AutoModelForImageClassification.from_config(config)
    except (OSError, ValueError) as e:
        where = "this folder" if source == "local" else "the local HuggingFace cache"
        # HF's first sentence says what failed; the rest is advice that, cut short, ends
        # mid-sentence ("Otherwise, make sure .") and that the line below gives better.
        lines = str(e).strip().splitlines() or [type(e).__name__]
        reason = lines[0].split(". ")[0].rstrip(".")[:200]
        hint = (
            " (downloads are off: HF_HUB_OFFLINE=1; TRAINYARD_HUB_OFFLINE=0 allows them)"
            if offline
            else ""
        )
        raise ConfigError(
            f"model.name: cannot load {ref!r} from {where}{hint}: {reason}. "
            f"Use a preset ({', '.join(MODELS.names())}), a local save_pretrained folder, "
            "or download the model first"
        ) from None
    size = image_size or _processor_size(processor) or 224
    mean = tuple(getattr(processor, "image_mean", None) or IMAGENET_MEAN)
    std = tuple(getattr(processor, "image_std", None) or IMAGENET_STD)
    # Training resizes to `size` itself; make the saved processor do the same at inference.
    processor = _processor(size, mean, std)
    return LoadedModel(model, processor, size, mean, std, source)


def _processor_size(processor: object) -> int | None:
    # transformers 5 loads `size` as a SizeDict (attributes, not a dict): read both, or a
    # saved 32 px checkpoint comes back as 224 px.
    def side(size: object, keys: tuple[str, ...]) -> int | None:
        for key in keys:
            value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
            if value:
                return int(value)
        return None

    size = side(getattr(processor, "size", None), ("height", "shortest_edge"))
    return size or side(getattr(processor, "crop_size", None), ("height",))


def count_parameters(model: object) -> int:
    return sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ModelSummary:
    """What a model name resolves to, measured by building it."""

    ref: str  # as given; a local folder made absolute (jobs run in a directory of Ray's choosing)
    source: str  # "preset", "local" or "hub"
    architecture: str
    parameters: int  # with a CHECK_LABELS (2-class) head
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def inspect_model(
    name: str, image_size: int | None = None, pretrained: bool = True
) -> ModelSummary:
    """Build `name` through `create_model`, the door training uses, and describe it: what
    loads here loads in a run. Raises ConfigError with the trainer's one-line reason."""
    loaded = create_model(name, list(CHECK_LABELS), image_size=image_size, pretrained=pretrained)
    ref = str(Path(name).expanduser().resolve()) if loaded.source == "local" else name
    return ModelSummary(
        ref=ref,
        source=loaded.source,
        architecture=type(loaded.model).__name__,
        parameters=count_parameters(loaded.model),
        image_size=loaded.image_size,
        mean=loaded.mean,
        std=loaded.std,
    )
