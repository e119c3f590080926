"""README stays true: its configuration table is the settings' own, and it names the two commands."""
from tests.conftest import ROOT
from senti.server.settings import markdown_table

START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def test_configuration_table_matches_the_settings():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index(START) + len(START):readme.index(END)].strip()
    assert table == markdown_table(), "README's settings table is stale: paste `python -m senti.server.settings`"


def test_quick_start_is_make_run_and_make_test():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
