"""A project's named items (saved models, augmentation presets): one name per project, found,
listed and deleted by that name. The service that owns each kind validates what it stores;
this module only stores it."""

from __future__ import annotations

from collections.abc import Container
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from trainyard.platform.errors import Conflict, NotFound, PlatformError
from trainyard.platform.models import AugmentationPreset, ModelEntry
from trainyard.platform.projects import clean_name, get_project

Item = TypeVar("Item", ModelEntry, AugmentationPreset)


def find_item(session: Session, kind: type[Item], project_id: int, name: str) -> Item | None:
    stmt = select(kind).where(kind.project_id == project_id, kind.name == name)
    return session.exec(stmt).first()


def require_new_name(
    session: Session, kind: type[Item], project_id: int, name: str, what: str
) -> None:
    """Refuse a taken name before any slow validation runs."""
    if find_item(session, kind, project_id, name) is not None:
        raise Conflict(f"this project already has a {what} named {name!r}; delete it first")


def new_item_name(
    session: Session,
    kind: type[Item],
    project_id: int,
    name: str,
    what: str,
    builtins: Container[str],
) -> str:
    """`name` cleaned for a new item of an existing project: refused when empty, too long,
    a built-in's name, or taken."""
    get_project(session, project_id)
    name = clean_name(name, f"{what} name")
    if name in builtins:
        raise PlatformError(f"{what} name: {name!r} is a built-in preset; choose another name")
    require_new_name(session, kind, project_id, name, what)
    return name


def add_item(session: Session, row: Item, what: str) -> Item:
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # a concurrent save of the same name won the race
        session.rollback()
        raise Conflict(f"this project already has a {what} named {row.name!r}") from None
    return row


def list_items(session: Session, kind: type[Item], project_id: int) -> list[Item]:
    stmt = select(kind).where(kind.project_id == project_id).order_by(col(kind.name))
    return list(session.exec(stmt))


def get_item(session: Session, kind: type[Item], project_id: int, name: str, what: str) -> Item:
    """The item, or an error that lists the names this project has."""
    name = (name or "").strip()
    row = find_item(session, kind, project_id, name)
    if row is None:
        names = [r.name for r in list_items(session, kind, project_id)]
        saved = f"saved: {', '.join(names)}" if names else "none saved yet"
        raise NotFound(f"this project has no {what} named {name!r} ({saved})")
    return row


def delete_item(session: Session, kind: type[Item], project_id: int, name: str, what: str) -> Item:
    row = get_item(session, kind, project_id, name, what)
    session.delete(row)
    session.flush()
    return row
