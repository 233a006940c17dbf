"""The README stays a short guide, and its figures stay those of docs/.

STYLE.md point 14: the README holds at most about 300 lines; run-by-run
figures, investigations and their history live in docs/, dated, with their
commands. These tests keep it so: the README's length, every relative link of
the README and of docs/*.md (file and heading), and every figure of the
README's Results section, which must be written in a page of docs/ that its
subsection links to, so a README figure cannot drift from its documented
source.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.paths import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 300

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A figure: 0.1725, 10,629, 1.64 (in 1.64x), 2026 (in 2026-12-03); not the 99 of p99.
FIGURE = re.compile(r"(?<![\w.,])\d+(?:,\d{3})*(?:\.\d+)?")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """``text`` without its fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    found: set[str] = set()
    for line in prose(path.read_text()).splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading[1].strip().lower()).replace(" ", "-")
        base, n = slug, 0
        while slug in found:  # a repeated heading gets -1, -2, ...
            n += 1
            slug = f"{base}-{n}"
        found.add(slug)
    return found


def relative_links(text: str) -> list[str]:
    """The links of Markdown ``text`` that point into the repository (code left out)."""
    links = LINK.findall(prose(text))
    return [link for link in links if not re.match(r"[a-z][a-z+.-]*:", link)]


def section(text: str, heading: str) -> str:
    """The lines under ``heading`` up to the next heading of its level or higher (code skipped)."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    assert heading in lines, f"no heading {heading!r}"
    start = lines.index(heading) + 1
    in_code = False
    for end in range(start, len(lines)):
        if lines[end].startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(rf"#{{1,{level}}}\s", lines[end]):
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def tables(text: str) -> list[list[str]]:
    """The Markdown tables of ``text``, each as its lines."""
    found: list[list[str]] = []
    previous = False
    for line in prose(text).splitlines():
        row = line.startswith("|")
        if row and not previous:
            found.append([])
        if row:
            found[-1].append(line)
        previous = row
    return found


def test_the_readme_is_at_most_300_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines; keep it to {MAX_README_LINES} and move the rest to docs/"
    )


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_a_file_and_heading_that_exist(path):
    broken = []
    for link in relative_links(path.read_text()):
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link}: no file {file.relative_to(REPO)}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{link}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert not broken, f"{path.relative_to(REPO)}: broken links: {broken}"


RESULTS = "## Results"
SUBSECTIONS = ("### Quality", "### Speed")


def test_the_results_are_one_table_for_quality_and_one_for_speed_each_with_its_command():
    results = section(README.read_text(), RESULTS)
    assert len(tables(results)) == 2, "README Results: one table for quality, one for speed"
    for heading in SUBSECTIONS:
        part = section(results, heading)
        assert len(tables(part)) == 1, f"README {heading}: one table"
        assert "```sh\n" in part, (
            f"README {heading}: no ```sh block with the command that reproduces its table"
        )


@pytest.mark.parametrize("heading", SUBSECTIONS)
def test_every_results_figure_is_written_in_a_doc_the_section_links_to(heading):
    part = section(section(README.read_text(), RESULTS), heading)
    sources = {
        (README.parent / link.partition("#")[0]).resolve()
        for link in relative_links(part)
        if link.startswith("docs/")
    }
    assert sources, f"README {heading} links to no page of docs/ for its figures"
    documented = {figure for source in sources for figure in FIGURE.findall(source.read_text())}
    missing = sorted(set(FIGURE.findall(prose(part))) - documented, key=lambda f: (len(f), f))
    assert not missing, (
        f"README {heading}: figures in none of {sorted(s.name for s in sources)}: {missing}; "
        "write them there first, with their date and command"
    )
