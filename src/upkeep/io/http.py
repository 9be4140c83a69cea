"""The one seam for outbound HTTP.

Every HTTP request upkeep makes goes through ``HttpClient``: one aiohttp session per
event loop with a bounded connection pool, TLS contexts cached per CA file, and named
timeouts. aiohttp was chosen over httpx because at thousands of checks a minute its
per-request CPU cost is roughly half (see docs/architecture.md and benchmarks/checks.py).
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

CONNECT_TIMEOUT_S = 5.0
"""Named default: how long a TCP+TLS handshake may take before the request fails."""
DEFAULT_TOTAL_TIMEOUT_S = 10.0
"""Named default: a whole request, when the caller gives no deadline."""
POOL_LIMIT = 512
"""Named default: connections open at once across all hosts."""
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Bodies are counted in full but at most this much is kept in memory."""
URL_CACHE_SIZE = 65_536
"""Parsed URLs kept per client: a scheduler asks the same URLs every round."""


@dataclass(frozen=True)
class HttpResponse:
    """What a request returned."""

    status_code: int
    elapsed_ms: float
    body_bytes: int
    body: bytes
    headers: dict[str, str]
    peer_cert_not_after: datetime | None


class HttpError(Exception):
    """The request could not be completed (connection refused, DNS, TLS, timeout)."""


class HttpClient:
    """Outbound HTTP with connection reuse; create one per event loop and ``close`` it."""

    def __init__(self, *, pool_limit: int = POOL_LIMIT) -> None:
        self._pool_limit = pool_limit
        self._session: aiohttp.ClientSession | None = None
        self._ssl_contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._urls: dict[str, URL] = {}

    def _ssl_context(self, verify: bool, ca_file: str | None) -> ssl.SSLContext:
        key = (verify, ca_file)
        context = self._ssl_contexts.get(key)
        if context is None:
            context = ssl.create_default_context(cafile=ca_file)
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl_contexts[key] = context
        return context

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            connector = aiohttp.TCPConnector(
                limit=self._pool_limit, limit_per_host=self._pool_limit, ttl_dns_cache=60
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                trust_env=False,
                timeout=aiohttp.ClientTimeout(
                    total=DEFAULT_TOTAL_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S
                ),
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout_s: float,
        headers: dict[str, str] | None = None,
        body: str | bytes | None = None,
        verify_tls: bool = True,
        ca_file: str | None = None,
        follow_redirects: bool = True,
        keep_body: bool = False,
    ) -> HttpResponse:
        """Given a request, perform it within ``timeout_s`` and return the response.

        Raise ``HttpError`` if the connection, TLS handshake or deadline fails. The peer
        certificate's expiry is returned for https URLs.
        """
        import aiohttp

        session = self._get_session()
        ssl_arg: ssl.SSLContext | bool = False
        if url.startswith("https:"):
            ssl_arg = self._ssl_context(verify_tls, ca_file)
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=timeout_s, sock_connect=min(CONNECT_TIMEOUT_S, timeout_s)
            )
            self._timeouts[timeout_s] = timeout
        started = time.perf_counter()
        try:
            async with session.request(
                method,
                self._url(url),
                headers=headers,
                data=body,
                ssl=ssl_arg,
                timeout=timeout,
                allow_redirects=follow_redirects,
            ) as response:
                not_after = _peer_not_after(response) if ssl_arg is not False else None
                content = response.content
                size = 0
                if keep_body:
                    kept = bytearray()
                    while chunk := await content.readany():
                        size += len(chunk)
                        if len(kept) < MAX_BODY_BYTES:
                            kept.extend(chunk[: MAX_BODY_BYTES - len(kept)])
                    body_kept = bytes(kept)
                else:
                    while chunk := await content.readany():
                        size += len(chunk)
                    body_kept = b""
                elapsed_ms = (time.perf_counter() - started) * 1000
                return HttpResponse(
                    status_code=response.status,
                    elapsed_ms=elapsed_ms,
                    body_bytes=size,
                    body=body_kept,
                    headers=dict(response.headers.items()),
                    peer_cert_not_after=not_after,
                )
        except TimeoutError as error:
            raise HttpError(f"no answer within {timeout_s:g}s") from error
        except aiohttp.ClientError as error:
            raise HttpError(_describe(error)) from error

    def _url(self, url: str) -> URL | str:
        """Given a URL, return it parsed, from the cache when it was asked for before.

        A URL that does not parse is returned as given, for aiohttp to reject as it would.
        """
        parsed = self._urls.get(url)
        if parsed is None:
            from yarl import URL

            try:
                parsed = URL(url)
            except ValueError:
                return url
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[url] = parsed
        return parsed

    async def close(self) -> None:
        """Close pooled connections; the client can be used again afterwards."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _peer_not_after(response: Any) -> datetime | None:
    """Given an https response, return the peer certificate's expiry, or None if unseen.

    aiohttp hands the connection back to the pool as soon as a small body has arrived with
    the headers, so ``response.connection`` is often already None here; the protocol the
    response was read from still holds the TLS transport of that same connection.
    """
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None:
        protocol = getattr(response, "_protocol", None)
        transport = getattr(protocol, "transport", None)
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).not_valid_after_utc.astimezone(UTC)


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"
