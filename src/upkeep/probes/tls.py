"""TLS endpoints: when does the certificate expire, and would a client accept it today.

The probe connects the way a client would: with the server name as SNI, verifying the
chain against ``ca_file`` (or the system store) and the name against the certificate.
A certificate that fails verification is still worth measuring — an expired or
mis-issued certificate is exactly what this check exists to report — so it connects a
second time without verification to read it, and reports ``valid: false`` with the
reason instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from upkeep.core.models import StrictModel
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
    metrics_from,
)

CLOSE_GRACE_S = 1.0
"""How long a polite TLS close may take before the connection is dropped."""


class TlsTarget(TargetBase):
    """A TLS endpoint: host and port, the name to ask for (SNI) and the CA to trust.

    A relative ``ca_file`` is relative to the config file's directory; a missing one is a
    config error.
    """

    path_fields: ClassVar[tuple[str, ...]] = ("ca_file",)
    required_files: ClassVar[tuple[str, ...]] = ("ca_file",)

    kind: Literal["tls"] = "tls"
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 443
    server_name: Annotated[str, Field(min_length=1)] | None = None
    ca_file: Annotated[str, Field(min_length=1)] | None = None


class Deadline:
    """One time budget shared by the verified and the fallback connection."""

    def __init__(self, seconds: float) -> None:
        """Given a budget in seconds, start it now (on the running loop's clock)."""
        self._seconds = seconds
        self._ends = asyncio.get_running_loop().time() + seconds

    @property
    def total(self) -> float:
        """Return the whole budget in seconds, for messages."""
        return self._seconds

    def remaining(self) -> float:
        """Return the seconds left, never below zero."""
        return max(0.0, self._ends - asyncio.get_running_loop().time())


async def fetch_peer_certificate(
    host: str, port: int, context: ssl.SSLContext, server_name: str, deadline: Deadline
) -> bytes:
    """Given an endpoint and an SSL context, complete a handshake and return the leaf cert (DER).

    Raise ``ssl.SSLCertVerificationError`` unchanged if the context rejects the certificate;
    raise TargetUnreachable if the connection is refused, the handshake fails for any other
    reason, or the deadline passes.
    """
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(deadline.remaining()):
            _, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=server_name
            )
    except ssl.SSLCertVerificationError:
        raise
    except TimeoutError as error:
        raise TargetUnreachable(f"{where}: no TLS handshake within {deadline.total:g}s") from error
    except ssl.SSLError as error:
        raise TargetUnreachable(
            f"{where}: TLS handshake failed: {error.reason or error}"
        ) from error
    except OSError as error:
        raise TargetUnreachable(f"{where}: {error.strerror or error}") from error
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        try:
            async with asyncio.timeout(CLOSE_GRACE_S):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            # The certificate is already in hand; a peer that will not finish the TLS
            # close politely only costs us the socket, so drop it.
            with contextlib.suppress(OSError):
                writer.transport.abort()
    if not der:
        raise TargetUnreachable(f"{where}: the server presented no certificate")
    return bytes(der)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class ExpiryProbe(Probe[TlsTarget, StrictModel]):
    """Days until the server certificate expires, and whether it verifies today."""

    target_kind: ClassVar[str] = "tls"
    name: ClassVar[str] = "expiry"
    summary: ClassVar[str] = "Certificate expiry in days, and whether chain and name verify."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "days_left", "number", "days until the leaf certificate expires (negative: expired)"
        ),
        MetricSpec(
            "valid",
            "bool",
            "the chain verifies against the CA, the name matches and it has not expired",
        ),
    )

    async def run(
        self, target: TlsTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a TLS endpoint, return days_left and valid for its leaf certificate.

        The certificate name is checked against ``server_name`` (default: ``host``), which
        is also sent as SNI. If verification fails, the certificate is read over a second,
        unverified connection and ``valid`` is false with the reason in the message.
        Raise TargetUnreachable if the endpoint refuses, times out or cannot complete a
        TLS handshake at all. Raise FileNotFoundError if ``ca_file`` does not exist.
        """
        from cryptography import x509

        server_name = target.server_name or target.host
        try:
            verifying = ssl.create_default_context(cafile=target.ca_file)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"ca_file {target.ca_file!r} does not exist") from error
        deadline = Deadline(context.timeout_s)
        failure: str | None = None
        try:
            der = await fetch_peer_certificate(
                target.host, target.port, verifying, server_name, deadline
            )
        except ssl.SSLCertVerificationError as error:
            failure = (error.verify_message or str(error)).rstrip(".")
            der = await fetch_peer_certificate(
                target.host, target.port, _unverified_context(), server_name, deadline
            )

        not_after = x509.load_der_x509_certificate(der).not_valid_after_utc
        now = datetime.now(UTC)
        days_left = (not_after - now).total_seconds() / 86400
        valid = failure is None and now < not_after
        until = f"expires {not_after:%Y-%m-%d %H:%M} UTC ({days_left:.1f} days left)"
        if valid:
            message = f"certificate for {server_name} is valid; {until}"
        else:
            reason = failure or "certificate has expired"
            message = f"certificate for {server_name} is NOT valid: {reason}; {until}"
        return ProbeOutcome(metrics_from({"days_left": days_left, "valid": valid}), message=message)
