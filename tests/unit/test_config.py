from pathlib import Path

import pytest

from trainyard.trainer.config import ConfigError, TrainConfig, apply_override


def load(tmp_path: Path, text: str, overrides: list[str] | None = None) -> TrainConfig:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return TrainConfig.load(p, overrides)


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, "data: {root: /data}\n")
    assert cfg.model.name == "resnet-tiny"
    assert cfg.optimizer.name == "adamw"
    assert cfg.loop.epochs == 10


def test_round_trips_through_yaml(tmp_path: Path) -> None:
    cfg = load(tmp_path, "data: {root: /data}\nloop: {epochs: 3}\n")
    again = load(tmp_path, cfg.to_yaml())
    assert again == cfg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("optimizer: {lr: -1}", "optimizer.lr: Input should be greater than 0 (got -1)"),
        (
            "optimizer: {name: sgdd}",
            "optimizer.name: unknown optimizer 'sgdd'. Did you mean 'sgd'?",
        ),
        ("schedule: {name: cosin}", "schedule.name: unknown schedule 'cosin'"),
        ("loss: {name: hinge}", "loss.name: unknown loss 'hinge'"),
        ("augmentation: {preset: wild}", "augmentation.preset: unknown augmentation preset"),
        ("augmentation: {params: {spin: 1}}", "augmentation.params.spin: unknown parameter"),
        ("augmentation: {params: {hflip: 2}}", "augmentation.params.hflip"),
        ("loop: {epochs: 0}", "loop.epochs: Input should be greater than or equal to 1"),
        ("loop: {lerning_rate: 1}", "loop.lerning_rate: unknown field"),
        ("data: {root: /d, batch_size: big}", "data.batch_size: Input should be a valid integer"),
        ("loop: {epochs: 2}\nschedule: {warmup_epochs: 3}", "schedule.warmup_epochs"),
    ],
)
def test_errors_name_the_field_and_value(tmp_path: Path, text: str, expected: str) -> None:
    body = text if text.startswith("data:") else "data: {root: /d}\n" + text
    with pytest.raises(ConfigError) as e:
        load(tmp_path, body)
    msg = str(e.value)
    assert expected in msg
    assert "\n" not in msg
    assert str(tmp_path / "c.yaml") in msg


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        TrainConfig.load(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(tmp_path, "data: [unclosed")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="data: Field required"):
        load(tmp_path, "loop: {epochs: 1}\n")


def test_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "data: {root: /d}\n",
        ["optimizer.lr=0.01", "loop.epochs=3", "data.cache=disk", "checkpoint.save_best=false"],
    )
    assert cfg.optimizer.lr == 0.01
    assert cfg.loop.epochs == 3
    assert cfg.data.cache == "disk"
    assert cfg.checkpoint.save_best is False


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_override({}, "optimizer.lr")
    with pytest.raises(ConfigError, match="is not a section"):
        apply_override({"loop": 3}, "loop.epochs=2")
