"""The README's API table is generated from the registry and must match it."""

from __future__ import annotations

from pathlib import Path

from pybroker.broker.api_table import END, START, markdown_table, render
from pybroker.broker.handlers.registry import supported_apis

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_current() -> None:
    text = README.read_text()
    assert START in text and END in text
    assert render(text) == text, "run: python -m pybroker.broker.api_table --write"


def test_table_lists_every_registered_api() -> None:
    table = markdown_table()
    for spec in supported_apis():
        assert f"| {spec.name} | {spec.api_key} | {spec.min_version}-{spec.max_version} |" in table
    names = {s.name for s in supported_apis()}
    assert {"ApiVersions", "Metadata", "Produce", "Fetch", "ListOffsets"} <= names
