"""Property: whatever the config file holds, ``load_config`` returns or raises ``ConfigError``
(each issue naming the file and a line), within seconds and without growing memory.

Three kinds of input: random bytes; the example configs with random edits (tokens that
have broken the loader before: aliases, merge keys, tags, deep brackets, huge numbers,
references to devices and FIFOs, bytes that are not UTF-8); and random YAML documents
built from the config's own section and key names. ``UPKEEP_FUZZ_EXAMPLES`` raises the
number of examples of each for a longer local run (the suite keeps it small).
"""

from __future__ import annotations

import os
import re
import resource
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upkeep.config.errors import ConfigError, ConfigIssue
from upkeep.config.loader import load_config

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [
    *sorted((ROOT / "examples").glob("*/upkeep.yaml")),
    ROOT / "tests" / "fixtures" / "spec-example.yaml",
]
TEXTS = [path.read_text(encoding="utf-8") for path in SOURCES]
ENVIRON = {
    name: "dummy-Secret-value"
    for text in TEXTS
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)
} | {"DATABASE_URL": "postgresql://app:Pa55word@127.0.0.1:5432/test", "NOT_UTF8": "caf\udce9"}
EXAMPLES = int(os.environ.get("UPKEEP_FUZZ_EXAMPLES", "60"))
LOAD_TIME_S = 5.0
RSS_GROWTH_MB = 300

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # timed by the test itself, per load
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TOKENS = [
    "&a ", "*a", "<<: *a\n", "<<: ", "[", "]", "{", "}", ": ", "\n  ", "\n- ", "- ", "? ",
    "!!python/object:os.system ", "!!binary ", "!!int ", "!!float ", "!!set ", "!custom ", "---\n",
    "99999999999999y", "100y", "1e999", ".inf", ".nan", "9" * 40, "-" + "9" * 30, "0x" + "f" * 20,
    "${file:/dev/zero}", "${file:/dev/stdin}", "${file:/proc/self/mem}", "${file:/}", "${NOT_UTF8}",
    "${UNSET}", "$${", "${", "\xe9", "\x00", "\x07", "\ud83d\ude00", "'", '"', "\\", "`", "#",
    "(" * 40, "not " * 40, "2024-13-45", "9999-12-31T23:59:59", "* * * * *", "@yearly", "*/0",
    "[" * 70, "{a: " * 70, "%TAG ! tag:x,2000:\n", "%YAML 1.1\n", "|\n  ", ">-\n  ",
    "a{4294967295}", "(" * 600, "x" * 70_000, ",1" * 600, "pattern: ", "schedule: ",
]  # fmt: skip

KEYS = [
    "timezone", "store", "retention", "engine", "targets", "checks", "runbooks", "channels",
    "routes", "windows", "alerting", "backups", "kind", "target", "probe", "params", "every",
    "timeout", "warn", "crit", "severity", "labels", "for", "after", "clear_after", "steps",
    "task", "with", "command", "schedule", "duration", "start", "notify", "escalate", "repeat",
    "concurrency", "listen", "results", "path", "pattern", "url", "dsn", "host", "port",
    "min_size", "keep_count", "keep", "mute", "match", "depends_on", "sources", "repository",
]  # fmt: skip
SCALARS = st.one_of(
    st.sampled_from(TOKENS),
    st.sampled_from(KEYS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=30),
    st.datetimes(),
)
DOCUMENTS = st.dictionaries(
    st.sampled_from(KEYS),
    st.recursive(
        SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(
                st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=4
            ),
        ),
        max_leaves=30,
    ),
    max_size=6,
)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz")
    os.mkfifo(directory / "fifo")
    return directory


@pytest.fixture(scope="module", autouse=True)
def memory_stays_bounded() -> Any:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < RSS_GROWTH_MB, f"peak memory grew by {grown_mb:.0f} MB while fuzzing"


def loads_or_reports(directory: Path, data: bytes) -> None:
    """Write ``data`` as the config and load it: it must load or raise ConfigError whose
    every issue names this file and a line, and it must do so within ``LOAD_TIME_S``."""
    path = directory / "upkeep.yaml"
    path.write_bytes(data)
    started = time.monotonic()
    issues: list[ConfigIssue | None] = []
    try:
        load_config(path, environ=ENVIRON)
    except ConfigError as error:
        issues = [*error.issues] or [None]
    assert time.monotonic() - started < LOAD_TIME_S
    for issue in issues:
        assert issue is not None and issue.file == str(path)
        assert issue.line >= 0 and issue.column >= 0


@FUZZ
@given(data=st.binary(max_size=4000))
def test_random_bytes(config_dir: Path, data: bytes) -> None:
    loads_or_reports(config_dir, data)


@FUZZ
@given(
    text=st.sampled_from(TEXTS),
    edits=st.lists(
        st.tuples(st.floats(min_value=0, max_value=1), st.sampled_from(TOKENS), st.integers(0, 3)),
        min_size=1,
        max_size=6,
    ),
)
def test_edited_examples(config_dir: Path, text: str, edits: list[tuple[float, str, int]]) -> None:
    for where, token, deleted in edits:
        at = int(where * len(text))
        text = text[:at] + token.replace("/fifo", str(config_dir / "fifo")) + text[at + deleted :]
    loads_or_reports(config_dir, text.encode("utf-8", errors="surrogatepass"))


@FUZZ
@given(document=DOCUMENTS)
def test_random_documents(config_dir: Path, document: dict[str, Any]) -> None:
    loads_or_reports(
        config_dir,
        yaml.safe_dump(document, allow_unicode=True).encode("utf-8", errors="surrogatepass"),
    )
