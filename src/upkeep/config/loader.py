"""Load ``upkeep.yaml``: parse with positions, expand secrets, validate everything, compile.

Nothing is applied from a config that has any error: ``load_config`` either returns a
fully validated ``LoadedConfig`` or raises ``ConfigError`` listing every problem found,
each with file, line, column, key path and what was expected.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel, ValidationError

from upkeep.config.conditions import Condition, ConditionSyntaxError, parse_condition
from upkeep.config.errors import ConfigError, ConfigIssue, KeyPath
from upkeep.config.files import FileReadError, read_text_file
from upkeep.config.models import SYSTEM_CHECKS
from upkeep.config.secrets import expand_tree
from upkeep.config.yamlpos import Positions, YamlSyntaxError, load_yaml
from upkeep.core.redaction import Redactor, SecretMarker

if TYPE_CHECKING:
    from upkeep.config.models import UpkeepConfig
    from upkeep.core.models import StrictModel
    from upkeep.probes.base import Probe, TargetBase
    from upkeep.tasks.base import Task

CONFIG_ENV = "UPKEEP_CONFIG"
DEFAULT_CONFIG = "upkeep.yaml"
MAX_CONFIG_BYTES = 8 * 1024 * 1024
"""The largest config file read: about 50,000 checks; loading time and memory grow with it."""


@dataclass(frozen=True)
class CompiledCheck:
    """A check ready to run: its target and probe resolved, its conditions parsed."""

    name: str
    target_name: str
    target: TargetBase
    probe: type[Probe[Any, Any]]
    params: StrictModel
    warn: Condition | None
    crit: Condition | None
    every: timedelta
    timeout: timedelta
    severity: str
    labels: Mapping[str, str]
    enabled: bool

    @property
    def probe_name(self) -> str:
        """Return ``kind.probe``, e.g. ``postgres.connections``."""
        return f"{self.probe.target_kind}.{self.probe.name}"


@dataclass(frozen=True)
class CompiledTask:
    """A runbook task step ready to run: its task class, target and parsed params."""

    task: type[Task[Any, Any]]
    target_name: str | None
    target: TargetBase | None
    params: StrictModel


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config, its origin, the redactor knowing its secrets, compiled checks and
    compiled task steps (keyed by runbook name and step index)."""

    path: Path
    config: UpkeepConfig
    redactor: Redactor
    checks: Mapping[str, CompiledCheck]
    tasks: Mapping[tuple[str, int], CompiledTask] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """Return the directory relative paths in the config are resolved against."""
        return self.path.parent


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Given ``-c FILE`` (or None), return the path: that, else ``$UPKEEP_CONFIG``, else ``./upkeep.yaml``."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return Path(DEFAULT_CONFIG)


class _Collector:
    def __init__(self, file: str, positions: Positions) -> None:
        self.file = file
        self.positions = positions
        self.issues: list[ConfigIssue] = []

    def add(
        self, path: KeyPath, message: str, column_offset: int = 0, *, at_key: bool = False
    ) -> None:
        line, column = self.positions.find_key(path) if at_key else self.positions.find(path)
        self.issues.append(ConfigIssue(self.file, line, column + column_offset, path, message))


def _target_kind_names() -> tuple[str, ...]:
    from upkeep.probes.registry import TARGET_KINDS

    return tuple(TARGET_KINDS)


def _data_path(raw: Any, loc: tuple[int | str, ...]) -> KeyPath:
    """Map a pydantic error location onto the keys really present in the data.

    Pydantic puts union tags (``http``), aliases' field names and wrapper names into
    ``loc``; only the keys that exist in the YAML can be found in the file. The target
    union's tag stands only at ``targets.<name>.<tag>`` (index 2); anywhere else a part
    named like a kind (``host``, ``command``) is a real key and is named.
    """
    path: list[str | int] = []
    node = raw
    for index, part in enumerate(loc):
        if index == 2 and loc[0] == "targets" and part in _target_kind_names():
            continue  # the union tag, even when the target has a key of that name
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part.rstrip("_") in node:
            path.append(part.rstrip("_"))
            node = node[part.rstrip("_")]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in node:
            # A missing key (union tags were skipped above): name it.
            path.append(part)
            node = None
        else:
            continue
    return tuple(path)


def _describe(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    message = str(error.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return "unknown key (not part of this section; check the spelling)"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        return (
            f"unknown target kind {error.get('ctx', {}).get('tag')!r}; expected one of {expected}"
        )
    if kind == "union_tag_not_found":
        return f"a target needs a kind: one of {', '.join(_target_kind_names())}"
    return message.removeprefix("Value error, ")


def _add_validation_errors(
    collector: _Collector,
    error: ValidationError,
    raw: Any,
    prefix: KeyPath = (),
    already_reported: frozenset[KeyPath] = frozenset(),
) -> None:
    for item in error.errors():
        path = (*prefix, *_data_path(raw, tuple(item["loc"])))
        if path in already_reported:
            continue  # an unset ${VAR} left "${VAR}" there; its own error says so
        collector.add(path, _describe(item), at_key=item.get("type") == "extra_forbidden")


def _markers(annotation: Any) -> list[SecretMarker]:
    """Return the SecretMarkers in an annotation, including inside ``dict[str, Annotated[...]]``."""
    found = [
        meta for meta in getattr(annotation, "__metadata__", ()) if isinstance(meta, SecretMarker)
    ]
    for argument in get_args(annotation):
        found.extend(_markers(argument))
    return found


@functools.cache
def _field_markers(model_type: type[BaseModel]) -> tuple[tuple[str, tuple[SecretMarker, ...]], ...]:
    """Return each field of a model class with its secret markers (cached: a config with
    thousands of targets walks the same few classes thousands of times)."""
    fields = []
    for name, model_field in model_type.model_fields.items():
        markers = [meta for meta in model_field.metadata if isinstance(meta, SecretMarker)]
        markers += _markers(model_field.annotation)
        fields.append((name, tuple(markers)))
    return tuple(fields)


def _collect_secrets(model: BaseModel, redactor: Redactor) -> None:
    """Walk a model and hand every secret-marked field value to the redactor."""
    for name, markers in _field_markers(type(model)):
        value = getattr(model, name)
        if markers and value is not None:
            for text in _strings(value):
                if "${" in text:
                    # Still holds an unresolved reference (its error is listed): the name is
                    # no secret, and masking it would hide which variable is missing. Values
                    # that came from references are in the redactor already.
                    continue
                if markers[0].part == "password":
                    redactor.add_url(text)
                else:
                    redactor.add(text)
            continue
        children = (
            value.values()
            if isinstance(value, dict)
            else value
            if isinstance(value, list)
            else [value]
        )
        for child in children:
            if isinstance(child, BaseModel):
                _collect_secrets(child, redactor)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item)]
    return []


_REMOVE = object()
"""Marks a key or item to drop in the tree ``remove_paths`` builds."""


def remove_paths(data: Any, paths: Iterable[KeyPath]) -> Any:
    """Return a copy of ``data`` without the keys or list items at ``paths``, in one pass.

    All paths are taken in the original's terms (removing item 1 of a list does not make
    its item 2 the new 1), and each container is copied at most once, so thousands of
    failing entries cost one walk of the data, not one walk each.
    """
    tree: dict[Any, Any] = {}
    for path in paths:
        if not path:
            continue
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if child is _REMOVE:
                break  # a parent goes already
            node = child
        else:
            node[path[-1]] = _REMOVE
    return _prune(data, tree)


def _prune(data: Any, tree: dict[Any, Any]) -> Any:
    # The recursion follows the paths, which the YAML loader's depth bound limits.
    if isinstance(data, dict):
        kept: dict[str, Any] = {}
        for key, value in data.items():
            below = tree.get(key)
            if below is _REMOVE:
                continue
            kept[key] = _prune(value, below) if below else value
        return kept
    if isinstance(data, list):
        items = []
        for index, item in enumerate(data):
            below = tree.get(index)
            if below is _REMOVE:
                continue
            items.append(_prune(item, below) if below else item)
        return items
    return data


def _without_failing_entries(
    data: dict[str, Any], error: ValidationError
) -> tuple[dict[str, Any], set[tuple[str, str | int]]]:
    """Given the config data and its validation error, return data that validates without
    the failing parts, and the entries (``("checks", "a")``) that had to be set aside whole.

    First only the failing keys inside entries are removed (a bad ``every`` falls back to
    its default, an unknown key goes), so the rest of each entry is still checked; entries
    that still fail (a missing required key) are then set aside whole.
    """
    failing = (_data_path(data, tuple(item["loc"])) for item in error.errors())
    pruned: Any = remove_paths(data, (path for path in failing if len(path) >= 3))
    dropped: set[tuple[str, str | int]] = set()
    from upkeep.config.models import UpkeepConfig

    try:
        UpkeepConfig.model_validate(pruned)
    except ValidationError as second:
        for item in second.errors():
            path = _data_path(pruned, tuple(item["loc"]))
            if len(path) >= 2 and isinstance(path[0], str):
                dropped.add((path[0], path[1]))
        pruned = remove_paths(pruned, dropped)
    return pruned, dropped


def _compile_checks(
    config: UpkeepConfig,
    raw: dict[str, Any],
    collector: _Collector,
    dropped: set[tuple[str, str | int]],
) -> dict[str, CompiledCheck]:
    from upkeep.probes.registry import TARGET_KINDS

    compiled: dict[str, CompiledCheck] = {}
    known_targets = _some(
        [*config.targets, *(str(key) for kind, key in dropped if kind == "targets")]
    )
    for name, check in config.checks.items():
        path: KeyPath = ("checks", name)
        target = config.targets.get(check.target)
        if target is None and ("targets", check.target) in dropped:
            continue  # the target's own error is already listed
        if target is None:
            known = known_targets or "none defined"
            collector.add((*path, "target"), f"no target named {check.target!r} (targets: {known})")
            continue
        kind = TARGET_KINDS[target.kind]
        probe_name = check.probe or kind.default_probe
        probe_class = kind.probe(probe_name)
        if probe_class is None:
            choices = ", ".join(probe.name for probe in kind.probes)
            collector.add(
                (*path, "probe"),
                f"{target.kind} targets have no probe {probe_name!r}; expected one of {choices}",
            )
            continue
        raw_params = raw.get("checks", {}).get(name, {}).get("params", {})
        try:
            params = probe_class.Params.model_validate(check.params)
        except ValidationError as error:
            _add_validation_errors(collector, error, raw_params, (*path, "params"))
            continue
        probe = probe_class()
        for problem in probe.validate(target, params):
            collector.add((*path, "params"), problem)
        conditions: dict[str, Condition | None] = {"warn": None, "crit": None}
        for key in ("warn", "crit"):
            source = getattr(check, key)
            if source is None:
                continue
            try:
                condition = parse_condition(source)
            except ConditionSyntaxError as error:
                # The error's column counts within the condition; the recorded position of
                # a quoted scalar is its opening quote, one column before the text.
                offset = error.column - 1 + collector.positions.value_offset((*path, key))
                collector.add((*path, key), str(error), column_offset=offset)
                continue
            if not probe_class.dynamic_metrics:
                unknown = sorted(condition.metric_names - probe_class.metric_names())
                if unknown:
                    returns = ", ".join(spec.name for spec in probe_class.metrics)
                    collector.add(
                        (*path, key),
                        f"unknown metric {', '.join(map(repr, unknown))} for probe "
                        f"{target.kind}.{probe_class.name}; it returns: {returns}",
                    )
                    continue
            conditions[key] = condition
        compiled[name] = CompiledCheck(
            name=name,
            target_name=check.target,
            target=target,
            probe=probe_class,
            params=params,
            warn=conditions["warn"],
            crit=conditions["crit"],
            every=check.every,
            timeout=check.timeout,
            severity=check.severity,
            labels={**target.labels, **check.labels},
            enabled=check.enabled,
        )
    return compiled


def _compile_tasks(
    config: UpkeepConfig,
    raw: dict[str, Any],
    collector: _Collector,
    dropped: set[tuple[str, str | int]],
    redactor: Redactor,
) -> dict[tuple[str, int], CompiledTask]:
    from upkeep.tasks.registry import TASK_KINDS

    compiled: dict[tuple[str, int], CompiledTask] = {}
    for name, runbook in config.runbooks.items():
        for index, step in enumerate(runbook.steps):
            if step.task is None:
                continue
            path: KeyPath = ("runbooks", name, "steps", index)
            task_class = TASK_KINDS.get(step.task)
            if task_class is None:
                choices = ", ".join(sorted(TASK_KINDS))
                collector.add(
                    (*path, "task"), f"unknown task {step.task!r}; expected one of {choices}"
                )
                continue
            target = config.targets.get(step.target) if step.target is not None else None
            if step.target is not None and target is None:
                continue  # a missing target is reported by the reference check
            if target is not None and target.kind not in task_class.target_kinds:
                accepted = ", ".join(task_class.target_kinds) or "no target"
                collector.add(
                    (*path, "target"),
                    f"task {step.task} takes {accepted}, not a {target.kind} target",
                )
                continue
            if target is None and task_class.target_required:
                accepted = ", ".join(task_class.target_kinds)
                collector.add(path, f"task {step.task} needs a target ({accepted})")
                continue
            raw_params: Any = {}
            raw_steps = raw.get("runbooks", {}).get(name, {}).get("steps", [])
            if isinstance(raw_steps, list) and index < len(raw_steps):
                raw_step = raw_steps[index]
                raw_params = raw_step.get("with", {}) if isinstance(raw_step, dict) else {}
            try:
                params = task_class.Params.model_validate(step.with_)
            except ValidationError as error:
                _add_validation_errors(collector, error, raw_params, (*path, "with"))
                continue
            _collect_secrets(params, redactor)
            for problem in task_class().validate(target, params):
                collector.add((*path, "with"), problem)
            compiled[(name, index)] = CompiledTask(task_class, step.target, target, params)
    return compiled


_NAMES_SHOWN = 20


def _some(names: Iterable[str]) -> str:
    """Given names, return them sorted and comma-separated, the first ``_NAMES_SHOWN`` only:
    an error per check must not each list all of ten thousand targets."""
    ordered = sorted(set(names))
    if len(ordered) <= _NAMES_SHOWN:
        return ", ".join(ordered)
    return f"{', '.join(ordered[:_NAMES_SHOWN])}, ... ({len(ordered)} in all)"


def _resolve_path(text: str, base_dir: Path) -> str:
    """Given a path as written and the config's directory, return it absolute."""
    path = Path(text)
    if path.is_absolute():
        return text
    with contextlib.suppress(RuntimeError):  # no home to expand "~" to: keep it as written
        path = path.expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def _resolve_target_paths(
    config: UpkeepConfig, base_dir: Path, collector: _Collector
) -> UpkeepConfig:
    """Given a valid config, return it with each target's ``path_fields`` resolved against
    ``base_dir`` (the config file's directory), and list every missing ``required_files``.

    Relative paths must not depend on where upkeep was started from, just as the store
    path and ``${file:}`` do not. Targets are frozen, so a changed one is a copy, and so
    is the config that holds it.
    """
    changed: dict[str, TargetBase] = {}
    for name, target in config.targets.items():
        update: dict[str, Any] = {}
        for field_name in target.path_fields:
            value = getattr(target, field_name)
            if isinstance(value, str):
                resolved = _resolve_path(value, base_dir)
                if field_name in target.required_files and not Path(resolved).is_file():
                    problem = "not a file" if Path(resolved).exists() else "file not found"
                    collector.add(("targets", name, field_name), f"{problem}: {resolved}")
                if resolved != value:
                    update[field_name] = resolved
            elif isinstance(value, list) and value and "/" in value[0]:
                # An argv: only its program is a path, and a bare name is found on PATH.
                program = _resolve_path(value[0], base_dir)
                if program != value[0]:
                    update[field_name] = [program, *value[1:]]
        if update:
            changed[name] = target.model_copy(update=update)
    if not changed:
        return config
    return config.model_copy(update={"targets": {**config.targets, **changed}})


def _review_sections(config: UpkeepConfig, base_dir: Path, collector: _Collector) -> UpkeepConfig:
    """Let every section that checks itself (``SelfCheckingSection``: a slice's section,
    such as ``backups:``) check itself against the rest of the config; list its problems
    and return the config with what each section resolved and completed."""
    from upkeep.tasks.base import SectionContext, SelfCheckingSection

    for name in type(config).model_fields:
        section = getattr(config, name)
        if not isinstance(section, SelfCheckingSection):
            continue
        context = SectionContext(
            targets=config.targets,
            resolve_path=lambda text: _resolve_path(text, base_dir),
            some_names=_some,
        )
        review = section.review(context)
        for path, problem in review.problems:
            collector.add(path, problem)
        config = config.model_copy(update={name: review.section, "targets": dict(review.targets)})
    return config


def _check_references(
    config: UpkeepConfig,
    collector: _Collector,
    dropped: set[tuple[str, str | int]],
    *,
    check_channels: bool,
) -> None:
    def known(section: str, names: Mapping[str, Any]) -> set[str]:
        return set(names) | {str(key) for kind, key in dropped if kind == section}

    targets = known("targets", config.targets)
    checks = known("checks", config.checks)
    windows = known("windows", config.windows)
    channels = known("channels", config.channels)
    if check_channels and config.channels:
        # Apprise costs ~0.4 s to import; only the commands that send or judge a config
        # whole (validate, serve, notify) pay for checking the URLs with it.
        from upkeep.notify.channels import validate_channel_url

        for name, url in config.channels.items():
            problem = validate_channel_url(url)
            if problem is not None:
                collector.add(("channels", name), problem)
    for name, runbook in config.runbooks.items():
        if runbook.window is not None and runbook.window not in windows:
            collector.add(("runbooks", name, "window"), f"no window named {runbook.window!r}")
        for index, step in enumerate(runbook.steps):
            step_path: KeyPath = ("runbooks", name, "steps", index)
            if step.target is not None and step.target not in targets:
                collector.add((*step_path, "target"), f"no target named {step.target!r}")
            if step.checks is not None:
                for check_name in step.checks.names:
                    if check_name not in checks:
                        collector.add(
                            (*step_path, "checks", "names"), f"no check named {check_name!r}"
                        )
    known_channels = _some(channels)
    route_names: set[str] = set()
    for index, route in enumerate(config.routes):
        if route.name is not None:
            if route.name in route_names:
                collector.add(
                    ("routes", index, "name"), f"another route is named {route.name!r} already"
                )
            route_names.add(route.name)
        escalations = route.escalations
        fallback = [route.fallback] if route.fallback else []
        for channel in [
            *route.notify,
            *(c for step in escalations for c in step.notify),
            *fallback,
        ]:
            if channel not in channels:
                names = known_channels or "none defined"
                collector.add(
                    ("routes", index), f"no channel named {channel!r} (channels: {names})"
                )
        for check_name in route.match.checks or []:
            if check_name not in checks and check_name not in SYSTEM_CHECKS:
                collector.add(
                    ("routes", index, "match", "checks"), f"no check named {check_name!r}"
                )
    for name, window in config.windows.items():
        for check_name in (window.mute.checks or []) if window.mute else []:
            if check_name not in checks and check_name not in SYSTEM_CHECKS:
                collector.add(("windows", name, "mute", "checks"), f"no check named {check_name!r}")
    _check_dependencies(config, collector, checks)


def _check_dependencies(config: UpkeepConfig, collector: _Collector, checks: set[str]) -> None:
    """Report ``depends_on`` names that are unknown, the check itself, or part of a cycle."""
    for name, check in config.checks.items():
        for parent in check.depends_on:
            if parent == name:
                collector.add(("checks", name, "depends_on"), "a check cannot depend on itself")
            elif parent not in checks:
                collector.add(("checks", name, "depends_on"), f"no check named {parent!r}")
    _report_cycles(config, collector)


_CYCLE_SHOWN = 6  # names shown at each end of a long cycle


def _report_cycles(config: UpkeepConfig, collector: _Collector) -> None:
    """Report every dependency cycle once, at the check where the walk found it.

    One depth-first walk over all checks (iterative, each check and each edge visited
    once): walking from each check anew took minutes for a chain of a few thousand.
    """
    done: set[str] = set()
    for root in config.checks:
        if root in done:
            continue
        path: list[str] = [root]  # the checks being walked, each depending on the next
        position = {root: 0}
        pending = [iter(_parents(config, root))]
        while pending:
            parent = next(pending[-1], None)
            if parent is None:
                finished = path.pop()
                del position[finished]
                done.add(finished)
                pending.pop()
            elif parent in position:
                # Only the ends of a long cycle are copied: back edges may be many.
                start = position[parent]
                length = len(path) - start
                shown = (
                    [
                        *path[start : start + _CYCLE_SHOWN],
                        f"... ({length} checks) ...",
                        *path[-_CYCLE_SHOWN:],
                    ]
                    if length > 2 * _CYCLE_SHOWN
                    else path[start:]
                )
                collector.add(
                    ("checks", parent, "depends_on"),
                    f"dependency cycle: {' -> '.join([*shown, parent])}",
                )
            elif parent not in done:
                position[parent] = len(path)
                path.append(parent)
                pending.append(iter(_parents(config, parent)))


def _parents(config: UpkeepConfig, name: str) -> list[str]:
    check = config.checks.get(name)
    if check is None:
        return []
    return [parent for parent in check.depends_on if parent != name and parent in config.checks]


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    check_channels: bool = False,
) -> LoadedConfig:
    """Given a config path (or None for the default lookup), return the validated config.

    With ``check_channels``, also parse every channel's Apprise URL (what ``validate`` and
    ``serve`` do; other commands skip Apprise's import cost). Raise ``ConfigError`` listing
    every problem if the file is missing, is not YAML, or fails validation anywhere;
    secrets never appear in the error text.
    """
    from upkeep.config.models import UpkeepConfig

    config_path = find_config_path(path)
    file = str(config_path)
    try:
        text = read_text_file(config_path, MAX_CONFIG_BYTES)
    except FileReadError as error:
        raise ConfigError(
            [ConfigIssue(file, error.line, error.column, (), f"cannot read config: {error}")]
        ) from None
    try:
        raw, positions = load_yaml(text, file)
    except YamlSyntaxError as error:
        raise ConfigError(
            [ConfigIssue(file, error.line, error.column, error.path, str(error))]
        ) from None
    collector = _Collector(file, positions)
    if not isinstance(raw, dict):
        collector.add((), "the config must be a mapping of sections (targets:, checks:, ...)")
        raise ConfigError(collector.issues)

    secrets: list[str] = []
    reference_errors: list[Any] = []
    expanded = expand_tree(
        raw,
        environ=os.environ if environ is None else environ,
        base_dir=config_path.parent.resolve(),
        secrets=secrets,
        errors=reference_errors,
    )
    for reference_error in reference_errors:
        collector.add(reference_error.path, str(reference_error))
    redactor = Redactor()
    redactor.extend(secrets)

    dropped: set[tuple[str, str | int]] = set()
    try:
        config = UpkeepConfig.model_validate(expanded)
    except ValidationError as error:
        unresolved = frozenset(tuple(item.path) for item in reference_errors)
        _add_validation_errors(collector, error, raw, already_reported=unresolved)
        # Keep going without the broken entries, so errors elsewhere (a check naming a
        # missing target, an unknown metric) are listed in the same run, not the next one.
        pruned, dropped = _without_failing_entries(expanded, error)
        try:
            config = UpkeepConfig.model_validate(pruned)
        except ValidationError:
            raise ConfigError(_redacted(collector.issues, redactor)) from None

    config = _resolve_target_paths(config, config_path.parent.resolve(), collector)
    config = _review_sections(config, config_path.parent.resolve(), collector)
    _collect_secrets(config, redactor)
    compiled = _compile_checks(config, raw, collector, dropped)
    tasks = _compile_tasks(config, raw, collector, dropped, redactor)
    _check_references(config, collector, dropped, check_channels=check_channels)
    if collector.issues:
        raise ConfigError(_redacted(collector.issues, redactor))
    return LoadedConfig(
        path=config_path, config=config, redactor=redactor, checks=compiled, tasks=tasks
    )


def _redacted(issues: list[ConfigIssue], redactor: Redactor) -> list[ConfigIssue]:
    return [
        ConfigIssue(
            issue.file, issue.line, issue.column, issue.path, redactor.redact(issue.message)
        )
        for issue in issues
    ]
