"""The one way upkeep touches files in directories it does not own.

upkeep runs as root beside directories that other users and services can write: log
directories, backup sources, a second store on a shared disk. Anyone who can write there
can plant a symbolic link, swap a file for a link between our listing and our opening,
hard-link a file they could not otherwise read, or mount something under the directory.
Every operation here is therefore:

* **relative to an open directory descriptor** (``Directory``), never a path re-resolved
  later: what was checked is what is used;
* **without following links**: descendants are opened with ``openat2`` and
  ``RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`` (each component with ``O_NOFOLLOW`` where the
  kernel predates ``openat2``), so a link anywhere below a directory, or a ``..``, is
  refused rather than followed;
* **within one mount** unless the caller says otherwise (``RESOLVE_NO_XDEV``; else mount
  ids compared), so a bind mount under a log directory is not cleaned or rotated;
* **checked against what was listed**: ``open_file(..., expect=Identity)`` compares the
  opened inode (device, inode) with the one the listing saw, so a file swapped between
  the two is refused;
* **new files are temporary first**: ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a name with
  128 random bits (``.upkeep-tmp-<label>.<hex>``), written, fsynced, given the source's
  mode and owner through the descriptor, then renamed into place without replacing
  anything (``renameat2(RENAME_NOREPLACE)``) unless replacing is what is asked;
* **regular files with one link only** are changed: a file with other hard links may be
  another file's alias (``fs.protected_hardlinks`` is off on some hosts).

The path leading to a directory the operator configured (a logs target's ``path``, a
cleanup ``root``, a second store) is the operator's and is trusted as written; everything
below it is not. ``docs/security.md`` states the whole threat model.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, Self

TEMP_PREFIX = ".upkeep-tmp-"
"""Every temporary name upkeep creates starts with this (listings skip such names)."""
TEMP_RANDOM_HEX = 32
"""Hex digits of randomness in a temporary name: 128 bits, unguessable."""
STATE_MODE = 0o600
"""Mode of upkeep's own state files wherever they live."""
STATE_DIR_MODE = 0o700
"""Mode of a directory upkeep creates for its own state."""
MAX_WALK_DEPTH = 32
"""A walk goes at most this deep: a tree someone nests without end costs neither the stack
nor one descriptor per level beyond this."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY

# openat2(2): struct open_how and its resolve flags (include/uapi/linux/openat2.h).
_SYS_OPENAT2 = 437  # the same number on every architecture (unified syscall table)
_RESOLVE_NO_XDEV = 0x01
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
# renameat2(2)
_RENAME_NOREPLACE = 1
# statx(2)
_AT_EMPTY_PATH = 0x1000
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_MNT_ID = 0x1000
_STATX_BUFFER = 256
_STATX_MASK_OFFSET = 0
_STATX_MNT_ID_OFFSET = 144

_TEMP_NAME = re.compile(rf"^{re.escape(TEMP_PREFIX)}(?P<label>.*)\.[0-9a-f]{{{TEMP_RANDOM_HEX}}}$")


class UnsafeFileError(OSError):
    """A file operation was refused because it would leave its place: a link, another
    inode than the one listed, another mount, a non-regular file, a hard-linked file."""


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


@cache
def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@cache
def _openat2_works() -> bool:
    """Return whether this kernel has openat2 (Linux 5.6+), tried once on ``/``."""
    try:
        descriptor = _openat2(-100, "/", _DIR_FLAGS, 0, 0)  # AT_FDCWD
    except OSError:
        return False
    os.close(descriptor)
    return True


def _openat2(dir_fd: int, relative: str, flags: int, mode: int, resolve: int) -> int:
    how = _OpenHow(flags=flags, mode=mode, resolve=resolve)
    result = _libc().syscall(
        _SYS_OPENAT2,
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(relative)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), relative)
    return int(result)


def mount_id(fd: int) -> int | None:
    """Given an open descriptor, return the id of the mount it is on, or None where the
    kernel cannot say (statx without STATX_MNT_ID)."""
    buffer = ctypes.create_string_buffer(_STATX_BUFFER)
    try:
        statx = _libc().statx
    except AttributeError:
        return None
    if statx(ctypes.c_int(fd), b"", _AT_EMPTY_PATH | _AT_SYMLINK_NOFOLLOW, _STATX_MNT_ID, buffer):
        return None
    mask = int.from_bytes(buffer.raw[_STATX_MASK_OFFSET : _STATX_MASK_OFFSET + 4], "little")
    if not mask & _STATX_MNT_ID:
        return None
    return int.from_bytes(buffer.raw[_STATX_MNT_ID_OFFSET : _STATX_MNT_ID_OFFSET + 8], "little")


def mount_key(fd: int) -> tuple[int, int | None]:
    """Return what identifies the mount of ``fd``: the device and, where known, the mount
    id (a bind mount of the same filesystem shares the device but not the mount id)."""
    return os.fstat(fd).st_dev, mount_id(fd)


@dataclass(frozen=True)
class Identity:
    """Which inode a listing saw: a later open must find the same one."""

    device: int
    inode: int

    @classmethod
    def of(cls, info: os.stat_result) -> Identity:
        """Given a stat result, return its identity."""
        return cls(info.st_dev, info.st_ino)


@dataclass(frozen=True)
class Entry:
    """One directory entry as listed (``lstat``: a link is a link)."""

    name: str
    info: os.stat_result

    @property
    def identity(self) -> Identity:
        """Return the listed inode's identity."""
        return Identity.of(self.info)

    @property
    def is_file(self) -> bool:
        """Return whether it is a regular file (never a link to one)."""
        return stat.S_ISREG(self.info.st_mode)

    @property
    def is_dir(self) -> bool:
        """Return whether it is a directory (never a link to one)."""
        return stat.S_ISDIR(self.info.st_mode)


def is_temporary_name(name: str) -> bool:
    """Return whether ``name`` is one of upkeep's temporary names."""
    return name.startswith(TEMP_PREFIX)


def temporary_label(name: str) -> str | None:
    """Given a name, return the label of the upkeep temporary it is, or None."""
    match = _TEMP_NAME.match(name)
    return match.group("label") if match else None


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnsafeFileError(errno.EINVAL, "not a plain file name", name)


class Directory:
    """An open directory: every operation is relative to its descriptor.

    Create one with ``Directory.open`` (a configured path) or ``Directory.child`` /
    ``Directory.descend`` (below an open one). Close it, or use it in ``with``.
    """

    def __init__(self, fd: int, path: Path, *, cross_mounts: bool = False) -> None:
        self.fd = fd
        self.path = path
        self.cross_mounts = cross_mounts
        self._mount = mount_key(fd)

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        create: bool = False,
        mode: int = STATE_DIR_MODE,
        cross_mounts: bool = False,
    ) -> Directory:
        """Given a directory the operator configured, open it (its path is trusted as
        written, links in it included); with ``create``, make missing parts with ``mode``.

        Raise FileNotFoundError if it does not exist, NotADirectoryError if it is not a
        directory, another OSError if it cannot be opened.
        """
        path = Path(path)
        if create:
            path.mkdir(mode=mode, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return cls(fd, path, cross_mounts=cross_mounts)

    def child(
        self,
        name: str,
        *,
        create: bool = False,
        mode: int = STATE_DIR_MODE,
        cross_mounts: bool | None = None,
    ) -> Directory:
        """Given a name in this directory, open that subdirectory without following a link
        or crossing a mount (unless this directory allows it); with ``create``, make it
        with ``mode`` if it is missing. ``cross_mounts`` (default: as this directory) says
        whether the subdirectory's own descendants may cross mounts: False on a child of a
        directory that allows crossing opens a configured mount point and confines what is
        below it to that mount.

        Raise UnsafeFileError if it is a link or on another mount, FileNotFoundError if it
        does not exist (and ``create`` is off), another OSError if it cannot be opened.
        """
        _check_name(name)
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=self.fd)
        opened = self.descend(name)
        if cross_mounts is None or cross_mounts == opened.cross_mounts:
            return opened
        # The mount of reference is the child's own: what is below it stays on it.
        return Directory(opened.detach(), opened.path, cross_mounts=cross_mounts)

    def detach(self) -> int:
        """Return the descriptor and give up ownership of it (this handle is closed)."""
        fd, self.fd = self.fd, -1
        return fd

    def private_child(self, name: str, *, create: bool = True) -> Directory:
        """Given a name here, open the subdirectory upkeep keeps its own state in, creating
        it 0700 if missing (and ``create``). Raise UnsafeFileError if it is a link, another
        mount, not owned by upkeep's user or writable by others (who could then swap what
        upkeep wrote there); FileNotFoundError if it is missing and ``create`` is off."""
        directory = self.child(name, create=create, mode=STATE_DIR_MODE)
        try:
            require_private(directory)
        except BaseException:
            directory.close()
            raise
        return directory

    def duplicate(self) -> Directory:
        """Return another handle on this same directory (closed independently)."""
        return Directory(os.dup(self.fd), self.path, cross_mounts=self.cross_mounts)

    def make_path(self, relative: str, *, mode: int = STATE_DIR_MODE) -> Directory:
        """Given a ``/``-separated path below this directory, open it, creating missing
        directories with ``mode``; never through a link, ``..`` or another mount (unless
        allowed). Raise UnsafeFileError or another OSError if it cannot be."""
        current = self.duplicate()
        try:
            for part in relative.split("/"):
                if part in ("", "."):
                    continue
                following = current.child(part, create=True, mode=mode)
                current.close()
                current = following
        except BaseException:
            current.close()
            raise
        return current

    def descend(self, relative: str) -> Directory:
        """Given a ``/``-separated path below this directory, open that directory without
        following any link in it or crossing a mount (unless allowed).

        Raise UnsafeFileError if a part is a link, ``..``, or another mount; another
        OSError if it cannot be opened.
        """
        fd = self._open_beneath(relative, _DIR_FLAGS, 0)
        return Directory(fd, self.path / relative, cross_mounts=self.cross_mounts)

    def _open_beneath(self, relative: str, flags: int, mode: int) -> int:
        """Open ``relative`` beneath this directory: no link followed, no ``..``, no other
        mount unless allowed; return the descriptor."""
        parts = relative.split("/")
        if not relative or any(part in ("", ".", "..") for part in parts):
            raise UnsafeFileError(errno.EINVAL, "not a plain relative path", relative)
        if _openat2_works():
            resolve = _RESOLVE_NO_SYMLINKS | _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS
            if not self.cross_mounts:
                resolve |= _RESOLVE_NO_XDEV
            try:
                return _openat2(self.fd, relative, flags | os.O_NOFOLLOW, mode, resolve)
            except OSError as error:
                number = error.errno
                # O_DIRECTORY | O_NOFOLLOW on a link as the last part fails with ENOTDIR:
                # say it is a link, as the part-by-part path does.
                if number == errno.ENOTDIR and self._is_link(relative):
                    number = errno.ELOOP
                if number in (errno.ELOOP, errno.EXDEV):
                    raise UnsafeFileError(
                        number,
                        "a symbolic link" if number == errno.ELOOP else "another mount",
                        str(self.path / relative),
                    ) from None
                raise
        return self._open_by_parts(parts, flags, mode)

    def _is_link(self, relative: str) -> bool:
        """Return whether the last part of ``relative`` is a symbolic link (for an error's
        wording only: nothing is opened through the answer)."""
        try:
            return stat.S_ISLNK(os.stat(relative, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except OSError:
            return False

    def _open_by_parts(self, parts: list[str], flags: int, mode: int) -> int:
        """The same as ``openat2`` beneath, one ``O_NOFOLLOW`` component at a time, for
        kernels without it (mounts compared by device and mount id)."""
        fd = os.dup(self.fd)
        try:
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                try:
                    child = os.open(
                        part, (flags | os.O_NOFOLLOW) if last else _DIR_FLAGS, mode, dir_fd=fd
                    )
                except OSError as error:
                    if error.errno == errno.ELOOP or (
                        error.errno == errno.ENOTDIR
                        and stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
                    ):
                        raise UnsafeFileError(
                            errno.ELOOP, "a symbolic link", str(self.path.joinpath(*parts))
                        ) from None
                    raise
                os.close(fd)
                fd = child
                if not self.cross_mounts and mount_key(fd) != self._mount:
                    raise UnsafeFileError(
                        errno.EXDEV, "another mount", str(self.path.joinpath(*parts))
                    )
        except BaseException:
            os.close(fd)
            raise
        return fd

    # --- listing -----------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Return this directory's entries as they are now (``lstat``), sorted by name;
        entries that vanish while listing are left out."""
        found = []
        with os.scandir(self.fd) as iterator:
            for item in iterator:
                try:
                    found.append(Entry(item.name, item.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue
        return sorted(found, key=lambda entry: entry.name)

    def lstat(self, name: str) -> os.stat_result | None:
        """Return what ``name`` is now (a link is a link), or None if it does not exist."""
        _check_name(name)
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        """Return whether ``name`` exists here (a dangling link exists)."""
        return self.lstat(name) is not None

    def leads_to_directory(self, entry: Entry) -> bool:
        """Return whether ``entry`` is a link whose target is a directory (looked at with
        stat only, to say why a walk did not enter it; nothing is opened)."""
        if not stat.S_ISLNK(entry.info.st_mode):
            return False
        try:
            return stat.S_ISDIR(os.stat(entry.name, dir_fd=self.fd).st_mode)
        except OSError:
            return False

    def is_mount_point(self, name: str) -> bool:
        """Return whether the subdirectory ``name`` is on another mount than this one."""
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError:
            return False
        try:
            return mount_key(fd) != self._mount
        finally:
            os.close(fd)

    # --- files -------------------------------------------------------------------------

    def open_file(
        self,
        relative: str,
        flags: int = os.O_RDONLY,
        *,
        expect: Identity | None = None,
        single_link: bool = False,
    ) -> int:
        """Given a path below this directory, open the regular file there without following
        a link or crossing a mount; with ``expect``, only if it is that very inode; with
        ``single_link``, only if it has no other hard link. Return the descriptor.

        Raise UnsafeFileError if it is a link, not a regular file, another inode than
        expected, or hard-linked elsewhere; FileNotFoundError if it is gone.
        """
        # O_NONBLOCK: opening a FIFO planted under a log's name must not wait for a writer.
        fd = self._open_beneath(relative, flags | _FILE_FLAGS | os.O_NONBLOCK, 0)
        try:
            info = os.fstat(fd)
            where = str(self.path / relative)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeFileError(errno.EINVAL, "not a regular file", where)
            if expect is not None and Identity.of(info) != expect:
                raise UnsafeFileError(errno.ESTALE, "replaced since it was listed", where)
            if single_link and info.st_nlink != 1:
                raise UnsafeFileError(
                    errno.EMLINK, f"has {info.st_nlink} hard links (another file's alias?)", where
                )
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read_bytes(self, name: str, *, limit: int) -> bytes | None:
        """Return the content of the regular file ``name`` (at most ``limit`` bytes), or
        None if it does not exist. Raise UnsafeFileError if it is a link or not a regular
        file, ValueError if it is longer than ``limit``."""
        try:
            fd = self.open_file(name)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{self.path / name} is larger than {limit} bytes")
        return data

    def create_file(self, name: str, *, like: os.stat_result) -> bool:
        """Create an empty ``name`` with the owner and mode of ``like`` (a log recreated
        after its rename); return False if something already has that name (never opened,
        never followed)."""
        _check_name(name)
        try:
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, STATE_MODE, dir_fd=self.fd
            )
        except FileExistsError:
            return False
        try:
            _take_ownership(fd, like)
        finally:
            os.close(fd)
        return True

    def create_temporary(self, label: str, *, mode: int = STATE_MODE) -> TemporaryFile:
        """Given a label (it names what the file will become, for people and clean-up),
        create a new empty file with an unguessable name and ``mode``; return it open for
        writing. Raise OSError if it cannot be created."""
        for _ in range(8):
            name = f"{TEMP_PREFIX}{label}.{secrets.token_hex(TEMP_RANDOM_HEX // 2)}"
            try:
                fd = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS,
                    mode,
                    dir_fd=self.fd,
                )
            except FileExistsError:
                continue
            return TemporaryFile(self, name, fd)
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(self.path))

    def remove_temporaries(self, label: str | None = None) -> list[str]:
        """Remove upkeep's temporary files here (those of ``label`` only, if given) that an
        interrupted write left; return their names. Links and directories are left."""
        removed = []
        for entry in self.entries():
            found = temporary_label(entry.name)
            if found is None or (label is not None and found != label) or not entry.is_file:
                continue
            if self.unlink(entry.name, expect=entry.identity):
                removed.append(entry.name)
        return removed

    def write_atomic(
        self, name: str, data: bytes, *, mode: int = STATE_MODE, like: os.stat_result | None = None
    ) -> None:
        """Given a name and bytes, make ``name`` hold exactly them: a temporary file,
        fsynced, with ``mode`` (or the mode and owner of ``like``), renamed over ``name``
        (a link there is replaced, never followed), the directory fsynced."""
        temporary = self.create_temporary(name, mode=mode)
        try:
            if like is not None:
                temporary.take_ownership_of(like)
            temporary.write(data)
            temporary.commit(name, replace=True)
        except BaseException:
            temporary.abort()
            raise

    def symlink(
        self,
        target: str,
        name: str,
        *,
        replace: bool = False,
        owner: tuple[int, int] | None = None,
    ) -> None:
        """Make ``name`` a symbolic link to ``target`` (stored as written, absolute or not;
        never resolved here): the link is made under an unguessable temporary name, given
        ``owner`` (uid, gid; when root), then renamed into place, replacing what is there
        (a file or a link, never followed) only with ``replace``.

        Raise FileExistsError if ``name`` exists and ``replace`` is off, another OSError
        (IsADirectoryError...) if it cannot be made.
        """
        _check_name(name)
        for _ in range(8):
            temporary = f"{TEMP_PREFIX}link.{secrets.token_hex(TEMP_RANDOM_HEX // 2)}"
            try:
                os.symlink(target, temporary, dir_fd=self.fd)
            except FileExistsError:
                continue
            break
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary name", str(self.path))
        try:
            if owner is not None and os.geteuid() == 0:
                os.chown(temporary, *owner, dir_fd=self.fd, follow_symlinks=False)
            if replace:
                os.rename(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            else:
                rename_noreplace(self.fd, temporary, self.fd, name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=self.fd)
            raise
        self.fsync()

    def remove_tree(self, name: str) -> bool:
        """Remove the subdirectory ``name`` and everything in it, without following a link
        anywhere (``shutil.rmtree`` on descriptors); a link or a file of that name is
        unlinked itself. Return False if nothing had that name."""
        import shutil

        info = self.lstat(name)
        if info is None:
            return False
        if not stat.S_ISDIR(info.st_mode):
            return self.unlink(name)
        shutil.rmtree(name, dir_fd=self.fd)
        return True

    def unlink(self, name: str, *, expect: Identity | None = None) -> bool:
        """Remove ``name`` (a link is removed itself, never its target); with ``expect``,
        only if it is still that inode. Return False if it was already gone or replaced."""
        _check_name(name)
        info = self.lstat(name)
        if info is None:
            return False
        if expect is not None and Identity.of(info) != expect:
            return False
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return True

    def rename(self, old: str, new: str, *, expect: Identity | None = None) -> None:
        """Rename ``old`` to ``new`` within this directory, never replacing anything at
        ``new``; with ``expect``, only if ``old`` is still that inode.

        Raise FileExistsError if ``new`` exists, UnsafeFileError if ``old`` was replaced.
        """
        _check_name(old)
        _check_name(new)
        if expect is not None:
            info = self.lstat(old)
            if info is None or Identity.of(info) != expect:
                raise UnsafeFileError(
                    errno.ESTALE, "replaced since it was listed", str(self.path / old)
                )
        rename_noreplace(self.fd, old, self.fd, new)

    def fsync(self) -> None:
        """Make renames and new names here durable."""
        os.fsync(self.fd)

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Directory({str(self.path)!r}, fd={self.fd})"


def require_private(directory: Directory) -> None:
    """Raise UnsafeFileError unless ``directory`` belongs to upkeep's user and nobody else
    can write it."""
    info = os.fstat(directory.fd)
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeFileError(
            errno.EPERM,
            f"not a private directory of upkeep's (owner uid {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):o}); others could replace what upkeep keeps there",
            str(directory.path),
        )


def open_private_directory(path: Path | str, *, create: bool = True) -> Directory:
    """Given the path of a directory upkeep keeps its own state in (the store's and API
    token's ``.upkeep``), open it (see ``Directory.private_child``): its parent is the
    operator's path, the directory itself is never a link."""
    path = Path(path)
    with Directory.open(path.parent, create=create, mode=STATE_DIR_MODE) as parent:
        return parent.private_child(path.name, create=create)


def is_private_file(info: os.stat_result) -> bool:
    """Return whether a stat result is a regular file of upkeep's user that nobody else
    may read or write."""
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    )


class TemporaryFile:
    """A new file under an unguessable temporary name; ``commit`` gives it its name."""

    def __init__(self, directory: Directory, name: str, fd: int) -> None:
        self.directory = directory
        self.name = name
        self.fd = fd
        self.handle = os.fdopen(fd, "wb", closefd=False)
        self._identity = Identity.of(os.fstat(fd))

    def write(self, data: bytes) -> int:
        """Write bytes; return how many."""
        return self.handle.write(data)

    def take_ownership_of(self, source: os.stat_result) -> None:
        """Give this file the owner and permission bits of ``source`` (never set-id bits),
        through the descriptor: an archive of a 0600 log is 0600 too."""
        _take_ownership(self.fd, source)

    def finish(self) -> None:
        """Flush and fsync what was written (the file stays open and temporary)."""
        self.handle.flush()
        os.fsync(self.fd)

    def commit(self, final: str, *, replace: bool = False) -> str:
        """Fsync, close and rename to ``final`` (replacing what is there only with
        ``replace``; never through a link), then fsync the directory; return the name.

        Raise FileExistsError if ``final`` exists and ``replace`` is off (the temporary is
        kept for the caller to retry under another name or abort).
        """
        _check_name(final)
        if not self.handle.closed:
            self.finish()
            self.handle.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if replace:
            os.rename(self.name, final, src_dir_fd=self.directory.fd, dst_dir_fd=self.directory.fd)
        else:
            rename_noreplace(self.directory.fd, self.name, self.directory.fd, final)
        self.name = final
        self.directory.fsync()
        return final

    def abort(self) -> None:
        """Close and remove the temporary (only if it is still the file we created)."""
        with contextlib.suppress(OSError, ValueError):
            self.handle.close()
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        if is_temporary_name(self.name):
            with contextlib.suppress(OSError):
                self.directory.unlink(self.name, expect=self._identity)


def _take_ownership(fd: int, source: os.stat_result) -> None:
    """Give the open file ``fd`` the owner (when root) and permission bits of ``source``,
    never its set-id bits; the owner first, so the bits apply to the right owner."""
    if os.geteuid() == 0:
        os.fchown(fd, source.st_uid, source.st_gid)
    os.fchmod(fd, stat.S_IMODE(source.st_mode) & 0o777)


def rename_noreplace(old_dir_fd: int, old: str, new_dir_fd: int, new: str) -> None:
    """Rename without replacing anything at the new name (``renameat2(RENAME_NOREPLACE)``,
    or link + unlink where the filesystem lacks it). Raise FileExistsError if taken."""
    result = _libc().renameat2(
        ctypes.c_int(old_dir_fd),
        ctypes.c_char_p(os.fsencode(old)),
        ctypes.c_int(new_dir_fd),
        ctypes.c_char_p(os.fsencode(new)),
        ctypes.c_uint(_RENAME_NOREPLACE),
    )
    if result == 0:
        return
    number = ctypes.get_errno()
    if number in (errno.EINVAL, errno.ENOSYS):
        # No RENAME_NOREPLACE on this filesystem: a hard link cannot replace either.
        os.link(old, new, src_dir_fd=old_dir_fd, dst_dir_fd=new_dir_fd, follow_symlinks=False)
        os.unlink(old, dir_fd=old_dir_fd)
        return
    if number == errno.EEXIST:
        raise FileExistsError(number, os.strerror(number), new)
    raise OSError(number, os.strerror(number), old)


@dataclass(frozen=True)
class FoundFile(Entry):
    """A regular file a walk found: its entry and where it is below the walked root."""

    relative: str = ""

    @property
    def parent(self) -> str:
        """Return the relative directory it is in ("" for the root)."""
        return self.relative.rpartition("/")[0]


@dataclass
class WalkResult:
    """What a walk found, and what it left alone with the reason."""

    files: list[FoundFile]
    skipped: list[tuple[str, str]]


def walk_files(
    root: Directory,
    matches: Callable[[str], bool],
    *,
    max_depth: int | None,
    skip_dirs: frozenset[str] = frozenset(),
) -> WalkResult:
    """Given an open root, a predicate on ``/``-separated relative paths and a depth limit
    (None: the whole tree; 0: the root's own entries), return the regular files it
    selects, sorted by path.

    Links are never followed (a link the predicate selects is reported skipped);
    subdirectories on another mount are not entered unless the root allows it (reported
    skipped); directories named in ``skip_dirs`` and upkeep's temporaries are left out.
    """
    result = WalkResult([], [])

    def visit(directory: Directory, relative_dir: str, depth: int) -> None:
        for entry in directory.entries():
            relative = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
            if is_temporary_name(entry.name):
                continue
            if entry.is_file:
                if matches(relative):
                    result.files.append(FoundFile(entry.name, entry.info, relative))
            elif entry.is_dir:
                if (max_depth is not None and depth >= max_depth) or entry.name in skip_dirs:
                    continue
                if depth >= MAX_WALK_DEPTH:
                    result.skipped.append((relative, f"deeper than {MAX_WALK_DEPTH} levels"))
                    continue
                try:
                    child = directory.child(entry.name)
                except UnsafeFileError as error:
                    result.skipped.append((relative, f"not entered: {error.strerror}"))
                    continue
                except OSError as error:
                    result.skipped.append((relative, f"not read: {error.strerror}"))
                    continue
                with child:
                    visit(child, relative, depth + 1)
            elif matches(relative):
                link = stat.S_ISLNK(entry.info.st_mode)
                reason = "symbolic link, not followed" if link else "not a regular file"
                result.skipped.append((relative, reason))
            elif (max_depth is None or depth < max_depth) and directory.leads_to_directory(entry):
                result.skipped.append((relative, "not entered: a link to a directory"))

    visit(root, "", 0)
    result.files.sort(key=lambda found: found.relative)
    return result


@contextlib.contextmanager
def opened(path: Path | str, *, cross_mounts: bool = False) -> Iterator[Directory]:
    """Open a configured directory for a ``with`` block (see ``Directory.open``)."""
    directory = Directory.open(path, cross_mounts=cross_mounts)
    try:
        yield directory
    finally:
        directory.close()


def open_regular(path: Path | str, flags: int = os.O_RDONLY, *, single_link: bool = False) -> int:
    """Given a full path whose last component may be in a directory others write, open
    it only if it is a regular file and not a link (with ``single_link``, only if it has
    no other hard link); return the descriptor.

    Raise UnsafeFileError if it is a link, not a regular file or hard-linked elsewhere,
    OSError if it cannot be opened.
    """
    path = Path(path)
    with opened(path.parent, cross_mounts=True) as directory:
        return directory.open_file(path.name, flags, single_link=single_link)


def _below(root: Path, path: Path) -> str:
    """Return ``path`` relative to ``root`` (``/``-separated); raise UnsafeFileError if it
    is not below it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise UnsafeFileError(errno.EINVAL, f"not below {root}", str(path)) from None


def open_below(root: Path | str, path: Path | str, *, expect: Identity | None = None) -> int:
    """Given a directory the operator configured and the path of a file below it (as a
    walk of it found the file), open that regular file without following a link anywhere
    below ``root`` or crossing a mount there; with ``expect``, only if it is that inode.
    Return the descriptor. Only ``root`` is opened by its path: a subdirectory swapped for
    a link since the walk is refused, not followed.

    Raise UnsafeFileError if ``path`` is not below ``root``, a part of it is a link or
    another mount, or the file is not regular or another inode; FileNotFoundError if gone.
    """
    root, path = Path(root), Path(path)
    relative = _below(root, path)
    with opened(root) as directory:
        return directory.open_file(relative, expect=expect)


def entries_below(root: Path | str, path: Path | str) -> list[Entry]:
    """Given a directory the operator configured and a directory at or below it, return
    the latter's entries (see ``Directory.entries``), reached without following a link
    below ``root`` or crossing a mount there. Raise UnsafeFileError or another OSError if
    it cannot be."""
    root, path = Path(root), Path(path)
    with opened(root) as directory:
        if path == root:
            return directory.entries()
        with directory.descend(_below(root, path)) as below:
            return below.entries()


def read_regular(path: Path | str, *, limit: int) -> bytes:
    """Given a full path, return its content if it is a regular file (not a link, not a
    FIFO or device) of at most ``limit`` bytes.

    Raise UnsafeFileError if it is a link or not a regular file, ValueError if larger,
    OSError if it cannot be read.
    """
    path = Path(path)
    with opened(path.parent, cross_mounts=True) as directory:
        data = directory.read_bytes(path.name, limit=limit)
    if data is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    return data


# --- globs ------------------------------------------------------------------------------


def _bracket(pattern: str, start: int) -> tuple[str, int] | None:
    """Given a pattern and the index of ``[``, return the regex class and the index after it.

    Return None when the bracket is not closed (it is then a literal ``[``, as in fnmatch).
    """
    end = start + 1
    if end < len(pattern) and pattern[end] == "!":
        end += 1
    if end < len(pattern) and pattern[end] == "]":
        end += 1
    while end < len(pattern) and pattern[end] != "]":
        end += 1
    if end >= len(pattern):
        return None
    body = pattern[start + 1 : end].replace("\\", "\\\\")
    # Escape characters that newer re versions reserve for set operations.
    body = re.sub(r"([&~|])", r"\\\1", body)
    if body.startswith("!"):
        return f"[^/{body[1:]}]", end + 1
    if body.startswith("^"):
        body = "\\" + body
    # A path separator is never matched by a class, as in Path.glob.
    return f"(?!/)[{body}]", end + 1


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Given a glob, return a regex that matches a whole relative path (``/``-separated).

    ``*`` and ``?`` do not cross ``/``; ``**/`` matches zero or more directories and a
    ``**`` elsewhere matches anything; ``[...]`` and ``[!...]`` are character classes.
    """
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:[^/]*/)*")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif char == "*":
            out.append("[^/]*")
            index += 1
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "[" and (bracket := _bracket(pattern, index)) is not None:
            out.append(bracket[0])
            index = bracket[1]
        else:
            out.append(re.escape(char))
            index += 1
    return re.compile("".join(out), re.DOTALL)


def glob_walk(
    root: Directory, pattern: str, *, skip_dirs: frozenset[str] = frozenset()
) -> WalkResult:
    """Given an open root and a glob relative to it (``*.log``, ``*/*.log``,
    ``**/*.gz``: ``Path.glob``'s meaning), return the regular files it matches, walking
    only as deep as the pattern reaches (see ``walk_files`` for what is never followed)."""
    regex = glob_regex(pattern)
    return walk_files(
        root,
        lambda relative: regex.fullmatch(relative) is not None,
        max_depth=None if "**" in pattern else pattern.count("/"),
        skip_dirs=skip_dirs,
    )
