"""`upkeep init` generates the API token: shown once, only its digest kept, 0600, and
never written through a link someone planted (as root, beside directories others write).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

import yaml

from tests.e2e.conftest import Upkeep

TOKEN_PATTERN = re.compile(r"upk_[A-Za-z0-9_-]{43}")


def test_init_shows_a_token_once_and_keeps_only_its_digest(upkeep: Upkeep, tmp_path: Path) -> None:
    created = upkeep("init")
    assert created.returncode == 0, created.stderr
    tokens = set(TOKEN_PATTERN.findall(created.stdout))
    assert len(tokens) == 1, created.stdout
    token = tokens.pop()
    assert f"curl -H 'Authorization: Bearer {token}' http://127.0.0.1:9464/api/runs" in (
        created.stdout
    )
    directory = tmp_path / ".upkeep"
    token_file = directory / "api-token.sha256"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert token_file.read_text() == f"sha256:{digest}\n"
    config = (tmp_path / "upkeep.yaml").read_text()
    assert token not in config and digest not in config
    engine = yaml.safe_load(config)["engine"]
    assert engine["api_tokens"] == {"admin": "${file:.upkeep/api-token.sha256}"}
    assert stat.S_IMODE((tmp_path / "upkeep.yaml").stat().st_mode) & 0o077 == 0
    assert upkeep("validate").returncode == 0
    # Again with --force: the config is rewritten, the token in force stays (not shown again).
    again = upkeep("init", "--force")
    assert again.returncode == 0, again.stderr
    assert not TOKEN_PATTERN.search(again.stdout) and "kept the API token" in again.stdout
    assert token_file.read_text() == f"sha256:{digest}\n"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".upkeep.yaml")] == []


def test_init_refuses_a_link_planted_at_the_token_file(upkeep: Upkeep, tmp_path: Path) -> None:
    directory = tmp_path / ".upkeep"
    directory.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    # A dangling link: following it would create the attacker's chosen file.
    (directory / "api-token.sha256").symlink_to(victim)
    refused = upkeep("init")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "api-token.sha256 exists and is not a private file of yours" in refused.stderr
    assert not victim.exists() and not (tmp_path / "upkeep.yaml").exists()
    assert not TOKEN_PATTERN.search(refused.stdout + refused.stderr)
    # A link to an existing file: it is neither written nor trusted as the token in force.
    victim.write_text("precious\n")
    refused = upkeep("init")
    assert refused.returncode == 2
    assert victim.read_text() == "precious\n" and not (tmp_path / "upkeep.yaml").exists()


def test_init_refuses_a_state_directory_that_is_a_link_or_shared(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".upkeep").symlink_to(elsewhere)
    refused = upkeep("init")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "a symbolic link" in refused.stderr and "is refused" in refused.stderr
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "upkeep.yaml").exists()
    (tmp_path / ".upkeep").unlink()
    (tmp_path / ".upkeep").mkdir()
    os.chmod(tmp_path / ".upkeep", 0o777)  # noqa: S103 - the shared directory under test
    refused = upkeep("init")
    assert refused.returncode == 2
    assert "not a private directory" in refused.stderr
    assert list((tmp_path / ".upkeep").iterdir()) == []
    # A token file others may read is not trusted either.
    os.chmod(tmp_path / ".upkeep", 0o700)
    loose = tmp_path / ".upkeep" / "api-token.sha256"
    loose.write_text("sha256:" + "0" * 64 + "\n")
    loose.chmod(0o644)
    refused = upkeep("init")
    assert refused.returncode == 2 and "not a private file of yours" in refused.stderr


def _uncommented_alert_example(config: str) -> str:
    """Return the starter config with its commented channel and route example uncommented,
    as a user would: drop the leading "# " of the block from "# channels:" to its end."""
    lines = config.splitlines()
    start = lines.index("# channels:")
    end = start
    while end < len(lines) and lines[end].startswith("#"):
        end += 1
    example = [line.removeprefix("#").removeprefix(" ") for line in lines[start:end]]
    return "\n".join([*lines[:start], *example, *lines[end:]]) + "\n"


def test_the_starter_config_says_alerts_go_nowhere_and_its_example_validates(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    assert upkeep("init").returncode == 0
    config = (tmp_path / "upkeep.yaml").read_text()
    assert "Alerts go NOWHERE yet" in config
    document = yaml.safe_load(config)
    assert "channels" not in document and "routes" not in document
    # One busy sample must not open an incident.
    cpu = document["checks"]["cpu"]
    assert cpu["after"] > 1 and cpu["for"] == "5m"
    # Uncommented, the example is a working channel and route (checked with Apprise).
    (tmp_path / "upkeep.yaml").write_text(_uncommented_alert_example(config))
    env = {"SMTP_USER": "alerts", "SMTP_PASSWORD": "a-long-smtp-password"}
    validated = upkeep("validate", env=env)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    routes = yaml.safe_load((tmp_path / "upkeep.yaml").read_text())["routes"]
    assert routes[0]["notify"] == ["ops"]


def test_without_a_config_every_command_says_how_to_get_one(upkeep: Upkeep, tmp_path: Path) -> None:
    for args in (("validate",), ("history",), ("runs", "list"), ("schedule",)):
        result = upkeep(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Run `upkeep init`" in result.stderr and "-c FILE" in result.stderr, args
        assert "Traceback" not in result.stderr
    # `check` keeps its Nagios contract: unknown (3), with the same hint.
    checked = upkeep("check")
    assert checked.returncode == 3 and "Run `upkeep init`" in checked.stderr
    given = upkeep("validate", "-c", "elsewhere.yaml")
    assert given.returncode == 2
    assert "no config file 'elsewhere.yaml' (given with -c)" in given.stderr
    assert not (tmp_path / "upkeep.yaml").exists()
