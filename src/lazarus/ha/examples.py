"""The hook templates Lazarus ships, installed with the package (src/lazarus/hooks/examples/;
the source tree also shows them as share/examples). The demo, the simulator and the tests use
these files, so what they exercise is exactly what operators create."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "hooks" / "examples"
ERROR_HOOK = EXAMPLES / "host_hooks" / "error_hook"


def error_hook_text() -> str:
    """The shipped HA hook template (NAME host_error, HOST/ERROR, ft/host_error -m -p 5)."""
    return ERROR_HOOK.read_text(encoding="utf-8")


def error_hook_arguments() -> str:
    """The shipped HA hook's ARGUMENTS ("$TEMPLATE -m -p 5"): the lab, its tests and
    bench/rto.py register the hook with these, so "defaults" means what operators get."""
    from lazarus.domain.template import Template

    return Template.parse(error_hook_text()).get("ARGUMENTS") or "$TEMPLATE -m -p 5"
