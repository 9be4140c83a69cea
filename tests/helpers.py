"""Test helpers that build compiled checks and configs without a YAML file."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from upkeep.config.conditions import parse_condition
from upkeep.config.loader import CompiledCheck, LoadedConfig, load_config
from upkeep.config.models import StoreConfig
from upkeep.probes.base import Probe, TargetBase


def compiled(
    name: str,
    probe: type[Probe[Any, Any]],
    target: TargetBase,
    *,
    warn: str | None = None,
    crit: str | None = None,
    timeout_s: float = 5.0,
    params: Any = None,
    labels: dict[str, str] | None = None,
) -> CompiledCheck:
    """Given a probe class and a target, return a compiled check as the loader would build it."""
    return CompiledCheck(
        name=name,
        target_name=f"{name}-target",
        target=target,
        probe=probe,
        params=params if params is not None else probe.Params(),
        warn=parse_condition(warn) if warn else None,
        crit=parse_condition(crit) if crit else None,
        every=timedelta(minutes=1),
        timeout=timedelta(seconds=timeout_s),
        severity="P3",
        labels=labels or {},
        enabled=True,
    )


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> LoadedConfig:
    """Given config text, write it to tmp_path/upkeep.yaml and load it."""
    path = tmp_path / "upkeep.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=environ or {})


def store_yaml(store: StoreConfig) -> str:
    """Given a store's config, return it as a YAML flow mapping for ``store:``."""
    return json.dumps({"url": store.url, "schema": store.schema_name})
