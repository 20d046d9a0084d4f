"""First start: a demo project with the digits dataset and a ready config, so a newcomer's
first click trains a model."""

from __future__ import annotations

import logging

from trainyard.demo_data import make_digits
from trainyard.platform import configs, datasets, projects
from trainyard.platform.service import Platform

log = logging.getLogger(__name__)

DEMO_PROJECT = "demo"
DEMO_CONFIG_NAME = "digits-resnet-tiny"


def demo_config(data_root: str) -> dict[str, object]:
    return {
        "data": {"root": data_root, "image_size": 32, "batch_size": 64, "workers": 2},
        "model": {"name": "resnet-tiny"},
        "augmentation": {"preset": "light", "params": {"hflip": 0.0}},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "schedule": {"name": "onecycle"},
        "loop": {"epochs": 5, "progress_interval_s": 1.0},
    }


def seed_demo(platform: Platform) -> bool:
    """Create the demo project when the database has no project at all. True if it did."""
    with platform.session() as s:
        if projects.list_projects(s):
            return False
    root = make_digits(platform.settings.datasets_dir)
    with platform.session() as s:
        project = projects.create_project(
            s, DEMO_PROJECT, "Digits from scikit-learn, ready to train."
        )
        assert project.id is not None
        ds = datasets.register_dataset(
            s, project.id, "digits", str(root), platform.settings.datasets_dir
        )
        configs.save_config(
            s,
            project.id,
            DEMO_CONFIG_NAME,
            demo_config(str(datasets.dataset_root(ds, platform.settings.datasets_dir))),
        )
    log.info("created the demo project with the digits dataset")
    return True
