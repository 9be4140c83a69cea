"""Every path the README, the docs and the examples point at exists in the repository.

A fresh clone has nothing beside the repository (no ``../shared``), so a link or a path
written in backticks that leaves it, or names a file that is not there, is a broken
promise to a new user. Same-file anchors (``#targets``) must name a heading.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCANNED = sorted(
    {
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("examples/**/*.md"),
        *ROOT.glob("examples/**/*.yaml"),
        *ROOT.glob("examples/**/.env.example"),
    }
)
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TOP_DIRECTORIES = "docs|examples|tests|scripts|src|benchmarks|shared|seeds"
REPOSITORY_PATH = re.compile(
    rf"(?<![\w./-])((?:\.\.?/)*(?:{TOP_DIRECTORIES})/[\w.@/-]*[\w/])|(?<![\w/-])(\.\./[\w./-]+)"
)
PLACEHOLDER = re.compile(r"[<>*{}$]|\.\.\.|…")


def _slug(heading: str) -> str:
    """Given a Markdown heading, return the anchor GitHub gives it."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {_slug(match) for match in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def problems_in(path: Path, root: Path = ROOT) -> list[str]:
    """Given a file of the repository, return (sorted, once each) every link or path in it
    that does not resolve to a file or directory inside ``root``, and every same-file
    anchor naming no heading."""
    text = path.read_text(encoding="utf-8")
    found: list[str] = []
    targets: list[tuple[str, Path]] = []
    for target in MARKDOWN_LINK.findall(text) if path.suffix == ".md" else []:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # a URL: https://, mailto:
        file_part, _, anchor = target.partition("#")
        if not file_part:
            if _slug(anchor) not in _anchors(path):
                found.append(f"{target}: no such heading")
            continue
        targets.append((target, path.parent / file_part))
    for match in REPOSITORY_PATH.finditer(text):
        written = match.group(1) or match.group(2)
        if PLACEHOLDER.search(written):
            continue
        written = written.rstrip(".")
        # Written from the repository's root, as commands run (`make`, `upkeep -c`), or
        # relative to the file itself.
        candidates = [root / written, path.parent / written]
        if not any(_inside(candidate, root) and candidate.exists() for candidate in candidates):
            found.append(f"{written}: not in the repository")
    for written, resolved in targets:
        if not _inside(resolved, root) or not resolved.exists():
            found.append(f"{written}: not in the repository")
    return sorted(set(found))


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def test_every_scanned_file_is_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in SCANNED}
    assert {"README.md", "docs/config.md", "docs/api.md", "examples/README.md"} <= names
    assert sum(name.endswith("upkeep.yaml") for name in names) == 5


@pytest.mark.parametrize("path", SCANNED, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_links_and_paths_stay_in_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text
    assert problems_in(path) == []


def test_a_path_outside_the_repository_or_missing_is_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real.md").write_text("# Real heading\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "See [the guide](../shared/seeds/000.txt), [real](docs/real.md#real-heading),\n"
        "[gone](docs/gone.md), `docs/missing.md`, `docs/real.md`, the spec in\n"
        "`../shared/SPEC.md`, [top](#top), `examples/<x>/upkeep.yaml` and\n"
        "[a site](https://example.org/a).\n\n# Top\n",
        encoding="utf-8",
    )
    assert problems_in(page, tmp_path) == [
        "../shared/SPEC.md: not in the repository",
        "../shared/seeds/000.txt: not in the repository",
        "docs/gone.md: not in the repository",
        "docs/missing.md: not in the repository",
    ]
