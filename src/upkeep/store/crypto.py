"""Streaming authenticated encryption of backup data (chunked AES-256-GCM).

A backup can be larger than memory, and GCM authenticates a whole message, so the stream
is cut into chunks of ``CHUNK_BYTES``, each sealed on its own (the STREAM construction of
Hoang, Reyhanitabar, Rogaway and Vizár, as Tink's streaming AEAD and age use it):

    header  = MAGIC | salt (16) | nonce prefix (7)
    chunk_i = length (4, big-endian) | AES-GCM(key, prefix | i (4) | last (1), plaintext_i)

The key is scrypt(secret, salt). The chunk counter in the nonce stops reordering and
dropping chunks; the ``last`` flag stops truncation at a chunk boundary. Any changed byte
fails authentication of its chunk, and decryption says which.

The manifest and the records beside it (``verified.json``, ``last-attempt.json``,
``last-drill.json``) are authenticated too, with HMAC-SHA256 under a second key derived
from the same secret (scrypt with its own fixed salt, so it is never the data key): the
MAC covers the document's canonical JSON and the place it belongs to (``manifest`` of
``db/20260101T000000Z-abc123``), so a manifest cannot be edited, forged without the
secret, or moved to another backup or source. It cannot stop an older authentic record
being put back in place of a newer one: records carry their own time for that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"UPKEEP-ENC1\n"
CHUNK_BYTES = 1 << 20
"""Plaintext per sealed chunk: memory stays bounded, and a damaged byte costs one chunk."""
SALT_BYTES = 16
PREFIX_BYTES = 7
TAG_BYTES = 16
SCRYPT_N = 2**15
"""scrypt cost: about 50 ms and 32 MB per backup on this machine's class; the secret is
a key from a secret store, not a password typed by a person, so no more is needed."""


AUTHENTICATION_FIELD = "authentication"
"""The field of a sealed document that holds its MAC."""
AUTHENTICATION_ALGORITHM = "HMAC-SHA256"
_AUTHENTICATION_SALT = b"upkeep backup manifests and records, HMAC-SHA256, v1"
"""A fixed salt: one derivation per secret and process, not one per backup, so listing a
hundred backups costs one scrypt; a per-backup salt would cost a hundred."""


class DecryptionError(Exception):
    """The data is not ours, the key is wrong, or a byte was changed, dropped or added."""


class AuthenticationError(Exception):
    """A sealed document's MAC is missing or wrong: forged, edited, moved, or sealed with
    another secret."""


@lru_cache(maxsize=4)
def _authentication_key(secret: str) -> bytes:
    return Scrypt(salt=_AUTHENTICATION_SALT, length=32, n=SCRYPT_N, r=8, p=1).derive(
        secret.encode()
    )


def _canonical(document: dict[str, Any], context: str) -> bytes:
    """Return the bytes a MAC covers: the place and the document as canonical JSON (sorted
    keys, no spaces, ASCII), so re-parsing and re-writing never changes them."""
    return json.dumps(
        {"context": context, "document": document},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    ).encode()


def _mac(document: dict[str, Any], secret: str, context: str) -> str:
    return hmac.new(
        _authentication_key(secret), _canonical(document, context), hashlib.sha256
    ).hexdigest()


def seal(document: dict[str, Any], secret: str, *, context: str) -> dict[str, Any]:
    """Given a JSON document, the secret and the place it belongs to, return it with an
    ``authentication`` field holding its HMAC-SHA256."""
    body = {key: value for key, value in document.items() if key != AUTHENTICATION_FIELD}
    return {
        **body,
        AUTHENTICATION_FIELD: {
            "algorithm": AUTHENTICATION_ALGORITHM,
            "mac": _mac(body, secret, context),
        },
    }


def unseal(document: dict[str, Any], secret: str, *, context: str) -> dict[str, Any]:
    """Given a sealed document, the secret and the place it was read from, return it
    without its ``authentication`` field; raise AuthenticationError if the MAC is missing
    or does not match (compared in constant time)."""
    found = document.get(AUTHENTICATION_FIELD)
    if not isinstance(found, dict) or found.get("algorithm") != AUTHENTICATION_ALGORITHM:
        raise AuthenticationError("it carries no authentication")
    body = {key: value for key, value in document.items() if key != AUTHENTICATION_FIELD}
    try:
        expected = _mac(body, secret, context)
    except (ValueError, TypeError):
        raise AuthenticationError("it is not canonical JSON") from None
    if not hmac.compare_digest(expected, str(found.get("mac", ""))):
        raise AuthenticationError("its MAC does not match")
    return body


def unsealed_unchecked(document: dict[str, Any]) -> dict[str, Any]:
    """Return a document without its ``authentication`` field, unchecked (no secret to
    check it with: the caller trusts the repository instead)."""
    return {key: value for key, value in document.items() if key != AUTHENTICATION_FIELD}


def _key(secret: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=8, p=1).derive(secret.encode())


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I?", index, last)


def _rechunk(data: Iterable[bytes], size: int) -> Iterator[bytes]:
    pending = bytearray()
    for piece in data:
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    yield bytes(pending)


def encrypt(data: Iterable[bytes], secret: str) -> Iterator[bytes]:
    """Given plaintext pieces and the secret, yield the sealed stream (header, chunks)."""
    salt, prefix = os.urandom(SALT_BYTES), os.urandom(PREFIX_BYTES)
    cipher = AESGCM(_key(secret, salt))
    yield MAGIC + salt + prefix
    chunks = _rechunk(data, CHUNK_BYTES)
    current = next(chunks)
    index = 0
    for following in chunks:
        sealed = cipher.encrypt(_nonce(prefix, index, False), current, None)
        yield struct.pack(">I", len(sealed)) + sealed
        current, index = following, index + 1
    sealed = cipher.encrypt(_nonce(prefix, index, True), current, None)
    yield struct.pack(">I", len(sealed)) + sealed


def decrypt(stream: Iterable[bytes], secret: str) -> Iterator[bytes]:
    """Given the sealed stream's pieces and the secret, yield the plaintext; raise
    DecryptionError (naming the chunk) on a wrong key or any change to the data."""
    reader = _Reader(stream)
    header = reader.take(len(MAGIC) + SALT_BYTES + PREFIX_BYTES)
    if header is None or not header.startswith(MAGIC):
        raise DecryptionError("not an upkeep-encrypted backup (bad header)")
    salt = header[len(MAGIC) : len(MAGIC) + SALT_BYTES]
    prefix = header[len(MAGIC) + SALT_BYTES :]
    cipher = AESGCM(_key(secret, salt))
    index = 0
    while True:
        length_bytes = reader.take(4)
        if length_bytes is None:
            raise DecryptionError(f"the data ends before its last chunk (after chunk {index})")
        (length,) = struct.unpack(">I", length_bytes)
        if length < TAG_BYTES or length > CHUNK_BYTES + TAG_BYTES:
            raise DecryptionError(f"chunk {index} has an impossible length {length}")
        sealed = reader.take(length)
        if sealed is None:
            raise DecryptionError(f"chunk {index} is cut short")
        last = reader.at_end()
        try:
            plain = cipher.decrypt(_nonce(prefix, index, last), sealed, None)
        except InvalidTag:
            raise DecryptionError(
                f"chunk {index} fails authentication: wrong key, or the data was changed"
            ) from None
        yield plain
        if last:
            return
        index += 1


class _Reader:
    """Exact reads over an iterator of byte pieces."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._pieces = iter(stream)
        self._buffer = bytearray()
        self._exhausted = False

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size and not self._exhausted:
            piece = next(self._pieces, None)
            if piece is None:
                self._exhausted = True
            else:
                self._buffer += piece

    def take(self, size: int) -> bytes | None:
        self._fill(size)
        if len(self._buffer) < size:
            return None
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        return taken

    def at_end(self) -> bool:
        self._fill(1)
        return not self._buffer
