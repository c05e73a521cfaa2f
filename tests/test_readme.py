"""The README documents what the code does: its schema table is generated from the code."""

from pathlib import Path

from dermsight.manifest import schema_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_schema_matches_the_code():
    text = README.read_text()
    start = text.index("<!-- schema:start -->") + len("<!-- schema:start -->")
    end = text.index("<!-- schema:end -->")
    assert text[start:end].strip() == schema_markdown().strip(), (
        "README schema is stale: regenerate it from `dermsight schema`")


def test_quickstart_has_exactly_two_commands():
    text = README.read_text()
    block = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert [c.split("#")[0].strip() for c in commands] == ["make quickstart", "make test"]
