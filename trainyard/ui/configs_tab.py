"""Configs: a form built from `TrainConfig` and the registries, stored configs, YAML, groups.

The form is generated from the pydantic models: each widget's label, help text, default and
choices come from the field it edits, and the dropdowns from the registries, so a field
added to `TrainConfig` needs one entry in `LAYOUT` here and nothing else. A config is
validated by `TrainConfig` (through `platform.configs`) and nothing is stored until it passes;
the error names the field, in one line.

Fields the form does not show (betas, eval batch size, ...) survive a load and save: the
loaded body is kept per user in a `gr.State` and the form is laid over it. The YAML view
edits every field.

Every version of a stored config can be looked at (its YAML, when it was saved, what differs
from the newest) and loaded into the form; saving it then adds it as the newest version, so
an older config is restored without rewriting history.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import tempfile
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import pandas as pd
import yaml

from trainyard.platform import configs, datasets
from trainyard.platform.errors import NotFound, PlatformError
from trainyard.platform.models import StoredConfig
from trainyard.trainer.augment import PRESETS
from trainyard.trainer.config import ConfigError, TrainConfig
from trainyard.trainer.losses import LOSSES
from trainyard.trainer.models import MODELS
from trainyard.trainer.optim import OPTIMIZERS, SCHEDULES
from trainyard.ui.augment_tab import format_overrides, parse_overrides
from trainyard.ui.common import UIContext, ago, dynamic_dropdown, require_project, user_errors
from trainyard.ui.saved_choices import INFO as SAVED_INFO
from trainyard.ui.saved_choices import choice_updates, saved_augmentation

SECTIONS: dict[str, Any] = {name: f.annotation for name, f in TrainConfig.model_fields.items()}

# Rows of form fields, named `section_field` (the API's parameter names), per titled group.
LAYOUT: list[tuple[str, bool, list[list[str]]]] = [
    ("Data", True, [["data_root", "data_image_size", "data_batch_size"],
                    ["data_workers", "data_cache", "data_on_bad_image"]]),
    ("Model and augmentation", True, [["model_name", "model_pretrained"],
                                      ["augmentation_preset", "augmentation_params"]]),
    ("Optimisation", True, [
        ["optimizer_name", "optimizer_lr", "optimizer_weight_decay", "optimizer_momentum"],
        ["schedule_name", "schedule_warmup_epochs", "schedule_min_lr_ratio"],
        ["loss_name", "loss_label_smoothing", "loss_focal_gamma"]]),
    ("Training loop", True, [
        ["loop_epochs", "loop_seed", "loop_early_stopping_patience", "loop_monitor"],
        ["loop_device", "loop_mixed_precision", "loop_threads", "loop_grad_accum_steps"]]),
    ("Advanced", False, [
        ["loop_clip_grad_norm", "loop_max_steps", "checkpoint_save_every_epochs",
         "checkpoint_save_best"],
        ["data_eval_batch_size", "loop_log_every_steps", "loop_progress_interval_s"]]),
]  # fmt: skip
FORM_KEYS = [key for _, _, rows in LAYOUT for row in rows for key in row]
REGISTRY_CHOICES: dict[str, Callable[[], list[str]]] = {
    "model_name": MODELS.names,
    "augmentation_preset": PRESETS.names,
    "optimizer_name": OPTIMIZERS.names,
    "schedule_name": SCHEDULES.names,
    "loss_name": LOSSES.names,
}
TABLE_COLUMNS = ["id", "name", "version", "dataset", "model", "augmentation", "optimizer", "lr",
                 "epochs", "saved"]  # fmt: skip
MAX_YAML_BYTES = 1_000_000
MAX_DIFF_LINES = 15  # a version's differences from the newest, shown before "and N more"
# Plain words, not emoji: a status a script can test, and a browser without an emoji font shows.
VALID = "**Valid.**"
INVALID = "**Invalid:**"


def _field(key: str) -> Any:
    section, _, name = key.partition("_")
    return SECTIONS[section].model_fields[name]


def _default(key: str) -> Any:
    f = _field(key)
    return None if f.is_required() else f.get_default(call_default_factory=True)


def _base_type(key: str) -> tuple[Any, bool]:
    """(type, optional) of a field: `int | None` is (int, True)."""
    ann = _field(key).annotation
    if typing.get_origin(ann) in (types.UnionType, typing.Union):
        args = typing.get_args(ann)
        rest = [a for a in args if a is not type(None)]
        return rest[0], len(rest) < len(args)
    return ann, False


# A number box cannot be empty in the browser (it shows and sends 0), so in the form 0 stands
# for None ("off", "automatic"). Every such field refuses 0 itself (a test checks), so no
# valid value is lost.
OPTIONAL_NUMBERS = frozenset(
    k for k in FORM_KEYS if _base_type(k)[1] and _base_type(k)[0] in (int, float)
)


def _label(key: str) -> str:
    section, _, name = key.partition("_")
    special = {"name": section, "preset": "augmentation preset", "params": "overrides"}
    return special.get(name, name.replace("_", " "))


def _component(key: str) -> gr.components.Component:
    """A widget for one field: its kind from the annotation, text from the description."""
    f = _field(key)
    label = _label(key)
    info = f.description
    value = _default(key)
    base, _ = _base_type(key)
    if key == "data_root":
        # Custom values: any folder under the datasets root may be typed in.
        info = f"{info} A registered dataset, or a folder relative to the datasets root."
        return dynamic_dropdown(label="dataset", info=info)
    if key == "augmentation_params":
        return gr.Textbox(label=label, info=f"{info} YAML, e.g. {{hflip: 0.0}}", value="{}")
    if key in REGISTRY_CHOICES:
        choices = REGISTRY_CHOICES[key]()
        if key in SAVED_INFO:
            # The project's saved models and presets join at run time (and hub ids and local
            # folders are free text).
            info = f"{info} {SAVED_INFO[key]}"
            return dynamic_dropdown(label=label, info=info, choices=choices, value=value)
        return gr.Dropdown(label=label, info=info, choices=choices, value=value)
    if typing.get_origin(base) is Literal:
        return gr.Dropdown(label=label, info=info, choices=list(typing.get_args(base)), value=value)
    if base is bool:
        return gr.Checkbox(label=label, info=info, value=value)
    if base in (int, float):
        if key in OPTIONAL_NUMBERS:
            info, value = f"{info} 0 here means None.", 0 if value is None else value
        # No minimum/maximum here: TrainConfig checks ranges and names the field when it
        # refuses; Gradio's own range error would not say which field it means.
        return gr.Number(label=label, info=info, value=value, precision=0 if base is int else None)
    return gr.Textbox(label=label, info=info, value=value)


def form_body(base: dict[str, Any] | None, values: dict[str, Any]) -> dict[str, Any]:
    """The config dict: `base` (the loaded config, or nothing) with the form's values on top."""
    body = copy.deepcopy(base) if base else {}
    for key in FORM_KEYS:
        if key not in values:
            continue
        value = values[key]
        if key == "augmentation_params":
            value = parse_overrides(value)
        elif key in OPTIONAL_NUMBERS and not value:
            value = None
        elif isinstance(value, str):
            value = value.strip()
        if key == "data_root" and not value:
            raise ConfigError("data.root: choose a dataset (register one in Datasets)")
        section, _, name = key.partition("_")
        body.setdefault(section, {})[name] = value
    return body


def form_values(body: dict[str, Any], root_choices: list[tuple[str, str]], root_dir: Path) -> list:
    """The form's values for a stored config, in FORM_KEYS order. Missing fields get their
    defaults; an absolute data.root that is a registered dataset shows as that dataset."""
    out = []
    for key in FORM_KEYS:
        section, _, name = key.partition("_")
        value = (body.get(section) or {}).get(name, _default(key))
        if key == "augmentation_params":
            value = format_overrides(value or {})
        elif key in OPTIONAL_NUMBERS and value is None:
            value = 0
        elif key == "data_root" and isinstance(value, str) and Path(value).is_absolute():
            for _, rel in root_choices:
                if Path(value).resolve() == (root_dir / rel).resolve():
                    value = rel
        out.append(value)
    return out


def validation_line(body: dict[str, Any]) -> tuple[TrainConfig | None, str]:
    try:
        return configs.validate(body), VALID
    except PlatformError as e:
        return None, f"{INVALID} {e}"


def with_form_signature(fn: Callable[..., Any], *leading: str) -> Callable[..., Any]:
    """Give a `**form` handler a signature naming every field, so the API lists them as
    parameters with defaults (`client.predict(optimizer_lr=0.01, ...)`)."""
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in leading]
    params += [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in FORM_KEYS
    ]
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return fn


def configs_frame(rows: list[StoredConfig]) -> pd.DataFrame:
    """One line per stored config (or version): what a reader compares at a glance."""
    out = []
    for c in rows:
        b = c.body
        out.append(
            {
                "id": c.id,
                "name": c.name,
                "version": c.version,
                "dataset": b.get("data", {}).get("root"),
                "model": b.get("model", {}).get("name"),
                "augmentation": b.get("augmentation", {}).get("preset"),
                "optimizer": b.get("optimizer", {}).get("name"),
                "lr": b.get("optimizer", {}).get("lr"),
                "epochs": b.get("loop", {}).get("epochs"),
                "saved": _saved_ago(c),
            }
        )
    return pd.DataFrame(out, columns=TABLE_COLUMNS)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def version_markdown(row: StoredConfig, newest: StoredConfig, datasets_dir: Path) -> str:
    """When a version was saved, and how it differs from the newest version of its name
    (`data.root` compared as the folder it names, see `configs.comparable_body`)."""
    saved = f"saved {_saved_at(row):%Y-%m-%d %H:%M:%S} UTC ({_saved_ago(row)})"
    if row.version == newest.version:
        more = "Choose an older version to compare." if row.version > 1 else "The only version."
        return f"**{row.name}** v{row.version}, the newest, {saved}. {more}"
    head = f"**{row.name}** v{row.version}, {saved}."
    diff = configs.config_diff(
        configs.comparable_body(row.body, datasets_dir),
        configs.comparable_body(newest.body, datasets_dir),
    )
    if not diff:
        return f"{head} The same fields as v{newest.version}, the newest."
    lines = [f"{head} Against v{newest.version}, the newest, {len(diff)} field(s) differ:", ""]
    lines += [
        f"- `{key}`: `{_short(old)}` → `{_short(new)}`" for key, old, new in diff[:MAX_DIFF_LINES]
    ]
    if len(diff) > MAX_DIFF_LINES:
        lines.append(f"- and {len(diff) - MAX_DIFF_LINES} more")
    return "\n".join(lines)


def parse_version(value: Any) -> int:
    """A version number as sent by the dropdown (3) or typed by a script ("3", "v3")."""
    text = str(value).strip().removeprefix("v")
    if not text.isdigit():
        raise gr.Error(f"version: a whole number such as 3 (got {value!r})")
    return int(text)


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "config"


def create_configs_tab(ctx: UIContext, project: gr.Dropdown) -> dict[str, Any]:
    root_dir = Path(ctx.platform.settings.datasets_dir).resolve()
    gr.Markdown(
        "A config is everything a run needs. It is checked as you edit and stored only when "
        "valid; saving under an existing name adds a version (runs keep the one they used)."
    )
    loaded = gr.State({})  # per user: the loaded config, so fields not in the form survive
    form: dict[str, Any] = {}  # field key -> its widget (Any: the widgets differ in kind)
    with gr.Row():
        with gr.Column(scale=3):
            for title, open_, rows in LAYOUT:
                with gr.Accordion(title, open=open_):
                    for row in rows:
                        with gr.Row(equal_height=True):
                            for key in row:
                                form[key] = _component(key)
        with gr.Column(scale=2):
            with gr.Row(equal_height=True):
                # A script may send a config's id or name; the handlers check it.
                stored = dynamic_dropdown(label="Stored configs", scale=3)
                load = gr.Button("Load", scale=1)
                export = gr.Button("Export YAML", scale=1)
            with gr.Accordion("Versions of the selected config", open=False):
                with gr.Row(equal_height=True):
                    version = dynamic_dropdown(label="Version", scale=3)
                    load_version = gr.Button("Load into the form", scale=1)
                version_info = gr.Markdown()
                version_code = gr.Code(
                    language="yaml",
                    label="This version (load it, then Save to restore it as the newest)",
                    interactive=False,
                    lines=10,
                    max_lines=20,
                )
                versions_table = gr.Dataframe(
                    value=None, interactive=False, label="All versions", max_height=240
                )
            with gr.Row(equal_height=True):
                name = gr.Textbox(label="Config name", scale=3)
                save = gr.Button("Save", variant="primary", scale=1)
            status = gr.Markdown()
            with gr.Row():
                validate = gr.Button("Validate form → YAML", size="sm")
                to_form = gr.Button("YAML → form", size="sm")
                reset = gr.Button("Reset form", size="sm")
            code = gr.Code(
                language="yaml",
                label="YAML (edit, paste or upload; Import saves it under the name above)",
                interactive=True,
                lines=18,
                max_lines=30,
                buttons=["copy", "download"],
            )
            with gr.Row():
                upload = gr.UploadButton("Upload YAML", file_types=[".yaml", ".yml", ".json"])
                import_ = gr.Button("Import YAML", variant="primary")
            exported = gr.File(label="Exported", interactive=False, height=60)
    with gr.Row(equal_height=True):
        gr.Markdown("### Stored configs (newest version of each)")
        refresh = gr.Button("Refresh lists", size="sm", scale=0, min_width=140)
    table = gr.Dataframe(value=None, interactive=False, show_label=False)
    with gr.Accordion("Experiment groups", open=False):
        gr.Markdown("A group gathers the runs of one experiment, e.g. a learning-rate sweep.")
        with gr.Row(equal_height=True):
            group_name = gr.Textbox(label="Group name", scale=2)
            group_description = gr.Textbox(label="Description", scale=3)
            create_group = gr.Button("Create group", scale=1)
        groups = gr.Dataframe(value=None, interactive=False, label="Groups")

    form_list = list(form.values())

    def root_choices(project_id: Any) -> list[tuple[str, str]]:
        if project_id in (None, ""):
            return []
        with ctx.platform.session() as s:
            found = datasets.list_datasets(s, int(project_id))
        return [(d.name if d.name == d.path else f"{d.name} ({d.path})", d.path) for d in found]

    def configs_table(project_id: Any) -> pd.DataFrame:
        if project_id in (None, ""):
            return configs_frame([])
        with ctx.platform.session() as s:
            return configs_frame(configs.list_configs(s, int(project_id)))

    def groups_table(project_id: Any) -> pd.DataFrame:
        rows = []
        if project_id not in (None, ""):
            with ctx.platform.session() as s:
                rows = [
                    {"id": g.id, "group": g.name, "description": g.description}
                    for g in configs.list_groups(s, int(project_id))
                ]
        return pd.DataFrame(rows, columns=["id", "group", "description"])

    def stored_update(project_id: Any, selected: int | None = None, keep: bool = False) -> Any:
        choices: list[tuple[str, int]] = []
        if project_id not in (None, ""):
            with ctx.platform.session() as s:
                choices = [
                    (f"{c.name} v{c.version}", c.id)  # type: ignore[misc]
                    for c in configs.list_configs(s, int(project_id))
                ]
        if keep:  # refresh the list, leave the selection alone
            return gr.update(choices=choices)
        ids = [v for _, v in choices]
        return gr.update(choices=choices, value=selected if selected in ids else None)

    def lists(project_id: Any, pick_root: bool = False) -> tuple[Any, ...]:
        """The project's datasets, configs and groups; `pick_root` also points the form at
        the project's first dataset (a new project's form should not name another's data)."""
        roots = root_choices(project_id)
        root = gr.update(choices=roots, value=roots[0][1] if roots else None)
        return (
            root if pick_root else gr.update(choices=roots),
            stored_update(project_id),
            configs_table(project_id),
            groups_table(project_id),
        )

    def resolve_config(project_id: Any, config: Any) -> StoredConfig:
        """By id (the dropdown; any version) or by name (newest version)."""
        pid = require_project(project_id)
        if config in (None, ""):
            raise gr.Error("choose a stored config first")
        text = str(config).strip()
        with ctx.platform.session() as s:
            if text.isdigit():
                row = configs.get_config(s, int(text))
                if row.project_id == pid:
                    return row
            for row in configs.list_configs(s, pid):
                if row.name == text:
                    return row
        raise NotFound(f"this project has no config {text!r}")

    def fill(project_id: Any, body: dict[str, Any]) -> tuple[Any, ...]:
        values = form_values(body, root_choices(project_id), root_dir)
        return (*values, body)

    def versions_of(project_id: Any, config: Any) -> tuple[StoredConfig, list[StoredConfig]]:
        """The chosen config (by id: maybe an older version) and every version of its name,
        newest first."""
        row = resolve_config(project_id, config)
        with ctx.platform.session() as s:
            return row, configs.list_config_versions(s, row.project_id, row.name)

    def pick_version(
        project_id: Any, config: Any, version: Any
    ) -> tuple[StoredConfig, StoredConfig]:
        """(the chosen version, the newest)."""
        if version in (None, ""):
            raise gr.Error("choose a version first")
        _, versions = versions_of(project_id, config)
        return configs.find_version(versions, parse_version(version)), versions[0]

    def load_outputs(project_id: Any, row: StoredConfig, note: str = "") -> tuple[Any, ...]:
        """The form, name, YAML view and status after loading one stored version."""
        _, line = validation_line(row.body)
        return (
            *fill(project_id, row.body),
            row.name,
            yaml.safe_dump(row.body, sort_keys=False),
            f"Loaded **{row.name}** v{row.version}.{note} {line}",
        )

    # ---- handlers ------------------------------------------------------------------------

    def do_check(base: dict[str, Any], **values: Any) -> str:
        try:
            body = form_body(base, values)
        except ValueError as e:
            return f"{INVALID} {e}"
        cfg, line = validation_line(body)
        if cfg is not None:
            data_root = ctx.platform.absolute_data_root(cfg.to_dict())["data"]["root"]
            if not Path(data_root).is_dir():
                line += f" **Warning**: data.root: no folder {data_root} on this server."
        return line

    @user_errors
    def do_validate(base: dict[str, Any], **values: Any) -> tuple[Any, ...]:
        line = do_check(base, **values)
        if line.startswith(INVALID):
            return line, gr.update()
        return line, configs.validate(form_body(base, values)).to_yaml()

    @user_errors
    def do_save(project_id: Any, config_name: str, base: dict[str, Any], **values: Any) -> Any:
        pid = require_project(project_id)
        with ctx.platform.session() as s:
            row, added = configs.store_config(
                s, pid, config_name, form_body(base, values), root_dir
            )
        said = "Saved" if added else "Nothing changed since"
        return (
            f"{said} **{row.name}** version {row.version}.",
            stored_update(pid, row.id),
            configs_table(pid),
            yaml.safe_dump(row.body, sort_keys=False),
        )

    @user_errors
    def do_load(project_id: Any, config: Any) -> tuple[Any, ...]:
        return load_outputs(project_id, resolve_config(project_id, config))

    @user_errors
    def do_versions(project_id: Any, config: Any) -> tuple[Any, ...]:
        if project_id in (None, "") or config in (None, ""):  # the selection was cleared
            return gr.update(choices=[], value=None), configs_frame([]), "", ""
        chosen, rows = versions_of(project_id, config)
        choices = [(f"v{r.version}", r.version) for r in rows]
        choices[0] = (f"v{rows[0].version} (newest)", rows[0].version)
        return (
            gr.update(choices=choices, value=chosen.version),
            configs_frame(rows),
            yaml.safe_dump(chosen.body, sort_keys=False),
            version_markdown(chosen, rows[0], root_dir),
        )

    @user_errors
    def do_show_version(project_id: Any, config: Any, version: Any) -> tuple[str, str]:
        chosen, newest = pick_version(project_id, config, version)
        return (
            yaml.safe_dump(chosen.body, sort_keys=False),
            version_markdown(chosen, newest, root_dir),
        )

    @user_errors
    def do_load_version(project_id: Any, config: Any, version: Any) -> tuple[Any, ...]:
        chosen, newest = pick_version(project_id, config, version)
        note = (
            f" The newest is v{newest.version}: Save adds this one as v{newest.version + 1}."
            if chosen.version != newest.version
            else ""
        )
        return load_outputs(project_id, chosen, note)

    @user_errors
    def do_export(project_id: Any, config: Any) -> tuple[Any, ...]:
        row = resolve_config(project_id, config)
        folder = Path(tempfile.mkdtemp(prefix="trainyard-export-"))
        path = folder / f"{_safe_filename(row.name)}-v{row.version}.yaml"
        text = yaml.safe_dump(row.body, sort_keys=False)
        path.write_text(text)
        return str(path), text

    def parse_yaml(text: str) -> dict[str, Any]:
        if len((text or "").encode()) > MAX_YAML_BYTES:
            raise ConfigError("YAML: larger than 1 MB; is this a config?")
        try:
            raw = yaml.safe_load(text or "")
        except yaml.YAMLError as e:
            raise ConfigError(f"YAML: not valid ({e})".replace("\n", " ")) from None
        if not isinstance(raw, dict):
            raise ConfigError("YAML: expected a mapping with data:, model:, ... at the top")
        return raw

    @user_errors
    def do_import(project_id: Any, config_name: str, yaml_text: str) -> tuple[Any, ...]:
        pid = require_project(project_id)
        body = parse_yaml(yaml_text)
        with ctx.platform.session() as s:
            row, added = configs.store_config(s, pid, config_name, body, root_dir)
        said = "Imported as" if added else "Same as the newest version: nothing imported into"
        return (
            f"{said} **{row.name}** version {row.version}.",
            stored_update(pid, row.id),
            configs_table(pid),
            yaml.safe_dump(row.body, sort_keys=False),
        )

    @user_errors
    def do_yaml_to_form(project_id: Any, text: str) -> tuple[Any, ...]:
        body = parse_yaml(text)
        _, line = validation_line(body)
        return (*fill(project_id, body), line)

    @user_errors
    def do_upload(path: str) -> str:
        data = Path(path).read_bytes()
        if len(data) > MAX_YAML_BYTES:
            raise ConfigError("YAML: larger than 1 MB; is this a config?")
        return data.decode("utf-8", errors="replace")

    def do_reset(project_id: Any) -> tuple[Any, ...]:
        return (*fill(project_id, {}), "Form reset to the defaults.")

    @user_errors
    def do_create_group(project_id: Any, group: str, description: str = "") -> tuple[Any, ...]:
        pid = require_project(project_id)
        with ctx.platform.session() as s:
            g = configs.create_group(s, pid, group, description or "")
        return groups_table(pid), f"Created group **{g.name}**.", ""

    @user_errors
    def do_list(project_id: Any) -> tuple[Any, ...]:
        require_project(project_id)
        return lists(project_id)

    # ---- events --------------------------------------------------------------------------

    # As-you-type validation: one listener for every field (`input` is the user's edits
    # only, so loading a config does not fire thirty of them). The augmentation preset has
    # its own, below: a saved preset is applied first, then checked.
    gr.on(
        [c.input for c in form_list if c is not form["augmentation_preset"]],
        with_form_signature(user_errors(do_check), "base"),
        [loaded],
        [status],
        inputs_kwargs=form,
        api_visibility="private",
        show_progress="hidden",
        trigger_mode="always_last",
    )
    validate.click(
        with_form_signature(do_validate, "base"),
        [loaded],
        [status, code],
        inputs_kwargs=form,
        api_name="validate_config",
    )
    save.click(
        with_form_signature(do_save, "project_id", "config_name", "base"),
        [project, name, loaded],
        [status, stored, table, code],
        inputs_kwargs=form,
        api_name="save_config",
    )
    fill_outputs = [*form_list, loaded]
    load.click(
        do_load, [project, stored], [*fill_outputs, name, code, status], api_name="load_config"
    )
    export.click(do_export, [project, stored], [exported, code], api_name="export_config")
    # A new selection (chosen, saved or imported) lists its versions and shows the one chosen.
    stored.change(
        do_versions,
        [project, stored],
        [version, versions_table, version_code, version_info],
        api_name="list_config_versions",
    )
    version.input(
        do_show_version,
        [project, stored, version],
        [version_code, version_info],
        api_name="get_config_version",
    )
    load_version.click(
        do_load_version,
        [project, stored, version],
        [*fill_outputs, name, code, status],
        api_name="load_config_version",
    )
    import_.click(
        do_import, [project, name, code], [status, stored, table, code], api_name="import_config"
    )
    # Moving text between the YAML view and the form, and reading an uploaded file into the
    # view, change only this page: nothing for a script to call.
    to_form.click(
        do_yaml_to_form, [project, code], [*fill_outputs, status], api_visibility="private"
    )
    upload.upload(do_upload, [upload], [code], api_visibility="private")
    reset.click(do_reset, [project], [*fill_outputs, status], api_visibility="private")
    create_group.click(
        do_create_group,
        [project, group_name, group_description],
        [groups, status, group_name],
        api_name="create_group",
    )
    list_outputs = [form["data_root"], stored, table, groups]
    refresh.click(do_list, [project], list_outputs, api_name="list_configs")
    # Datasets and configs added elsewhere (another tab, a script) appear when a list opens.
    form["data_root"].focus(
        lambda p: gr.update(choices=root_choices(p)),
        [project],
        [form["data_root"]],
        api_visibility="private",
        show_progress="hidden",
    )
    stored.focus(
        lambda p: stored_update(p, keep=True),
        [project],
        [stored],
        api_visibility="private",
        show_progress="hidden",
    )
    # ---- the project's saved models and augmentation presets ------------------------------

    @user_errors
    def do_pick_augmentation(project_id: Any, base: dict[str, Any], **values: Any) -> Any:
        applied = saved_augmentation(ctx, project_id, values.get("augmentation_preset"))
        if applied is None:
            return gr.update(), gr.update(), do_check(base, **values)
        preset, params, line = applied
        values.update(augmentation_preset=preset, augmentation_params=params)
        return preset, params, f"{line} {do_check(base, **values)}"

    form["augmentation_preset"].input(
        with_form_signature(do_pick_augmentation, "project_id", "base"),
        [project, loaded],
        [form["augmentation_preset"], form["augmentation_params"], status],
        inputs_kwargs=form,
        api_visibility="private",
        show_progress="hidden",
        trigger_mode="always_last",
    )
    saved_outputs = [form["model_name"], form["augmentation_preset"]]
    # Saved in another tab (or by a script) since the project was chosen: listed on opening.
    gr.on(
        [c.focus for c in saved_outputs],
        lambda p: choice_updates(ctx, p),
        [project],
        saved_outputs,
        api_visibility="private",
        show_progress="hidden",
    )
    return {
        "form": form,
        "table": table,
        "on_project": [
            (lambda pid: lists(pid, pick_root=True), list_outputs),
            (lambda pid: choice_updates(ctx, pid), saved_outputs),
        ],
    }


def _saved_at(c: StoredConfig) -> datetime:
    # SQLite hands back naive datetimes; the platform stores UTC.
    return c.created_at if c.created_at.tzinfo else c.created_at.replace(tzinfo=UTC)


def _saved_ago(c: StoredConfig) -> str:
    return ago((datetime.now(UTC) - _saved_at(c)).total_seconds())
