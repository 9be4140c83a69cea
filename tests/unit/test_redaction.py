"""Finding the passwords in URLs and DSNs, and showing URLs without them."""

from __future__ import annotations

import pytest

from upkeep.core.redaction import (
    Redactor,
    display_url,
    published,
    url_password,
    url_passwords,
)


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


PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgK0lPb1J5mZ8xQ2Vd\n"
    "hRb3fE9yW1cTqk7QeVb2nC2hRANCAAQhT2cM3lq8jFQe2c0Vn6vQyFz0pQ2aH1Wc\n"
    "Xy9=\n"
    "-----END PRIVATE KEY-----"
)
BODY = PEM.splitlines()[1:-1]


def test_each_line_of_a_multi_line_secret_is_masked_on_its_own() -> None:
    redactor = Redactor()
    redactor.add(PEM)
    assert redactor.redact(PEM) == "***"
    # One line printed alone, the key indented, with CRLF, or inside a JSON string.
    assert redactor.redact(f"line: {BODY[1]}") == "line: ***"
    indented = "\n".join(f"    {line}" for line in PEM.splitlines())
    assert redactor.redact(indented).split("\n")[1:4] == ["    ***"] * 3
    assert all(line not in redactor.redact(PEM.replace("\n", "\r\n")) for line in BODY)
    assert all(line not in redactor.redact(PEM.replace("\n", "\\n")) for line in BODY)


def test_armor_and_blank_lines_of_a_multi_line_secret_are_not_secrets() -> None:
    redactor = Redactor()
    redactor.add(PEM + "\n\n  \nok\n")
    assert redactor.redact("-----BEGIN PRIVATE KEY-----") == "-----BEGIN PRIVATE KEY-----"
    assert redactor.redact("is it ok") == "is it ok"


def test_a_secret_line_cut_where_output_stops_is_masked() -> None:
    redactor = Redactor()
    redactor.add(PEM)
    cut = PEM[:100]  # `head -c 100 key.pem`: armor, a whole line, the start of the next
    masked = redactor.redact_cut(cut)
    assert masked == "-----BEGIN PRIVATE KEY-----\n***\n***"
    assert redactor.redact_cut(cut + "\n") == "-----BEGIN PRIVATE KEY-----\n***\n***\n"
    # A cut inside a UTF-8 character leaves U+FFFD after the secret's beginning.
    redactor.add("pässwörd-long")
    assert redactor.redact_cut("x pässw\ufffd") == "x ***\ufffd"


# --- what is masked where: every occurrence, our own hints never ---------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("env=prod mode=json", "env=*** mode=***"),
        ("json://hook prod.", "***://hook ***."),
        # Glued to other text: a short password after a flag, URL-encoded, before a byte.
        ("mysql -uroot -phunter22", "mysql -uroot -p***"),
        ("password%3Dhunter22&x=1", "password%3D***&x=1"),
        ("\x00hunter22X", "\x00***X"),
        # A common word inside a longer one is garbled rather than risk a secret showing.
        ("production", "***uction"),
        ('"a\ns3cr3t"', '"a\n***"'),
    ],
)
def test_a_short_secret_is_masked_wherever_it_occurs(text: str, masked: str) -> None:
    """Masking only whole tokens printed ``-phunter22``: a secret next to a letter or digit
    showed in run output, JSON and the stored record."""
    redactor = Redactor()
    redactor.extend(["prod", "json", "s3cr3t", "hunter22"])
    assert redactor.redact(text) == masked


def test_a_long_secret_is_masked_wherever_it_occurs() -> None:
    redactor = Redactor()
    redactor.add("Tr0ub4dor-and-3")
    assert redactor.redact("xTr0ub4dor-and-3y") == "x***y"


def test_overlapping_secrets_are_masked_whole() -> None:
    redactor = Redactor()
    redactor.extend(["alpha-bravo-charlie", "charlie-delta-echo"])
    # The regex alternation masked the first and printed "-delta-echo".
    assert redactor.redact("[alpha-bravo-charlie-delta-echo]") == "[***]"


def test_a_published_hint_is_never_rewritten_but_the_secret_elsewhere_is() -> None:
    hint = published("e.g. alpha://, bravo://, slack://")
    redactor = Redactor()
    redactor.extend(["slack", "bravo://, slack"])
    text = f"not a URL ({hint}); you wrote slack"
    assert redactor.redact(text) == f"not a URL ({hint}); you wrote ***"
    # An occurrence that extends past the published text is masked.
    redactor.add("slack://) x")
    assert redactor.redact(f"({hint}) x") == "(e.g. alpha://, bravo://, ***"
    with pytest.raises(ValueError, match="characters"):
        published("e.g. x")
