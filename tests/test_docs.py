"""The README stays a product page and the docs stay self-contained and complete.

Fast and offline: these read files only. The docs site itself is built by `make docs`
(`mkdocs build --strict`, which also fails on a broken link or an unresolvable `:::` reference).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
DOCS = ROOT / "docs"
DOC_PAGES = sorted(DOCS.glob("*.md"))

# Files outside the repository that the docs must never cite.
OUTSIDE = ("REFERENCE", "../shared", "benchmarks/notes", "shared/data")
# [text](target) and ![alt](target), the target up to a space or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _relative_links(path: Path) -> list[str]:
    """Link targets in a markdown file that point into the repository (no URL, no bare anchor)."""
    text = CODE_SPAN.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))  # code holds no links
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")]


def test_readme_is_at_most_400_lines():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"README.md has {lines} lines; move detail into docs/ and keep the README a product page"


@pytest.mark.parametrize("path", [README, CONTRIBUTING, *DOC_PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_cite_no_file_outside_the_repository(path: Path):
    text = path.read_text(encoding="utf-8")
    found = [word for word in OUTSIDE if word in text]
    assert not found, f"{path.relative_to(ROOT)} mentions {found}: state the fact in the docs' own words"


def test_the_docs_pages_exist():
    names = {p.name for p in DOC_PAGES}
    expected = {"index.md", "getting-started.md", "library.md", "pipeline.md", "operations.md", "reliability.md",
                "performance.md", "reference.md", "changelog.md"}
    assert expected <= names, f"missing docs pages: {sorted(expected - names)}"


def test_reference_documents_every_public_name():
    import setfit_core

    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    missing = [name for name in setfit_core.__all__ if not re.search(rf"\b{re.escape(name)}\b", reference)]
    assert not missing, f"docs/reference.md does not document {missing}"


def test_reference_blocks_use_the_defining_module():
    """A `::: module.Name` block for a public name names the module `_EXPORTS` says defines it."""
    import setfit_core

    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    paths = [line.split()[1] for line in reference.splitlines() if line.startswith("::: ")]
    blocks = {path.rsplit(".", 1)[1]: path.rsplit(".", 1)[0] for path in paths}
    wrong = {name: blocks[name] for name in setfit_core.__all__
             if name in blocks and blocks[name] != setfit_core._EXPORTS[name]}
    assert not wrong, f"docs/reference.md documents these from another module than _EXPORTS names: {wrong}"


@pytest.mark.parametrize("path", [README, CONTRIBUTING], ids=lambda p: p.name)
def test_relative_links_point_to_files_in_the_repository(path: Path):
    links = _relative_links(path)
    assert links, f"{path.name} has no relative links: the link check would check nothing"
    broken = [t for t in links if not (path.parent / t.split("#", 1)[0]).exists()]
    assert not broken, f"{path.name} links to files that do not exist: {broken}"


def test_readme_images_come_from_docs_img():
    images = [t for t in _relative_links(README) if t.lower().endswith((".png", ".jpg", ".svg", ".gif"))]
    assert all(t.startswith("docs/img/") for t in images), images

