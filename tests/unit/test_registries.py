"""Every registry entry is built and exercised, so nothing registered can rot."""

import pytest
import torch

from trainyard.trainer.augment import (
    PRESETS,
    build_cpu_augment,
    build_cuda_augment,
    normalize,
    resolve_params,
)
from trainyard.trainer.config import ConfigError, LossConfig, OptimizerConfig, ScheduleConfig
from trainyard.trainer.losses import LOSSES, create_loss
from trainyard.trainer.models import MODELS, create_model
from trainyard.trainer.optim import OPTIMIZERS, SCHEDULES, create_optimizer, create_scheduler
from trainyard.trainer.registry import Registry, UnknownNameError

MEAN = torch.tensor([0.5, 0.5, 0.5])
STD = torch.tensor([0.25, 0.25, 0.25])


def test_unknown_name_lists_valid_names_and_suggests() -> None:
    with pytest.raises(UnknownNameError) as e:
        OPTIMIZERS.get("adamm")
    assert "Did you mean 'adam'?" in str(e.value)
    assert "adamw, adam, sgd" in str(e.value)


def test_duplicate_registration_warns() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("x", 1)
    with pytest.warns(UserWarning, match="registered twice"):
        reg.add("x", 2)
    assert reg.get("x") == 2


@pytest.mark.parametrize("name", MODELS.names())
def test_model_presets_build_and_classify(name: str) -> None:
    labels = ["cat", "dog", "fish"]
    m = create_model(name, labels)
    x = torch.randn(2, 3, m.image_size, m.image_size)
    logits = m.model(pixel_values=x).logits  # type: ignore[operator]
    assert logits.shape == (2, 3)
    assert m.model.config.id2label == {0: "cat", 1: "dog", 2: "fish"}  # type: ignore[attr-defined]


def test_unknown_model_name_suggests_a_preset() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'resnet-tiny'"):
        create_model("resnet-tiyn", ["a", "b"])


def test_hub_model_unavailable_offline_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as e:
        create_model("nobody/no-such-model-xyz", ["a", "b"])
    assert "cannot load 'nobody/no-such-model-xyz'" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizers_take_a_step(name: str) -> None:
    model = torch.nn.Linear(4, 2)
    opt = create_optimizer(model, OptimizerConfig(name=name, lr=0.1))
    before = model.weight.detach().clone()
    model(torch.randn(8, 4)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedules_warm_up_and_stay_in_range(name: str) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = create_scheduler(opt, ScheduleConfig(name=name, warmup_epochs=1), 100, 10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(0.0 <= lr <= 1.0 + 1e-9 for lr in lrs)
    assert lrs[0] < lrs[9]  # warm-up rises
    assert max(lrs) == pytest.approx(1.0, abs=0.11)


@pytest.mark.parametrize("name", LOSSES.names())
def test_losses_are_finite_and_prefer_right_answers(name: str) -> None:
    loss = create_loss(LossConfig(name=name))
    target = torch.tensor([0, 1])
    good = loss(torch.tensor([[5.0, -5.0], [-5.0, 5.0]]), target)
    bad = loss(torch.tensor([[-5.0, 5.0], [5.0, -5.0]]), target)
    assert torch.isfinite(good) and good < bad


@pytest.mark.parametrize("build", [build_cpu_augment, build_cuda_augment], ids=["cpu", "kornia"])
@pytest.mark.parametrize("preset", PRESETS.names())
def test_augmentation_presets_keep_shape_and_range(build, preset: str) -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 24, 24), dtype=torch.uint8)
    out = build(resolve_params(preset), MEAN, STD)(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    lo, hi = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25
    assert out.min() >= lo - 1e-4 and out.max() <= hi + 1e-4
    reference = (x.float() / 255 - MEAN.view(1, -1, 1, 1)) / STD.view(1, -1, 1, 1)
    if preset == "none":  # the same sum up to float rounding
        assert torch.allclose(out, reference, atol=1e-6)
        assert torch.allclose(normalize(x, MEAN, STD), reference, atol=1e-6)
    else:
        assert not torch.allclose(out, normalize(x, MEAN, STD))


def test_cpu_augment_randomises_each_image_separately() -> None:
    torch.manual_seed(0)
    img = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    batch = img.repeat(32, 1, 1, 1)
    out = build_cpu_augment(resolve_params("light"), MEAN, STD)(batch)
    distinct = {tuple(o.flatten()[:64].tolist()) for o in out}
    assert len(distinct) > 4


@pytest.mark.parametrize("hflip", [0.0, 0.5, 1.0])
def test_cpu_shift_and_mirror_are_crops_of_the_padded_image(hflip: float) -> None:
    # The mirror rides on the shift's column gather: each output must still be one of the
    # (2 * pad + 1)^2 crops of the zero-padded image, mirrored exactly when drawn so.
    torch.manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 16, 16), dtype=torch.uint8)
    params = resolve_params("none", {"translate": 0.125, "hflip": hflip})
    out = build_cpu_augment(params, torch.zeros(3), torch.ones(3))(x)  # out = x / 255
    pad = 2
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)).float().div_(255.0)
    mirrored = 0
    for img, src in zip(out, padded, strict=True):
        crops = [
            src[:, dy : dy + 16, dx : dx + 16]
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
        ]
        # Up to float rounding; neighbouring crops differ by at least 1/255.
        plain = any(torch.allclose(img, c, rtol=0, atol=1e-6) for c in crops)
        flipped = any(torch.allclose(img, c.flip(-1), rtol=0, atol=1e-6) for c in crops)
        assert plain or flipped
        mirrored += int(flipped and not plain)
    assert {0.0: mirrored == 0, 0.5: 16 < mirrored < 48, 1.0: mirrored == 64}[hflip]


def test_preset_params_can_be_overridden() -> None:
    p = resolve_params("light", {"hflip": 0.0})
    assert p.hflip == 0.0 and p.translate == PRESETS.get("light").translate
