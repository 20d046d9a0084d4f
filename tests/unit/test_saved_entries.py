"""Saved models and saved augmentation presets: the services, on every database the suite has."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from trainyard.platform import aug_presets, model_entries, projects
from trainyard.platform.errors import Conflict, NotFound, PlatformError
from trainyard.trainer.config import TrainConfig


@pytest.fixture
def project(session: Session):  # type: ignore[no-untyped-def]
    p = projects.create_project(session, "saved")
    session.commit()
    return p


@pytest.fixture(scope="module")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `save_pretrained` folder, as a finished run's `best/` is."""
    from trainyard.trainer.models import create_model

    folder = tmp_path_factory.mktemp("model") / "best"
    loaded = create_model("vit-tiny", ["cat", "dog", "eel"])
    loaded.model.save_pretrained(folder)  # type: ignore[attr-defined]
    loaded.processor.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def _entry_names(session: Session, project_id: int) -> list[str]:
    return [e.name for e in model_entries.list_model_entries(session, project_id)]


def test_model_entries_store_preset_and_local_folder_measured(
    session: Session, project, local_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = model_entries.save_model_entry(session, project.id, " tiny ", "resnet-tiny")
    assert (tiny.name, tiny.kind, tiny.ref) == ("tiny", "preset", "resnet-tiny")
    assert (tiny.parameters, tiny.image_size) == (309_714, 32)

    # A relative folder is stored absolute: runs start in a directory of Ray's choosing.
    monkeypatch.chdir(local_model.parent)
    mine = model_entries.save_model_entry(session, project.id, "mine", "best")
    session.commit()
    assert (mine.kind, mine.ref, mine.image_size) == ("local", str(local_model), 32)
    assert mine.parameters and mine.parameters > 0

    assert _entry_names(session, project.id) == ["mine", "tiny"]
    assert model_entries.get_model_entry(session, project.id, "mine").ref == str(local_model)
    # The stored ref is what a config's model.name takes.
    TrainConfig.from_dict({"data": {"root": "/d"}, "model": {"name": mine.ref}})

    model_entries.delete_model_entry(session, project.id, "tiny")
    session.commit()
    assert _entry_names(session, project.id) == ["mine"]
    with pytest.raises(NotFound, match=r"no saved model named 'tiny' \(saved: mine\)"):
        model_entries.get_model_entry(session, project.id, "tiny")


def test_model_entries_refuse_what_cannot_load(session: Session, project) -> None:
    model_entries.save_model_entry(session, project.id, "tiny", "resnet-tiny")
    session.commit()
    cases = [
        ("tiny", "vit-tiny", Conflict, "already has a saved model named 'tiny'"),
        ("", "vit-tiny", PlatformError, "saved model name: must not be empty"),
        ("x" * 101, "vit-tiny", PlatformError, "at most 100 characters"),
        ("resnet-small", "vit-tiny", PlatformError, "'resnet-small' is a built-in preset"),
        ("typo", "resnet-tinyy", PlatformError, "Did you mean 'resnet-tiny'"),
        ("blank", "  ", PlatformError, "give a preset name, a hub id"),
        ("gone", "/no/such/folder/", PlatformError, "model '/no/such/folder/' not saved"),
        # Offline (the default, and this suite): not in the cache means refused, not fetched.
        (
            "hub",
            "org/not-downloaded",
            PlatformError,
            r"model 'org/not-downloaded' not saved: cannot load 'org/not-downloaded' from the "
            r"local HuggingFace cache \(downloads are off",
        ),
    ]
    for name, ref, error, message in cases:
        with pytest.raises(error, match=message):
            model_entries.save_model_entry(session, project.id, name, ref)
        session.rollback()
    assert _entry_names(session, project.id) == ["tiny"]
    with pytest.raises(NotFound, match="no project"):
        model_entries.save_model_entry(session, 9999, "x", "resnet-tiny")


def test_entries_belong_to_their_project(session: Session, project) -> None:
    other = projects.create_project(session, "other")
    model_entries.save_model_entry(session, project.id, "tiny", "resnet-tiny")
    model_entries.save_model_entry(session, other.id, "tiny", "vit-tiny")  # same name, elsewhere
    aug_presets.save_aug_preset(session, other.id, "flips", "light", {})
    session.commit()
    assert model_entries.get_model_entry(session, other.id, "tiny").ref == "vit-tiny"
    assert aug_presets.list_aug_presets(session, project.id) == []
    with pytest.raises(NotFound, match="none saved yet"):
        aug_presets.delete_aug_preset(session, project.id, "flips")
    projects.delete_project(session, other.id)
    session.commit()
    assert model_entries.list_model_entries(session, other.id) == []
    assert aug_presets.list_aug_presets(session, other.id) == []


def test_aug_presets_store_validated_overrides(session: Session, project) -> None:
    row = aug_presets.save_aug_preset(
        session, project.id, "rotate", "strong", {"rotation": "30", "vflip": 0.5}
    )
    session.commit()
    stored = aug_presets.get_aug_preset(session, project.id, "rotate")
    assert (stored.base, stored.params) == ("strong", {"rotation": 30.0, "vflip": 0.5})
    resolved = aug_presets.resolved_params(row)
    assert (resolved.rotation, resolved.erasing) == (30.0, 0.25)  # the rest is strong's
    section = aug_presets.config_section(row)
    assert section == {"preset": "strong", "params": {"rotation": 30.0, "vflip": 0.5}}
    cfg = TrainConfig.from_dict({"data": {"root": "/d"}, "augmentation": section})
    assert cfg.augmentation.params == {"rotation": 30.0, "vflip": 0.5}

    cases = [
        ("rotate", "light", {}, Conflict, "already has a saved augmentation preset"),
        (" ", "light", {}, PlatformError, "augmentation preset name: must not be empty"),
        ("strong", "light", {}, PlatformError, "'strong' is a built-in preset"),
        ("x", "strongg", {}, PlatformError, r"base: unknown augmentation preset 'strongg'"),
        ("x", "light", {"rotation": 200}, PlatformError, r"params\.rotation: Input should be"),
        ("x", "light", {"rotaton": 3}, PlatformError, r"params\.rotaton: unknown parameter"),
        ("x", "light", [1], PlatformError, "expected a mapping"),
    ]
    for name, base, params, error, message in cases:
        with pytest.raises(error, match=message):
            aug_presets.save_aug_preset(session, project.id, name, base, params)  # type: ignore[arg-type]
        session.rollback()
    assert [p.name for p in aug_presets.list_aug_presets(session, project.id)] == ["rotate"]

    aug_presets.delete_aug_preset(session, project.id, "rotate")
    session.commit()
    assert aug_presets.list_aug_presets(session, project.id) == []


def test_migrations_match_the_tables(engine) -> None:  # type: ignore[no-untyped-def]
    """The Alembic head and the SQLModel tables agree (a column added to one only fails here)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import trainyard.platform.models  # noqa: F401  (registers the tables)

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
