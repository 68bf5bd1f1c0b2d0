"""The README and the docs pages: one screen, commands that exist, links that resolve, and every figure of the
README found in the part of the results it links to."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
INLINE_LINK = re.compile(r"\]\(([^)\s]+)\)")
REFERENCE_LINK = re.compile(r"^\[([^\]]+)\]:\s*(\S+)", re.MULTILINE)
# A measured figure: a decimal (7.37, 15.57, 1.21) or a speed (279x). Counts such as "200 mixtures" are not figures.
FIGURE = re.compile(r"\d+\.\d+|\d+x\b")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> list[tuple[int, str, int]]:
    """``(level, slug, line index)`` of every heading outside code blocks."""
    found, in_code = [], False
    for index, line in enumerate(path.read_text().splitlines()):
        in_code ^= line.startswith("```")
        match = re.match(r"(#+) (.*)", line)
        if match and not in_code:
            found.append((len(match.group(1)), slug(match.group(2)), index))
    return found


def section(path: Path, anchor: str) -> str:
    """The text under the heading ``anchor`` up to the next heading of its level or higher."""
    lines = path.read_text().splitlines()
    marks = headings(path)
    for position, (level, name, start) in enumerate(marks):
        if name == anchor:
            end = next((index for other, _, index in marks[position + 1 :] if other <= level), len(lines))
            return "\n".join(lines[start:end])
    raise AssertionError(f"{path.name} has no heading #{anchor}")


def links(page: Path) -> list[str]:
    text = page.read_text()
    return INLINE_LINK.findall(text) + [target for _, target in REFERENCE_LINK.findall(text)]


def test_the_readme_fits_on_one_screen():
    lines = README.read_text().splitlines()
    assert len(lines) <= 70, f"README.md has {len(lines)} lines: move detail to a page under docs/"
    long = [index + 1 for index, line in enumerate(lines) if len(line) > 120]
    assert not long, f"README.md lines over 120 characters: {long}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO).as_posix())
def test_every_relative_link_resolves_to_a_file_and_heading(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in {name for _, name, _ in headings(resolved)}:
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_readme_figure_is_in_the_results_section_it_links_to():
    text = README.read_text()
    references = dict(REFERENCE_LINK.findall(text))
    checked = 0
    for line in text.splitlines():
        for name in re.findall(r"\]\[([^\]]+)\]", line):
            path, _, anchor = references[name].partition("#")
            source = section(REPO / path, anchor)
            prose = re.sub(r"\[[^\]]*\]\[[^\]]*\]", "", line)  # the figures, not the link's own text
            missing = [figure for figure in FIGURE.findall(prose) if figure not in source]
            assert not missing, f"README figures {missing} are not in {references[name]}:\n{line}"
            checked += len(FIGURE.findall(prose))
    assert checked >= 10  # the table's quality and speed figures


def test_the_readme_commands_are_the_scripts_ci_runs_and_flags_that_exist():
    text = README.read_text()
    assert "bash scripts/demo.sh" in text and "bash scripts/test.sh" in text
    assert "exec .venv/bin/deepclust demo" in (REPO / "scripts" / "demo.sh").read_text()
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()  # the test command is what CI runs
    from deepclust.cli import build_parser

    args = build_parser().parse_args(["separate", "--input", "recordings/", "--out", "separated/", "--speakers", "3"])
    assert (args.input, args.out, args.n_speakers) == ("recordings/", "separated/", 3)


def test_the_top_level_help_starts_with_commands_that_parse():
    import shlex

    from deepclust.cli import START_HERE, build_parser

    parser = build_parser()
    assert START_HERE in parser.format_help()
    commands = [
        line.strip().split("  ")[0] for line in START_HERE.splitlines() if line.strip().startswith("deepclust ")
    ]
    commands = [command for command in commands if "COMMAND" not in command]
    assert len(commands) == 3
    for command in commands:
        parser.parse_args(shlex.split(command)[1:])  # exits 2 on a flag or choice that does not exist
