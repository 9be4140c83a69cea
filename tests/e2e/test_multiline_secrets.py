"""A PEM private key read through ``${file:}`` never shows, whole, line by line or cut.

The key is a real one (``cryptography``); the commands print it the ways a runbook might:
all of it, one line of it, the first bytes of it (``head -c``), after enough output that
the 64 KiB cap cuts through it, and with CRLF line ends on stderr. No piece of 8
characters of any line of the key may appear in what ``upkeep run`` prints, in
``upkeep runs show`` (text and ``--json``) or anywhere in the store's file.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.conftest import Upkeep

WINDOW = 8


def write_key(path: Path) -> list[str]:
    """Write a fresh RSA key as PKCS#8 PEM; return its base64 body lines."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(pem, encoding="utf-8")
    return [line for line in pem.splitlines() if not line.startswith("-----")]


def leaked_pieces(text: str, body: list[str]) -> list[str]:
    """Return every WINDOW-character piece of a key line that occurs in ``text``."""
    return [
        line[start : start + WINDOW]
        for line in body
        for start in range(max(1, len(line) - WINDOW + 1))
        if line[start : start + WINDOW] in text
    ]


def test_a_pem_key_never_shows_in_run_output_records_or_json(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    body = write_key(tmp_path / "key.pem")
    store = tmp_path / "upkeep.db"
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
store: sqlite:///{store}
runbooks:
  leak:
    on_failure: continue
    steps:
      - name: whole key
        command: [cat, key.pem]
        env: {{DEPLOY_KEY: "${{file:key.pem}}"}}
      - name: one line
        command: [sed, -n, 5p, key.pem]
      - name: first bytes
        command: [head, -c, "300", key.pem]
      - name: cut by the output cap
        command: [sh, -c, "head -c 65300 /dev/zero | tr '\\\\0' a; cat key.pem"]
      - name: crlf on stderr
        command: [sh, -c, "sed 's/$/\\\\r/' key.pem >&2"]
""",
        encoding="utf-8",
    )
    ran = upkeep("run", "leak", "--yes")
    assert ran.returncode == 0, ran.stderr
    shown = upkeep("runs", "show", "1")
    as_json = upkeep("runs", "show", "1", "--json")
    assert shown.returncode == 0 and as_json.returncode == 0, shown.stderr + as_json.stderr
    stored = store.read_bytes().decode("latin-1")
    for name, text in (
        ("upkeep run", ran.stdout + ran.stderr),
        ("runs show", shown.stdout),
        ("runs show --json", as_json.stdout),
        ("the store", stored),
    ):
        leaked = leaked_pieces(text, body)
        assert not leaked, f"{len(leaked)} pieces of the key in {name}, e.g. {leaked[:3]}"

    steps = {step["name"]: step for step in json.loads(as_json.stdout)["steps"]}
    assert all(step["status"] == "ok" for step in steps.values()), steps
    # What was masked is still readable as such: armor kept, every line ***.
    assert steps["whole key"]["output"] == "***"
    assert steps["one line"]["output"] == "***"
    assert steps["first bytes"]["output"].startswith("-----BEGIN PRIVATE KEY-----\n***\n")
    assert steps["cut by the output cap"]["detail"]["output_truncated"] is True
    assert steps["cut by the output cap"]["output"].endswith("***")
    assert "***\r\n***" in steps["crlf on stderr"]["output"]
