"""Files backups as tar streams, read and written through directory descriptors.

upkeep backs up and restores, as root, directories that other users and services can
write (``/etc/nginx`` beside an application's config, ``/var/www``), so both ways go
through ``upkeep.io.safefs``:

* **Writing** (``tar_stream``): each directory is opened without following a link or
  crossing a mount below the configured path (a mount point under it is left out and
  recorded, as ``tar --one-file-system`` does); each file is opened ``O_NOFOLLOW`` and
  checked to be the inode that was listed, and its header is made from the opened file's
  own ``fstat``, so a file swapped for a link to ``/etc/shadow`` between listing and
  reading is skipped, never read. Symbolic links are stored as links (absolute targets
  too), never followed; every regular file is stored whole (no hard-link members); FIFOs,
  sockets and devices are skipped and recorded.
* **Extracting** (``extract``): member by member from the stream (never
  ``tarfile.extractall``), each name checked to be a plain relative path (no ``..``, no
  absolute path, no empty part), into a fresh directory of upkeep's own: directories are
  made and entered without following links, files created ``O_EXCL | O_NOFOLLOW``, links
  made as links and never followed afterwards, hard-link members copied from a file
  already extracted, anything else refused. Regular files get the mode (without set-uid
  or set-gid) and, as root, the owner the archive records.
* **Installing** (``plan_install``, ``install``): a restore over the live paths writes only
  under the source's configured paths. Every member must lie lexically under one of them;
  every existing directory on the way must be a real directory on the same mount, never a
  link; what a member replaces must be a file or a link (never a directory, never followed).
  The plan checks all of it before anything is written; the install then places each
  entry from the staged copy through descriptors (``openat2`` without links), so a link
  planted between plan and install is refused rather than followed.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import io
import os
import posixpath
import pwd
import stat
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Literal

from upkeep.io.safefs import Directory, Identity, UnsafeFileError

CHUNK_BYTES = 1 << 20
MAX_DEPTH = 256
"""Directories nested deeper than this are left out of a backup (and recorded): neither the
stack nor the descriptors grow without end on a tree someone nests on purpose."""
FILE_MODE_BITS = 0o777
"""Permission bits a restored file gets from the archive: never set-uid or set-gid, so a
restore as root never creates a set-id program (the restore reports the files it
stripped; re-apply with chmod what is meant to be set-id)."""
DIRECTORY_MODE_BITS = 0o3777
"""Bits a restored directory gets: set-gid (group inheritance) and sticky (only owners
delete) are kept, since dropping them would loosen a shared directory; set-uid means
nothing on a directory."""
PROBLEMS_SHOWN = 10
"""How many refused members a refusal names before saying how many more there are."""

MemberKind = Literal["directory", "file", "link"]


class ArchiveError(Exception):
    """An archive cannot be written, extracted or installed; the message says which member
    and why."""


# --- writing -------------------------------------------------------------------------------


@cache
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@cache
def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def _header(name: str, info: os.stat_result, kind: bytes, link_target: str = "") -> tarfile.TarInfo:
    header = tarfile.TarInfo(name)
    header.type = kind
    header.mode = stat.S_IMODE(info.st_mode)
    header.uid, header.gid = info.st_uid, info.st_gid
    header.uname, header.gname = _user_name(info.st_uid), _group_name(info.st_gid)
    header.mtime = info.st_mtime
    header.size = info.st_size if kind == tarfile.REGTYPE else 0
    header.linkname = link_target
    return header


class _HashingReader:
    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.digest.update(data)
        return data


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file, directory or link"


@dataclass
class _Writer:
    """Walks directories through descriptors and adds what it finds to a tar."""

    archive: tarfile.TarFile
    files: dict[str, dict[str, object]]
    skipped: list[dict[str, str]]

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append({"path": name, "reason": reason})

    def entry(self, directory: Directory, entry: str, name: str, info: os.stat_result) -> None:
        """Add ``entry`` of ``directory`` (as listed: ``info``) under the member ``name``."""
        try:
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(entry, dir_fd=directory.fd)
                self.archive.addfile(_header(name, info, tarfile.SYMTYPE, target))
            elif stat.S_ISREG(info.st_mode):
                self.regular(directory, entry, name, Identity.of(info))
            elif stat.S_ISDIR(info.st_mode):
                self.directory(directory, entry, name, Identity.of(info))
            else:
                self.skip(name, _kind_of(info.st_mode))
        except FileNotFoundError:
            self.skip(name, "vanished while being read")
        except UnsafeFileError as error:
            self.skip(name, f"not read: {error.strerror}")

    def regular(self, directory: Directory, entry: str, name: str, identity: Identity) -> None:
        fd = directory.open_file(entry, expect=identity)
        with os.fdopen(fd, "rb") as handle:
            header = _header(name, os.fstat(fd), tarfile.REGTYPE)
            reader = _HashingReader(handle)
            self.archive.addfile(header, reader)
        self.files[name] = {"size": header.size, "sha256": reader.digest.hexdigest()}

    def directory(
        self, parent: Directory, entry: str, name: str, identity: Identity, depth: int = 0
    ) -> None:
        # A configured path may itself be a mount point; below it, no mount is crossed.
        with parent.child(entry, cross_mounts=False) as directory:
            info = os.fstat(directory.fd)
            if Identity.of(info) != identity:
                self.skip(name, "replaced while being read")
                return
            self.archive.addfile(_header(name, info, tarfile.DIRTYPE))
            self.contents(directory, name, depth)

    def contents(self, directory: Directory, prefix: str, depth: int) -> None:
        for entry in directory.entries():
            name = f"{prefix}/{entry.name}" if prefix else entry.name
            if entry.is_dir:
                if depth >= MAX_DEPTH:
                    self.skip(name, f"deeper than {MAX_DEPTH} levels")
                    continue
                try:
                    self.directory(directory, entry.name, name, entry.identity, depth + 1)
                except FileNotFoundError:
                    self.skip(name, "vanished while being read")
                except UnsafeFileError as error:
                    self.skip(name, f"not entered: {error.strerror}")
            else:
                self.entry(directory, entry.name, name, entry.info)


def archive_name(path: Path) -> str:
    """Return the name a configured path gets in the tar: its absolute path without the
    leading ``/`` (not resolved: a link is stored under its own name, as a link)."""
    return os.path.abspath(path).lstrip("/")


def tar_stream(
    paths: list[Path],
    *,
    base: Path | None,
    files: dict[str, dict[str, object]] | None = None,
    skipped: list[dict[str, str]] | None = None,
) -> Iterator[bytes]:
    """Yield a tar of ``paths`` (with ``base``: the contents of that one directory, named
    relative to it; else each path under its absolute name without the ``/``), written by
    a thread into a pipe so memory stays bounded. Regular files are hashed into ``files``;
    what is left out (links swapped in, other mounts, FIFOs...) goes into ``skipped``.

    Raise ArchiveError (at the end of the stream) if a path cannot be read.
    """
    read_end, write_end = os.pipe()
    failure: list[BaseException] = []
    hashes = files if files is not None else {}
    left_out = skipped if skipped is not None else []

    def write() -> None:
        try:
            with (
                os.fdopen(write_end, "wb", buffering=CHUNK_BYTES) as sink,
                tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as archive,
            ):
                writer = _Writer(archive, hashes, left_out)
                for path in paths:
                    if base is not None:
                        with Directory.open(base) as directory:
                            writer.contents(directory, "", 0)
                        continue
                    absolute = Path(os.path.abspath(path))
                    if absolute == absolute.parent:
                        raise ArchiveError(
                            "/ itself cannot be backed up as files: name directories"
                        )
                    # The configured path's directory is the operator's, trusted as written;
                    # the path itself is taken as it is (a link is stored as a link).
                    with Directory.open(absolute.parent, cross_mounts=True) as parent:
                        info = parent.lstat(absolute.name)
                        if info is None:
                            raise ArchiveError(f"nothing to back up at {absolute}")
                        writer.entry(parent, absolute.name, archive_name(absolute), info)
        except BaseException as error:  # noqa: BLE001 - handed to the reading side
            failure.append(error)

    thread = threading.Thread(target=write, name="upkeep-tar", daemon=True)
    thread.start()
    with os.fdopen(read_end, "rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk
    thread.join()
    if failure:
        raise ArchiveError(f"reading the files failed: {failure[0]}")


# --- extracting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One entry of an archive, as extracted."""

    name: str
    kind: MemberKind
    mode: int
    uid: int
    gid: int
    mtime: float
    target: str = ""
    """A link's target, as stored (never resolved)."""
    size: int = 0
    sha256: str = ""

    @property
    def stripped_bits(self) -> bool:
        """Return whether the archive gives this file set-id bits a restore does not."""
        return self.kind == "file" and bool(self.mode & (stat.S_ISUID | stat.S_ISGID))


class Extracted:
    """What an extraction wrote, in archive order; a name the archive holds twice (two
    configured paths that overlap) counts once, as its later member, as in tar."""

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}

    def add(self, member: Member) -> None:
        """Record a member written, replacing an earlier one of the same name."""
        self._members.pop(member.name, None)
        self._members[member.name] = member

    @property
    def members(self) -> list[Member]:
        """Return the members, each name once, in the order they were last written."""
        return list(self._members.values())

    @property
    def files(self) -> dict[str, dict[str, object]]:
        """Return size and sha256 of every regular file, by member name."""
        return {
            member.name: {"size": member.size, "sha256": member.sha256}
            for member in self._members.values()
            if member.kind == "file"
        }


def member_name(raw: str) -> str:
    """Given a name from a tar header, return it if it is a plain relative path (no
    leading ``/``, no ``..``, ``.`` or empty part, no NUL); raise ArchiveError if not."""
    parts = raw.split("/")
    if (
        not raw
        or raw.startswith("/")
        or "\0" in raw
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ArchiveError(f"the archive holds the name {raw!r}: not a plain relative path")
    return raw


class _IterableReader(io.RawIOBase):
    """A read-only file over an iterator of byte pieces (what tarfile's stream mode reads)."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._pending = piece
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


class _Parents:
    """The directory of the last member, kept open: members come in walk order, so
    consecutive ones mostly share it."""

    def __init__(self, root: Directory, *, create: bool) -> None:
        self.root = root
        self.create = create
        self._name: str | None = None
        self._open: Directory | None = None

    def get(self, relative: str) -> Directory:
        if self._open is not None and self._name == relative:
            return self._open
        self.close()
        if not relative:
            opened = self.root.duplicate()
        elif self.create:
            opened = self.root.make_path(relative)
        else:
            opened = self.root.descend(relative)
        self._name, self._open = relative, opened
        return opened

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
        self._name, self._open = None, None


def _own(fd: int, member: Member) -> None:
    """Give an open file the archive's owner (as root) and mode (no set-id), and mtime."""
    if os.geteuid() == 0:
        os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & FILE_MODE_BITS)
    os.utime(fd, (member.mtime, member.mtime))


def _new_file(directory: Directory, name: str) -> int:
    """Create ``name`` (0600, never through a link), replacing a file or link of that name
    an earlier member of the same name left; return the descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, 0o600, dir_fd=directory.fd)
    except FileExistsError:
        directory.unlink(name)  # a file or a link is removed itself; a directory fails next
        return os.open(name, flags, 0o600, dir_fd=directory.fd)


def extract(
    raw: Iterable[bytes],
    destination: Directory,
    *,
    check: Callable[[Member], None] | None = None,
    links: bool = True,
) -> Extracted:
    """Given a tar stream and a fresh directory of upkeep's own, extract every member into
    it and return what was extracted (in archive order, with each file's sha256).

    ``check`` sees each member before it is written and raises ArchiveError to refuse it;
    without ``links``, link members are refused. Directories' own modes are not applied
    (they matter only where a restore installs them; see ``install``).

    Raise ArchiveError naming the member if a name is not a plain relative path, a member
    is a device or FIFO, or it would be written through a link; errors of the stream itself
    (a decryption failure) propagate.
    """
    extracted = Extracted()
    written: set[str] = set()
    parents = _Parents(destination, create=True)
    try:
        with tarfile.open(
            fileobj=io.BufferedReader(_IterableReader(raw), CHUNK_BYTES), mode="r|"
        ) as archive:
            for header in archive:
                member = _member(header)
                if member.kind == "link" and not links:
                    raise ArchiveError(f"{member.name}: a link, and this archive holds none")
                if check is not None:
                    check(member)
                folder, _, leaf = member.name.rpartition("/")
                if member.kind == "directory":
                    destination.make_path(member.name).close()
                    extracted.add(member)
                    continue
                directory = parents.get(folder)
                if member.kind == "link":
                    _write_link(directory, leaf, member)
                    extracted.add(member)
                    continue
                with _file_content(archive, header, destination, written) as source:
                    extracted.add(_write_file(source, directory, leaf, member))
                written.add(member.name)
    except tarfile.TarError as error:
        raise ArchiveError(f"the archive does not extract: {error}") from None
    except UnsafeFileError as error:
        raise ArchiveError(
            f"the archive would write through {error.filename}: {error.strerror}"
        ) from None
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as error:
        raise ArchiveError(f"the archive contradicts itself at {error.filename}") from None
    finally:
        parents.close()
    return extracted


def _write_link(directory: Directory, leaf: str, member: Member) -> None:
    """Make the link ``leaf`` (its target as stored, never followed), replacing a file or
    link an earlier member of that name left."""
    found = directory.lstat(leaf)
    if found is not None and not stat.S_ISDIR(found.st_mode):
        directory.unlink(leaf)
    os.symlink(member.target, leaf, dir_fd=directory.fd)
    if os.geteuid() == 0:
        os.chown(leaf, member.uid, member.gid, dir_fd=directory.fd, follow_symlinks=False)


def _write_file(source: IO[bytes], directory: Directory, leaf: str, member: Member) -> Member:
    """Write a regular member's content to ``leaf`` with its owner and mode; return the
    member with its size and sha256."""
    fd = _new_file(directory, leaf)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb", closefd=False) as sink:
            while chunk := source.read(CHUNK_BYTES):
                sink.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        _own(fd, member)
    finally:
        os.close(fd)
    return Member(
        member.name,
        "file",
        member.mode,
        member.uid,
        member.gid,
        member.mtime,
        size=size,
        sha256=digest.hexdigest(),
    )


def _member(header: tarfile.TarInfo) -> Member:
    name = member_name(header.name)
    common = (header.mode, header.uid, header.gid, float(header.mtime))
    if header.isdir():
        return Member(name, "directory", *common)
    if header.issym():
        return Member(name, "link", *common, target=header.linkname)
    if header.isreg() or header.islnk():
        # A hard-link member becomes a copy of the file it names (see _file_content).
        return Member(name, "file", *common, size=header.size)
    kind = "a device" if header.ischr() or header.isblk() else "a FIFO" if header.isfifo() else ""
    raise ArchiveError(f"{name}: {kind or 'an unknown kind of member'} is refused")


def _file_content(
    archive: tarfile.TarFile, header: tarfile.TarInfo, destination: Directory, written: set[str]
) -> IO[bytes]:
    """Return a regular member's content: from the stream, or for a hard-link member a
    copy of the file it names, which must be one this extraction wrote."""
    if not header.islnk():
        content = archive.extractfile(header)
        if content is None:
            raise ArchiveError(f"{header.name}: no content")
        return content
    target = member_name(header.linkname)
    if target not in written:
        raise ArchiveError(f"{header.name}: a hard link to {target!r}, which is not in the archive")
    return os.fdopen(destination.open_file(target), "rb")


# --- installing over the live paths --------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A member and the configured path it is restored under."""

    member: Member
    root: str
    """The configured path, absolute and normalised."""
    relative: str
    """The member's path below the configured path ("" for the path itself)."""


def normalised_roots(paths: Iterable[str | Path]) -> list[str]:
    """Return configured paths as absolute normalised strings, longest first (so a member
    is placed under the most specific one); raise ArchiveError for ``/``."""
    roots = sorted({posixpath.normpath(os.path.abspath(path)) for path in paths}, key=len)
    if "/" in roots:
        raise ArchiveError("/ itself cannot be restored as files: name directories")
    return roots[::-1]


def place(members: Iterable[Member], roots: list[str]) -> list[Placed]:
    """Given members and the configured paths, return where each goes; raise ArchiveError
    naming the members that lie under none of them (nothing has been written)."""
    placed: list[Placed] = []
    outside: list[str] = []
    for member in members:
        full = "/" + member.name
        for root in roots:
            if full == root:
                placed.append(Placed(member, root, ""))
                break
            if full.startswith(root + "/"):
                placed.append(Placed(member, root, full[len(root) + 1 :]))
                break
        else:
            outside.append(full)
    if outside:
        raise ArchiveError(
            f"the backup holds {_named(outside)} outside the source's paths "
            f"({', '.join(roots)}); a restore writes only under them"
        )
    return placed


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:PROBLEMS_SHOWN])
    more = len(items) - PROBLEMS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _existing_problem(info: os.stat_result | None, member: Member, where: str) -> str | None:
    """Return why ``member`` cannot replace what is at ``where`` (None if it can)."""
    if info is None:
        return None
    if member.kind == "directory":
        if stat.S_ISDIR(info.st_mode):
            return None
        if stat.S_ISLNK(info.st_mode):
            return f"{where} is a symbolic link on disk; a restore never writes through a link"
        return f"{where} is a file on disk, a directory in the backup"
    if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
        return None  # replaced itself (renamed over), never written through
    if stat.S_ISDIR(info.st_mode):
        return f"{where} is a directory on disk, a {member.kind} in the backup"
    return f"{where} is {_kind_of(info.st_mode)} on disk"


def plan_install(placed: list[Placed]) -> None:
    """Check, before anything is written, that every placed member can be installed
    without writing through a link, across a mount, or over a directory; raise ArchiveError
    listing every member that cannot."""
    problems: list[str] = []
    for root, group in _by_root(placed):
        parent_path, name = posixpath.split(root)
        try:
            parent = Directory.open(parent_path, cross_mounts=True)
        except FileNotFoundError:
            continue  # nothing there yet: everything is created
        except OSError as error:
            problems.append(f"{parent_path}: {error.strerror}")
            continue
        with parent:
            top_info = parent.lstat(name)
            below = [item for item in group if item.relative]
            for item in group:
                if not item.relative and (
                    problem := _existing_problem(top_info, item.member, root)
                ):
                    problems.append(problem)
            if not below or top_info is None:
                continue
            if not stat.S_ISDIR(top_info.st_mode):
                problems.append(
                    _existing_problem(top_info, Member(root, "directory", 0, 0, 0, 0.0), root)
                    or root
                )
                continue
            try:
                top = parent.child(name, cross_mounts=False)
            except OSError as error:
                problems.append(f"{root}: {error.strerror}")
                continue
            with top:
                problems += _plan_below(top, root, below)
    if problems:
        raise ArchiveError(f"refused, nothing was restored: {'; '.join(_first(problems))}")


def _first(problems: list[str]) -> list[str]:
    more = len(problems) - PROBLEMS_SHOWN
    return problems[:PROBLEMS_SHOWN] + ([f"and {more} more"] if more > 0 else [])


def _plan_below(top: Directory, root: str, items: list[Placed]) -> list[str]:
    problems: list[str] = []
    blocked: set[str] = set()
    for item in items:
        folder, _, leaf = item.relative.rpartition("/")
        if folder in blocked:
            continue
        where = f"{root}/{item.relative}"
        try:
            directory = top.descend(folder) if folder else top.duplicate()
        except FileNotFoundError:
            continue  # created by the install
        except UnsafeFileError as error:
            blocked.add(folder)
            problems.append(
                f"{error.filename} is {error.strerror} on disk; a restore never writes "
                "through a link or across a mount"
            )
            continue
        except NotADirectoryError:
            blocked.add(folder)
            problems.append(f"{root}/{folder}: a file on disk is in the way of a directory")
            continue
        with directory:
            problem = _existing_problem(directory.lstat(leaf), item.member, where)
            if (
                problem is None
                and item.member.kind == "directory"
                and directory.is_mount_point(leaf)
            ):
                problem = f"{where} is another mount; a restore does not cross mounts"
            if problem is not None:
                problems.append(problem)
    return problems


def _by_root(placed: list[Placed]) -> list[tuple[str, list[Placed]]]:
    groups: dict[str, list[Placed]] = {}
    for item in placed:
        groups.setdefault(item.root, []).append(item)
    return list(groups.items())


@dataclass
class Installed:
    """What an install wrote."""

    files: int = 0
    links: int = 0
    directories: int = 0
    stripped: list[str] = field(default_factory=list)
    """Files the archive gives set-id bits that were not restored."""

    def summary(self) -> str:
        """Return the counts, for people."""
        text = f"restored {self.files} files, {self.links} links, {self.directories} directories"
        if self.stripped:
            text += (
                f"; set-uid/set-gid bits not restored on {_named(self.stripped)} "
                "(chmod them if they are meant to be set-id)"
            )
        return text


def install(stage: Directory, placed: list[Placed]) -> Installed:
    """Given the staged extraction (members under their archive names) and where each
    goes, put every member in place under its configured path: directories made (never
    through a link), files and links renamed over what is there (a link is replaced, never
    followed) or, across filesystems, copied to a temporary beside it and renamed, each
    fsynced. Directories get the archive's owner and mode last. Return what was written.

    Raise ArchiveError if something changed on disk since ``plan_install`` (a link planted
    meanwhile is refused, not followed): the entries before it stay restored.
    """
    done = Installed()
    staged = _Parents(stage, create=False)
    try:
        for root, group in _by_root(placed):
            _install_root(stage, staged, root, group, done)
    except UnsafeFileError as error:
        raise ArchiveError(
            f"stopped after {done.files + done.links + done.directories} entries: "
            f"{error.filename} is {error.strerror} on disk (changed since the check); "
            "nothing was written through it"
        ) from None
    except OSError as error:
        raise ArchiveError(
            f"stopped after {done.files + done.links + done.directories} entries: "
            f"{error.filename or ''}: {error.strerror}"
        ) from None
    finally:
        staged.close()
    return done


def _install_root(
    stage: Directory, staged: _Parents, root: str, group: list[Placed], done: Installed
) -> None:
    parent_path, name = posixpath.split(root)
    # The configured path's directory is the operator's, trusted as written (and made if a
    # restore onto a new host finds it missing); the path itself is never followed.
    with Directory.open(parent_path, create=True, mode=0o755, cross_mounts=True) as parent:
        top: Directory | None = None
        live: _Parents | None = None
        directories: list[tuple[Placed, Directory | None]] = []
        try:
            for item in group:
                member = item.member
                if not item.relative:
                    if member.kind == "directory":
                        parent.child(name, create=True, cross_mounts=False).close()
                        directories.append((item, None))
                    else:
                        _put(stage, staged, member, parent, name, done)
                    continue
                if top is None:
                    top = parent.child(name, create=True, cross_mounts=False)
                    live = _Parents(top, create=True)
                assert live is not None  # noqa: S101 - set with top
                if member.kind == "directory":
                    top.make_path(item.relative).close()
                    directories.append((item, top))
                    continue
                folder, _, leaf = item.relative.rpartition("/")
                _put(stage, staged, member, live.get(folder), leaf, done)
            # Owners and modes of directories last: a restrictive mode set first could
            # keep a non-root restore out, and every entry made above changed their mtime.
            for item, base in reversed(directories):
                with (
                    base.descend(item.relative)
                    if base is not None
                    else parent.child(name, cross_mounts=False)
                ) as directory:
                    _own_directory(directory.fd, item.member)
                done.directories += 1
        finally:
            if live is not None:
                live.close()
            if top is not None:
                top.close()


def _own_directory(fd: int, member: Member) -> None:
    if os.geteuid() == 0:
        os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & DIRECTORY_MODE_BITS)
    os.utime(fd, (member.mtime, member.mtime))


def _put(
    stage: Directory,
    staged: _Parents,
    member: Member,
    directory: Directory,
    leaf: str,
    done: Installed,
) -> None:
    """Move one staged file or link to ``leaf`` of ``directory`` (replacing a file or link
    there, never following it); copy it across filesystems."""
    folder, _, staged_leaf = member.name.rpartition("/")
    source = staged.get(folder)
    if member.kind == "file":
        fd = source.open_file(staged_leaf)
        try:
            os.fsync(fd)  # the data is durable before its name is
        finally:
            os.close(fd)
    try:
        os.rename(staged_leaf, leaf, src_dir_fd=source.fd, dst_dir_fd=directory.fd)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        _copy(source, staged_leaf, member, directory, leaf)
    directory.fsync()
    if member.kind == "file":
        done.files += 1
        if member.stripped_bits:
            done.stripped.append("/" + member.name)
    else:
        done.links += 1


def _copy(
    source: Directory, staged_leaf: str, member: Member, directory: Directory, leaf: str
) -> None:
    if member.kind == "link":
        directory.symlink(
            os.readlink(staged_leaf, dir_fd=source.fd),
            leaf,
            replace=True,
            owner=(member.uid, member.gid),
        )
        return
    temporary = directory.create_temporary("restore")
    try:
        with os.fdopen(source.open_file(staged_leaf), "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                temporary.write(chunk)
        temporary.finish()
        _own(temporary.fd, member)
        temporary.commit(leaf, replace=True)
    except BaseException:
        temporary.abort()
        raise
