"""Channels: deliver one message to one Apprise URL, and tell whether a URL is one.

A channel in ``upkeep.yaml`` is an Apprise URL (``mailto://``, ``json://``, ``slack://``…),
and the whole URL is a secret: it usually carries a token or a password. ``send`` builds
one Apprise object per call with that single URL, so no state (throttling, a half-open
connection, a previous call's headers) leaks from one delivery into the next.

Apprise logs through the ``apprise`` logger, and its records can quote parts of a URL.
We stop that logger from propagating into upkeep's log and collect its records per call
from Apprise's own result instead (``notify(log_level=...)``: captured per call, so eight
concurrent sends do not read each other's errors), then redact them before they become
``DeliveryResult.error``. What a user sees of a failed delivery is only that text.

``send`` blocks (Apprise uses requests and smtplib); the dispatcher calls it through
``upkeep.io.threads.run_blocking``.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from upkeep.core.redaction import Redactor, published
from upkeep.core.text import one_line

if TYPE_CHECKING:
    from apprise.plugins.base import NotifyBase

DELIVERY_TIMEOUT_S = 15.0
"""Named timeout: one delivery attempt (connect, and each read), when the caller gives none.

The config's ``alerting.delivery.timeout`` is what the dispatcher passes; this is the same
default, for callers without a config."""
LEVELS = ("failure", "warning", "success", "info")
"""Message levels, most severe first; they are Apprise's notify types."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
KEY_HEADER = "X-Upkeep-Key"
WEBHOOK_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})
"""Plain webhooks: the receiver is a program, which reads the key from the headers, so
the body stays exactly the message. Every other service shows the body to a person, who
gets the key as a last ``ref:`` line (it is what to quote when asking "did this arrive
twice?")."""
MAX_ERROR_CHARS = 1000
"""An error kept in the outbox and printed is cut to this: Apprise may quote a whole
response body."""
_DETAIL_LEVELS = frozenset({"DEBUG", "INFO"})
_DETAIL_PREFIXES = ("Socket Exception:", "Notification Exception:")
"""Of Apprise's DEBUG and INFO records, only these say why a delivery failed (refused,
timed out, a plugin's exception); the rest are payloads and progress."""
NO_SCHEME_HINT = published("e.g. mailto://, json://, slack://")
"""Our own example schemes: a channel value that is one of these words stays readable here."""
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_APPRISE_LOGGER = "apprise"

BodyFormat = Literal["text", "html"]
"""How a message's body is written: plain text, or HTML (a report as an e-mail body)."""

_load_lock = threading.Lock()
_loaded = False


@dataclass(frozen=True)
class DeliveryResult:
    """What one delivery attempt came to: ``ok``, or not and why (redacted, no secrets)."""

    ok: bool
    error: str = ""


def _load() -> None:
    """Import apprise with every plugin loaded and its logger kept to itself (once).

    Apprise loads all of its plugins the first time a URL is looked up (~0.3 s); one of
    them imports the deprecated ``imghdr`` module, a DeprecationWarning that is Apprise's
    to fix and that would otherwise fail a run under ``-W error``.
    """
    global _loaded  # noqa: PLW0603 - apprise is loaded once per process, lazily
    with _load_lock:
        if not _loaded:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="'imghdr' is deprecated", category=DeprecationWarning
                )
                from apprise.plugins import N_MGR

                # Looking a scheme up loads every plugin: pay for it here, warnings handled.
                _ = "json" in N_MGR
            apprise_logger = logging.getLogger(_APPRISE_LOGGER)
            # Not into upkeep's log: see the module docstring. The NullHandler keeps
            # Python's last-resort handler from printing the records to stderr instead.
            apprise_logger.propagate = False
            # Apprise logs why a connection failed (refused, timed out) only at DEBUG; the
            # per-call capture can keep it only if the logger lets DEBUG records through.
            apprise_logger.setLevel(logging.DEBUG)
            if not any(isinstance(h, logging.NullHandler) for h in apprise_logger.handlers):
                apprise_logger.addHandler(logging.NullHandler())
            _loaded = True


def _scheme(url: str) -> str | None:
    """Given a channel URL, return its scheme, or None if it has none fit to print.

    A value without ``scheme://`` may be a bare token pasted in by mistake: nothing of it
    is ever quoted.
    """
    match = _SCHEME.match(url.strip())
    return match.group(1).lower() if match else None


def validate_channel_url(url: str) -> str | None:
    """Given a channel's Apprise URL, return None if Apprise can build a service from it,
    else what is wrong, naming at most its scheme (never any other part of the URL)."""
    _load()
    import apprise
    from apprise.plugins import N_MGR

    if apprise.Apprise.instantiate(url) is not None:
        return None
    scheme = _scheme(url)
    if scheme is None:
        return f"not an Apprise URL (no scheme://, {NO_SCHEME_HINT})"
    if scheme not in N_MGR:
        return f"not an Apprise URL (scheme {scheme}:// is not one Apprise knows)"
    if not N_MGR[scheme].enabled:
        return (
            f"not an Apprise URL (scheme {scheme}:// needs a library that is not installed "
            "or a platform this is not)"
        )
    guide = getattr(N_MGR[scheme], "setup_url", None)
    see = f"; see {guide}" if isinstance(guide, str) and guide.startswith("https://") else ""
    return f"not an Apprise URL (scheme {scheme}://: the rest does not parse for it{see})"


def _private_values(plugin: NotifyBase) -> list[str]:
    """Given an Apprise service, return the values of the fields it declares private
    (passwords, tokens, API keys), so an error quoting one of them is masked."""
    found: list[str] = []
    declared: dict[str, dict[str, Any]] = {
        **getattr(plugin, "template_tokens", {}),
        **getattr(plugin, "template_args", {}),
    }
    for name, spec in declared.items():
        if not isinstance(spec, dict) or not spec.get("private"):
            continue
        value = getattr(plugin, str(spec.get("map_to", name)), None)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list | tuple | set):
            found.extend(item for item in value if isinstance(item, str))
    return found


def send(
    url: str,
    title: str,
    body: str,
    level: str,
    key: str,
    timeout_s: float = DELIVERY_TIMEOUT_S,
    redactor: Redactor | None = None,
    *,
    body_format: BodyFormat = "text",
    attachments: Sequence[Path] = (),
) -> DeliveryResult:
    """Given a channel's Apprise URL, a message (title, body, level: one of ``LEVELS``),
    its idempotency key and a timeout, deliver the message once and return the result.

    The key travels as ``Idempotency-Key`` and ``X-Upkeep-Key`` headers where the service
    has headers (webhooks, e-mail), and as a last ``ref: <key>`` line of the body for every
    service that is not a plain webhook. ``timeout_s`` is each socket's connect and read
    timeout. ``body_format="html"`` sends the body as HTML (an e-mail's HTML part; Apprise
    converts it for services that take text); ``attachments`` are files sent with it where
    the service takes attachments (e-mail). Never raises for a delivery problem: an invalid URL, a refused connection or
    a rejected message is ``ok=False`` with an error redacted by ``redactor`` and by the
    URL's own secrets.

    The call runs on the caller's thread: we give Apprise no overall deadline, because it
    would then send from its own pool of non-daemon threads, which the interpreter joins
    at exit. The socket timeouts bound each step, and ``run_blocking`` (the dispatcher)
    bounds the whole.
    """
    _load()
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return DeliveryResult(False, validate_channel_url(url) or "not an Apprise URL")
    masks = Redactor()
    if redactor is not None:
        masks.merge(redactor)
    masks.add(url)
    masks.add_url(url)
    # A connection error quotes the request's path and query, where a token may be.
    parts = urlsplit(url)
    masks.extend(part for part in (parts.path.rstrip("/"), parts.query) if part)
    masks.extend(_private_values(plugin))
    plugin.socket_connect_timeout = timeout_s
    plugin.socket_read_timeout = timeout_s
    headers = getattr(plugin, "headers", None)
    if isinstance(headers, dict):
        headers[IDEMPOTENCY_HEADER] = key
        headers[KEY_HEADER] = key
    if _scheme(url) not in WEBHOOK_SCHEMES:
        if body_format == "html":
            body = f"{body}\n<p>ref: {html.escape(key)}</p>"
        else:
            body = f"{body}\n\nref: {key}" if body else f"ref: {key}"
    notify_type = level if level in LEVELS else "info"
    notifier = apprise.Apprise()
    notifier.add(plugin)
    try:
        result = notifier.notify(
            body=body,
            title=title,
            notify_type=apprise.NotifyType(notify_type),
            body_format=apprise.NotifyFormat(body_format),
            log_level=logging.DEBUG,
            attach=apprise.AppriseAttachment([str(path) for path in attachments])
            if attachments
            else None,
        )
    except Exception as crash:  # noqa: BLE001 - a plugin bug is one failed delivery, not a crash
        return DeliveryResult(
            False, one_line(masks.redact(f"{type(crash).__name__}: {crash}"), MAX_ERROR_CHARS)
        )
    if result:
        return DeliveryResult(True)
    messages = list(
        dict.fromkeys(
            entry.message.strip()
            for entry in result.logs()
            if entry.level not in _DETAIL_LEVELS or entry.message.startswith(_DETAIL_PREFIXES)
        )
    )
    status = result.status.name.lower()
    error = "; ".join(message for message in messages if message) or (
        f"{plugin.service_name} did not take the message ({status})"
    )
    return DeliveryResult(False, one_line(masks.redact(_concise(error)), MAX_ERROR_CHARS))


_OS_ERROR = re.compile(r"\[Errno -?\d+\] ([^\"')\]]+)")
_READ_TIMEOUT = re.compile(r"Read timed out\.?(?: \(read timeout=[\d.]+\))?")


def _concise(error: str) -> str:
    """Given Apprise's error text, return its first sentence plus the operating system's
    reason when urllib3's wrapping hides it (``... [Errno 111] Connection refused``)."""
    reason = _OS_ERROR.search(error) or _READ_TIMEOUT.search(error)
    if reason is None:
        return error
    first = error.split(";", 1)[0].rstrip(". ")
    detail = reason.group(1) if reason.re is _OS_ERROR else reason.group(0)
    return f"{first}: {detail.strip()}"
