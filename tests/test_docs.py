"""The README and docs/ tell the truth about the measured figures and about themselves: each
table that benchmarks/tables.py prints is pasted exactly as it prints it from the committed
results (benchmarks/results/), every such table appears somewhere, and the links between the
pages lead to files that exist."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load_tables():
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "benchmarks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = load_tables()
MARKER = re.compile(r"^<!-- python benchmarks/tables\.py (\w+) -->$", re.M)


def pasted(text: str) -> list[tuple[str, str]]:
    """Each marker's table name and the text after the marker line, up to the next heading,
    marker or end of the page."""
    out = []
    for m in MARKER.finditer(text):
        rest = text[m.end() + 1:]
        end = re.search(r"^(#|<!-- python benchmarks)", rest, re.M)
        out.append((m.group(1), rest[:end.start()] if end else rest))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_pasted_table_is_what_tables_py_prints(page):
    for name, text in pasted(page.read_text()):
        assert name in tables.TABLES, f"{page.name}: no table {name!r} in benchmarks/tables.py"
        printed = tables.TABLES[name]() + "\n"
        assert text.startswith(printed), (
            f"{page.name}: the {name} table differs from `python benchmarks/tables.py {name}`; paste its output "
            f"rather than editing the table")


def test_every_table_of_tables_py_is_pasted_somewhere():
    names = {name for page in PAGES for name, _ in pasted(page.read_text())}
    assert names == set(tables.TABLES)


def test_an_edited_table_is_caught():
    """What the test above relies on: one figure changed in a pasted table is found."""
    printed = tables.TABLES["distributed"]()
    page = f"{tables.marker('distributed')}\n{printed}\n\nprose\n"
    assert pasted(page) == [("distributed", printed + "\n\nprose\n")]
    edited = page.replace("5.77", "6.77")
    assert edited != page and not pasted(edited)[0][1].startswith(printed + "\n")


def test_links_between_pages_lead_somewhere():
    """Relative links (pages, pictures) in the README and docs/ name files that exist, and the
    README links every page of docs/."""
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert not missing, missing
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_the_readme_is_short():
    """What a newcomer reads first; the rest is in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) < 250
