"""Projects: create, rename, delete (with confirmation); run counts by state."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from trainyard.platform import projects
from trainyard.platform.status import RunStatus
from trainyard.ui.common import UIContext, project_choices, require_project, user_errors


def projects_table(ctx: UIContext) -> pd.DataFrame:
    rows = []
    with ctx.platform.session() as s:
        for p in projects.list_projects(s):
            counts = projects.run_counts(s, p.id or 0)
            rows.append(
                {
                    "id": p.id,
                    "project": p.name,
                    "description": p.description,
                    **{st.value.lower(): counts[st.value] for st in RunStatus},
                }
            )
    cols = ["id", "project", "description", *(st.value.lower() for st in RunStatus)]
    return pd.DataFrame(rows, columns=cols)


def create_projects_tab(ctx: UIContext, project: gr.Dropdown) -> dict[str, Any]:
    gr.Markdown("Projects hold datasets, configs and runs. Deleting one deletes all of them.")
    table = gr.Dataframe(value=None, interactive=False, label="Projects")
    with gr.Row():
        name = gr.Textbox(label="New project name", scale=3)
        description = gr.Textbox(label="Description", scale=4)
        create = gr.Button("Create project", variant="primary", scale=1)
    with gr.Accordion("Rename or delete the selected project", open=False):
        with gr.Row():
            new_name = gr.Textbox(label="New name", scale=3)
            rename = gr.Button("Rename", scale=1)
        with gr.Row():
            confirm = gr.Textbox(label="Type the project's name to confirm deletion", scale=3)
            delete = gr.Button("Delete project", variant="stop", scale=1)
    status = gr.Markdown()

    @user_errors
    def do_create(name: str, description: str) -> tuple[Any, ...]:
        with ctx.platform.session() as s:
            p = projects.create_project(s, name, description or "")
        return (
            gr.update(choices=project_choices(ctx), value=p.id),
            projects_table(ctx),
            f"Created project **{p.name}**.",
            "",
        )

    @user_errors
    def do_rename(project_id: Any, new_name: str) -> tuple[Any, ...]:
        pid = require_project(project_id)
        with ctx.platform.session() as s:
            p = projects.rename_project(s, pid, new_name)
        return (
            gr.update(choices=project_choices(ctx), value=pid),
            projects_table(ctx),
            f"Renamed to **{p.name}**.",
        )

    @user_errors
    def do_delete(project_id: Any, confirm_name: str) -> tuple[Any, ...]:
        pid = require_project(project_id)
        with ctx.platform.session() as s:
            p = projects.get_project(s, pid)
            if (confirm_name or "").strip() != p.name:
                raise gr.Error(f"type the project's name, {p.name!r}, to confirm deletion")
            projects.delete_project(s, pid)
        choices = project_choices(ctx)
        return (
            gr.update(choices=choices, value=choices[0][1] if choices else None),
            projects_table(ctx),
            f"Deleted project **{p.name}** and everything in it.",
            "",
        )

    create.click(
        do_create, [name, description], [project, table, status, name], api_name="create_project"
    )
    rename.click(
        do_rename, [project, new_name], [project, table, status], api_name="rename_project"
    )
    delete.click(
        do_delete, [project, confirm], [project, table, status, confirm], api_name="delete_project"
    )
    return {"table": table, "on_project": [(lambda _pid: projects_table(ctx), [table])]}
