"""The tar extractor refuses what a forged archive may hold, member by member, and never
writes through a link; hard-link members become copies; members are placed under the
most specific configured path or refused."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from upkeep.io.safefs import Directory
from upkeep.tasks.backup.archive import (
    ArchiveError,
    Member,
    extract,
    normalised_roots,
    place,
)

Entry = tuple[tarfile.TarInfo, bytes]


def _tar(*members: Entry) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for header, content in members:
            archive.addfile(header, io.BytesIO(content) if header.isreg() else None)
    return buffer.getvalue()


def _entry(name: str, kind: bytes = tarfile.REGTYPE, content: bytes = b"", link: str = "") -> Entry:
    header = tarfile.TarInfo(name)
    header.type, header.size, header.linkname, header.mode = kind, len(content), link, 0o4755
    return header, content


def _extract(target: Path, data: bytes) -> list[str]:
    target.mkdir(exist_ok=True)
    with Directory.open(target) as into:
        extracted = extract([data[:100], data[100:]], into)
    return [member.name for member in extracted.members]


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "/etc/escape", "a//b", "./a"])
def test_a_name_that_is_not_a_plain_relative_path_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArchiveError, match="not a plain relative path"):
        _extract(tmp_path / "into", _tar(_entry(name, content=b"x")))
    assert list((tmp_path / "into").iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "said"), [(tarfile.CHRTYPE, "a device"), (tarfile.FIFOTYPE, "a FIFO")]
)
def test_devices_and_fifos_are_refused(tmp_path: Path, kind: bytes, said: str) -> None:
    with pytest.raises(ArchiveError, match=said):
        _extract(tmp_path / "into", _tar(_entry("dev", kind)))


def test_nothing_is_written_through_a_link_the_archive_itself_made(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = _tar(_entry("d", tarfile.SYMTYPE, link=str(outside)), _entry("d/planted", content=b"x"))
    with pytest.raises(ArchiveError, match="symbolic link"):
        _extract(tmp_path / "into", data)
    assert list(outside.iterdir()) == []
    assert os.readlink(tmp_path / "into" / "d") == str(outside)  # made, never followed


def test_a_hard_link_member_is_a_copy_and_set_id_bits_are_dropped(tmp_path: Path) -> None:
    target = tmp_path / "into"
    names = _extract(
        target, _tar(_entry("a", content=b"content"), _entry("b", tarfile.LNKTYPE, link="a"))
    )
    assert names == ["a", "b"]
    assert (target / "b").read_bytes() == b"content"
    assert (target / "a").stat().st_ino != (target / "b").stat().st_ino
    assert (target / "a").stat().st_mode & 0o7777 == 0o755
    with pytest.raises(ArchiveError, match="not in the archive"):
        _extract(tmp_path / "other", _tar(_entry("c", tarfile.LNKTYPE, link="missing")))


def test_members_are_placed_under_the_most_specific_configured_path() -> None:
    roots = normalised_roots(["/etc", "/etc/nginx/", "/srv/app"])
    member = Member("etc/nginx/sites/app", "file", 0o644, 0, 0, 0.0)
    (placed,) = place([member], roots)
    assert (placed.root, placed.relative) == ("/etc/nginx", "sites/app")
    (top,) = place([Member("srv/app", "directory", 0o755, 0, 0, 0.0)], roots)
    assert (top.root, top.relative) == ("/srv/app", "")
    with pytest.raises(ArchiveError, match="/etcetera/x outside the source's paths"):
        place([Member("etcetera/x", "file", 0o644, 0, 0, 0.0)], roots)
    with pytest.raises(ArchiveError, match="/ itself"):
        normalised_roots(["/", "/etc"])
