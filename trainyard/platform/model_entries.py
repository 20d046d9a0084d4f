"""Saved models: a project's named model references, each checked before it is stored.

A reference is what a config's `model.name` holds: a trainer preset, a HuggingFace hub id or
a local `save_pretrained` folder. Saving builds it once through the trainer's `create_model`,
the door training uses, so a saved entry loads in a run; the parameter count and input size
measured then are stored with it. A local folder is stored as an absolute path (runs start
in a directory of Ray's choosing).

Hub ids: with `TRAINYARD_HUB_OFFLINE=1` (the default) nothing is downloaded, so a hub id that
is not in the local HuggingFace cache cannot be built and is refused, with the reason and
what to do. It is not saved with a warning: the runs of this app are offline too, so such an
entry would fail in every run that used it. With downloads allowed, saving fetches the model
into the cache, where this machine's runs find it.
"""

from __future__ import annotations

from sqlmodel import Session

from trainyard.platform.errors import PlatformError
from trainyard.platform.models import ModelEntry
from trainyard.platform.named_items import (
    add_item,
    delete_item,
    get_item,
    list_items,
    new_item_name,
)
from trainyard.trainer.config import ConfigError
from trainyard.trainer.models import MODELS, inspect_model

WHAT = "saved model"


def save_model_entry(session: Session, project_id: int, name: str, ref: str) -> ModelEntry:
    """Build `ref` as training would, then store it under `name`; nothing is stored when it
    does not load."""
    name = new_item_name(session, ModelEntry, project_id, name, WHAT, MODELS)
    ref = (ref or "").strip()
    if not ref:
        raise PlatformError("model: give a preset name, a hub id (org/name) or a local folder")
    try:
        summary = inspect_model(ref)
    except ConfigError as e:
        reason = str(e).removeprefix("model.name: ")
        raise PlatformError(f"model {ref!r} not saved: {reason}") from None
    entry = ModelEntry(
        project_id=project_id,
        name=name,
        kind=summary.source,
        ref=summary.ref,
        parameters=summary.parameters,
        image_size=summary.image_size,
    )
    return add_item(session, entry, WHAT)


def list_model_entries(session: Session, project_id: int) -> list[ModelEntry]:
    return list_items(session, ModelEntry, project_id)


def get_model_entry(session: Session, project_id: int, name: str) -> ModelEntry:
    return get_item(session, ModelEntry, project_id, name, WHAT)


def delete_model_entry(session: Session, project_id: int, name: str) -> ModelEntry:
    """Configs that use the entry keep working: they hold a copy of its reference."""
    return delete_item(session, ModelEntry, project_id, name, WHAT)
