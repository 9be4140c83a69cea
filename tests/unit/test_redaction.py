"""Finding the passwords in URLs and DSNs, and showing URLs without them."""

from __future__ import annotations

import pytest

from upkeep.redaction import Redactor, display_url, url_password, url_passwords


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:Pa55-word@db/x", ["Pa55-word"]),
        ("postgresql://app@db/x?password=Pa55-word&sslmode=disable", ["Pa55-word"]),
        ("postgresql://db/x?user=app&password=Pa55-word", ["Pa55-word"]),
        (
            "postgresql://db/x?sslpassword=Key-Pa55&password=Pa55%26word",
            ["Key-Pa55", "Pa55&word", "Pa55%26word"],
        ),
        ("host=db user=app password=Pa55-word sslmode=disable", ["Pa55-word"]),
        ("host=db password='Pa55 word' sslpassword=Key-Pa55", ["Pa55 word", "Key-Pa55"]),
        ("postgresql://app@db/x?to=oncall@example.com", []),
        ("http://db:8080/x?to=oncall@example.com", []),
        # Unencoded "#", "/" or "?": libpq still reads everything up to the "@".
        ("postgresql://app:S3cr#t-pw@db/x", ["S3cr#t-pw"]),
        ("postgresql://app:S3cr/t-pw@db/x", ["S3cr/t-pw"]),
        ("postgresql://app:S3cr?t-pw@db/x", ["S3cr?t-pw"]),
        ("sqlite:///.upkeep/upkeep.db", []),
    ],
)
def test_every_password_of_a_url_or_dsn_is_found(url: str, expected: list[str]) -> None:
    assert sorted(url_passwords(url)) == sorted(expected)
    assert url_password(url) == (url_passwords(url)[0] if expected else None)


def test_a_query_password_is_masked_once_added() -> None:
    redactor = Redactor()
    redactor.add_url("postgresql://app@db/x?password=Pa55%26word&sslpassword=Key-Pa55")
    assert redactor.redact("Pa55%26word Pa55&word Key-Pa55 db") == "*** *** *** db"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:Pa55-word@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgresql://app@db/x?password=Pa55-word", "postgresql://app@db/x"),
        ("postgresql://db/x?user=app&password=Pa55-word#frag", "postgresql://db/x"),
        ("sqlite:////var/lib/upkeep/upkeep.db", "sqlite:////var/lib/upkeep/upkeep.db"),
        ("sqlite:///relative.db", "sqlite:///relative.db"),
        # An unencoded "/" or "#" in the password: where it ends cannot be told.
        ("postgresql://app:Pa55/word@db/x", "postgresql://***"),
        ("postgresql://app:Pa55#word@db/x", "postgresql://***"),
        ("host=db password=Pa55-word dbname=x", "host=db password=*** dbname=x"),
    ],
)
def test_urls_are_shown_without_passwords_or_query(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_a_secret_cut_off_at_the_end_is_masked() -> None:
    redactor = Redactor()
    redactor.add("Sup3rSecretValue")
    assert redactor.redact_cut("token=Sup3rSec") == "token=***"
    assert redactor.redact_cut("token=Sup3rSecretValue and Su") == "token=*** and Su"
    assert redactor.redact_cut("nothing secret here") == "nothing secret here"
