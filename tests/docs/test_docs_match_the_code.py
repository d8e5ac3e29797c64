"""Hand-written tables in the docs that mirror constants of the code, checked against them."""

from __future__ import annotations

import re
from pathlib import Path

from floe_compute import cli

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_exit_status_of_the_cli_is_documented() -> None:
    page = (DOCS / "cli.md").read_text()
    section = page.split("## Exit status", 1)[1].split("\n## ", 1)[0]
    documented = {int(n) for n in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    actual = {
        value for name, value in vars(cli).items() if name.startswith("EXIT_") and isinstance(value, int)
    }
    assert documented == actual


def test_every_engine_page_is_linked_from_the_readme() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    missing = [
        p.name for p in sorted((DOCS / "engines").glob("*.md")) if f"docs/engines/{p.name}" not in readme
    ]
    assert missing == [], f"add these to the README's Engines list: {missing}"
