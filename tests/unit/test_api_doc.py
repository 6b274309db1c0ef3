"""docs/api.md is generated from the method registry (app/api_doc.py): it must be current."""

from __future__ import annotations

from pathlib import Path

from lazarus.app import api_doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_docs_api_md_is_current() -> None:
    assert DOC.read_text() == api_doc.render(), (
        "docs/api.md is stale: run `python -m lazarus.app.api_doc > docs/api.md`"
    )


def test_the_cli_commands_of_the_issue_are_served() -> None:
    text = api_doc.render()
    for method in (
        "one.userpool.info",
        "one.grouppool.info",
        "one.zonepool.info",
        "one.vm.update",
        "one.vm.rename",
        "one.vm.lock",
        "one.host.monitoring",
        "one.vmpool.accounting",
        "one.templatepool.info",
        "one.vnpool.info",
    ):
        assert f"| `{method}` | yes |" in text, method
