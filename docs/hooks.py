"""MkDocs hooks: the parts of the docs that are generated from the code at build time.

* ``<!-- floe:config-reference -->``: the configuration reference of every installed engine
  (``floe_compute.reference``, the same source as ``floe-compute config --schema``).
* ``<!-- floe:cli-help -->``: the ``--help`` of every ``floe-compute`` command.
* The Engines section of the navigation lists every ``docs/engines/*.md`` there is.
* ``floe.schema.json`` (the manifest's JSON Schema) is a file of the site.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ENGINES_FIRST = ("duckdb.md", "postgres.md")


def _title(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def on_config(config: Any) -> Any:
    engines_dir = Path(config["docs_dir"]) / "engines"
    pages = sorted(
        engines_dir.glob("*.md"),
        key=lambda p: (
            p.name not in ENGINES_FIRST,
            ENGINES_FIRST.index(p.name) if p.name in ENGINES_FIRST else 0,
            p.name,
        ),
    )
    for item in config["nav"]:
        if isinstance(item, dict) and "Engines" in item:
            item["Engines"] = [{_title(p): f"engines/{p.name}"} for p in pages]
    return config


def _cli_help() -> str:
    import argparse
    import os

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: the same text on every machine
    from floe_compute.cli import build_parser

    parser = build_parser()
    parts = ["```text", parser.format_help().rstrip(), "```"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                parts += ["", f"### floe-compute {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- floe:config-reference -->" in markdown:
        from floe_compute.reference import reference_markdown

        markdown = markdown.replace("<!-- floe:config-reference -->", reference_markdown(heading_level=2))
    if "<!-- floe:cli-help -->" in markdown:
        markdown = markdown.replace("<!-- floe:cli-help -->", _cli_help())
    return markdown


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    from floe_compute.reference import manifest_schema

    files.append(File.generated(config, "floe.schema.json", content=json.dumps(manifest_schema(), indent=2)))
    return files
