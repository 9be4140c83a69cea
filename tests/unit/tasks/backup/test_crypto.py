"""Chunked AES-GCM: round trip, and every kind of damage is caught and located."""

from __future__ import annotations

import os

import pytest

from upkeep.store import crypto

KEY = "a-secret-from-the-secret-store"


def _sealed(data: bytes) -> bytes:
    return b"".join(
        crypto.encrypt([data[i : i + 70_000] for i in range(0, len(data), 70_000)], KEY)
    )


def _opened(sealed: bytes, key: str = KEY) -> bytes:
    return b"".join(
        crypto.decrypt([sealed[i : i + 4096] for i in range(0, len(sealed), 4096)], key)
    )


def test_round_trip_of_several_chunks_and_of_nothing() -> None:
    data = os.urandom(crypto.CHUNK_BYTES * 2 + 12345)
    assert _opened(_sealed(data)) == data
    assert _opened(_sealed(b"")) == b""


def test_a_wrong_key_fails_the_first_chunk() -> None:
    with pytest.raises(crypto.DecryptionError, match="chunk 0 fails authentication"):
        _opened(_sealed(b"backup"), key="another key")


def test_a_flipped_byte_names_its_chunk() -> None:
    sealed = bytearray(_sealed(os.urandom(crypto.CHUNK_BYTES * 2 + 10)))
    sealed[len(crypto.MAGIC) + 23 + 4 + crypto.CHUNK_BYTES + 16 + 4 + 100] ^= 1  # in chunk 1
    with pytest.raises(crypto.DecryptionError, match="chunk 1 fails authentication"):
        _opened(bytes(sealed))


def test_truncation_at_a_chunk_boundary_and_appended_data_are_caught() -> None:
    sealed = _sealed(os.urandom(crypto.CHUNK_BYTES + 10))
    first_chunk_end = len(crypto.MAGIC) + 23 + 4 + crypto.CHUNK_BYTES + 16
    with pytest.raises(crypto.DecryptionError, match="fails authentication"):
        _opened(sealed[:first_chunk_end])  # the last chunk dropped: chunk 0 was not "last"
    with pytest.raises(crypto.DecryptionError):
        _opened(sealed + b"\x00\x00\x00\x20" + b"x" * 32)


def test_not_ours() -> None:
    with pytest.raises(crypto.DecryptionError, match="bad header"):
        _opened(b"plain zstd data, not sealed")


def test_a_sealed_document_opens_only_unchanged_in_its_place_with_its_secret() -> None:
    document = {"id": "x", "data": {"stored_bytes": 10, "ratio": 0.1}, "label": "é"}
    sealed = crypto.seal(document, KEY, context="manifest of db/x")
    assert crypto.unseal(sealed, KEY, context="manifest of db/x") == document
    # A re-parsed, re-ordered copy is the same document.
    reordered = dict(reversed(list(sealed.items())))
    assert crypto.unseal(reordered, KEY, context="manifest of db/x") == document
    edited = {**sealed, "label": "other"}
    failures = [
        (edited, KEY, "manifest of db/x"),
        (sealed, KEY, "manifest of db/y"),  # moved to another backup
        (sealed, "another-secret", "manifest of db/x"),
        (document, KEY, "manifest of db/x"),  # never sealed
        ({**sealed, "authentication": {"algorithm": "none"}}, KEY, "manifest of db/x"),
    ]
    for candidate, secret, context in failures:
        with pytest.raises(crypto.AuthenticationError):
            crypto.unseal(candidate, secret, context=context)
