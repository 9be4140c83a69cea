"""``docs/config.md``: generated from the config models, fresh, complete, and its examples load.

Every key of every model the reference shows has a description (rendering refuses a key
without one), every top-level section has a heading and exactly one YAML example, and each
example is a whole config that the real loader accepts, channel URLs included.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from upkeep.config.loader import load_config
from upkeep.config.models import UpkeepConfig
from upkeep.core.models import StrictModel
from upkeep.docs import (
    CONFIG_EXAMPLE_ENVIRONMENT,
    CONFIG_EXAMPLES,
    CONFIG_SECTIONS,
    UndocumentedFieldError,
    config_table,
    main,
    nested_models,
    render_config,
)
from upkeep.tasks.registry import TASK_KINDS

ROOT = Path(__file__).parents[3]
COMMITTED = ROOT / "docs" / "config.md"
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def _sections(text: str) -> dict[str, str]:
    """Given the reference, return each ``## `section``` heading's text up to the next."""
    parts = re.split(r"^## `([a-z_]+)`$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_committed_config_reference_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render_config(), (
        "run `make docs` and commit docs/config.md"
    )


def test_every_top_level_key_has_a_section_with_one_example() -> None:
    sections = _sections(COMMITTED.read_text(encoding="utf-8"))
    assert list(sections) == list(CONFIG_SECTIONS)
    assert set(CONFIG_SECTIONS) == set(UpkeepConfig.model_fields)
    for name, text in sections.items():
        assert len(YAML_BLOCK.findall(text)) == 1, name
        assert f"\n{name}:" in "\n" + YAML_BLOCK.findall(text)[0], f"{name}: example lacks it"


def _all_models() -> list[tuple[str, type[BaseModel]]]:
    found: list[tuple[str, type[BaseModel]]] = []
    pending = [
        found
        for section in CONFIG_SECTIONS
        if section != "targets"
        for found in nested_models(UpkeepConfig.model_fields[section].annotation, section)
    ]
    for task in TASK_KINDS.values():
        pending.append((f"task {task.name}", task.Params))
    seen: set[type[object]] = set()
    while pending:
        path, model = pending.pop(0)
        if model in seen:
            continue
        seen.add(model)
        found.append((path, model))
        for name, field in model.model_fields.items():
            pending += nested_models(field.annotation, f"{path}.{field.alias or name}")
    return found


def test_every_key_of_every_model_is_in_the_reference_with_its_description() -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    models = _all_models()
    assert len(models) > 20
    for path, model in models:
        for name, field in model.model_fields.items():
            assert field.description, f"{path}.{name}"
            key = field.alias or name
            row = re.compile(
                rf"^\| `{re.escape(key)}` \|.*\| {re.escape(field.description.replace('|', chr(92) + '|'))} \|$",
                re.MULTILINE,
            )
            assert row.search(text), f"{path}: no row for {key}"


def test_logs_retain_classes_shape_and_secret_keys_are_documented() -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    assert "#### `logs.retain with.classes[]`" in text
    for key in ("match", "keep", "keep_count"):
        assert re.search(rf"^\| `{key}` \|", text, re.MULTILINE)
    for secret in ("api_tokens", "api_token", "key", "copy_to", "password", "env"):
        assert re.search(rf"^\| `{secret}` \| [^|]*(\\\|[^|]*)*\(secret\)", text, re.MULTILINE), (
            secret
        )
    # The store's URL is secret (its password), in either form of ``store:``.
    assert "| [`store`](#store) | StoreConfig |" in text
    assert re.search(r"^\| `url` \| str \(secret\) \| `\"sqlite:///", text, re.MULTILINE)


@pytest.mark.parametrize("section", CONFIG_SECTIONS)
def test_each_example_in_the_reference_loads(section: str, tmp_path: Path) -> None:
    example = YAML_BLOCK.findall(_sections(COMMITTED.read_text(encoding="utf-8"))[section])[0]
    assert example == CONFIG_EXAMPLES[section]
    path = tmp_path / "upkeep.yaml"
    path.write_text(example, encoding="utf-8")
    loaded = load_config(path, environ=CONFIG_EXAMPLE_ENVIRONMENT, check_channels=True)
    assert getattr(loaded.config, section) != UpkeepConfig.model_fields[section].get_default(
        call_default_factory=True
    ), f"the {section} example sets nothing in {section}"


def test_a_key_without_a_description_is_refused() -> None:
    class Undocumented(StrictModel):
        """A model missing one description."""

        said: int = Field(default=1, description="documented")
        unsaid: int = 2

    with pytest.raises(UndocumentedFieldError, match=r"Undocumented\.unsaid has no description"):
        config_table(Undocumented)


def test_the_command_line_prints_each_reference_and_refuses_an_unknown_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config"]) == 0
    assert capsys.readouterr().out == render_config()
    assert main(["nosuch"]) == 2
    assert "usage: python -m upkeep.docs [probes|config" in capsys.readouterr().err
