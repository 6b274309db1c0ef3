"""The readers of the FENCE attribute agree: ha/fencing.py's fence_levels is the only one.

The same FENCE template is read four ways, which must give the same levels (agent, params,
password) or the same FenceConfigError message:

- `text`: fence_levels(Template.parse(text)), the template language;
- `fence_host`: app/fence_host.py on the HOST document of one.host.info (through the real API
  method, which masks the password), and on lazarus.host.fencecreds' answer when it is masked;
- `fencecreds`: the unmasked levels of lazarus.host.fencecreds alone;
- `agent_fencer`: ha/fencers.py on the unmasked HOST document, with a runner that records what
  each level's agent gets (every off fails, so every level runs once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import defusedxml.ElementTree as SafeET
import pytest

from helpers.core import Harness
from lazarus.api.methods import Api
from lazarus.api.xmlrpc import CallContext
from lazarus.app.fence_host import masked, read_host_id
from lazarus.domain.entities import User
from lazarus.domain.template import Template
from lazarus.domain.xml import template_xml
from lazarus.drivers.clock import SystemClock
from lazarus.ha.fencers import agent_fencer
from lazarus.ha.fencing import FenceConfigError, FencePolicy, fence_levels, fence_template
from lazarus.ports.fence import AgentResult

CTX = CallContext(User(0, "oneadmin", "x"), "lazarus.host.fencecreds", "test")
KEY = "k" * 32
TEMPLATES = {
    "two-levels": """
        FENCE = [ AGENT = "fence_redfish", IP = "127.0.0.1", PORT = "8000", USERNAME = "admin",
                  PASSWORD_FILE = "{pw}", OPTIONS = "ssl_insecure=1 systems_uri=/r/v1/S/x" ]
        FENCE = [ AGENT = "fence_ipmilan", IP = "10.0.0.9", PASSWORD = "lit", PLUG = "p1",
                  LANPLUS = "1", OPTIONS = "power-wait=0 verbose" ]
        ROOT_PASSWORD = "other"
    """,
    "three-levels": """
        FENCE = [ AGENT = "fence_a", IP = "a" ]
        FENCE = [ AGENT = "fence_b", OPTIONS = "x=1 -y=2" ]
        FENCE = [ AGENT = "fence_c", PASSWORD = "c-pw", PASSWORD_FILE = "{pw}" ]
    """,
    "password": 'FENCE = [ AGENT = "fence_ipmilan", PASSWORD = "pw-1", USERNAME = "u" ]',
    "password-file": 'FENCE = [ AGENT = "fence_ipmilan", PASSWORD_FILE = "{pw}" ]',
    "missing-agent": 'FENCE = [ AGENT = "fence_a" ]\nFENCE = [ IP = "1.2.3.4" ]',
    "bad-agent": 'FENCE = [ AGENT = "/usr/sbin/fence_x", PASSWORD = "p" ]',
    "unreadable-pw": 'FENCE = [ AGENT = "fence_x", PASSWORD_FILE = "/nonexistent/pw" ]',
    "empty-pw-file": 'FENCE = [ AGENT = "fence_a" ]\nFENCE = [ AGENT = "fence_b", '
                     'PASSWORD_FILE = "{empty}" ]',
    "options-action": 'FENCE = [ AGENT = "fence_x", OPTIONS = "action=on", PASSWORD = "p" ]',
    "options-password": 'FENCE = [ AGENT = "fence_x", OPTIONS = "password=x" ]',
    "options-bad": 'FENCE = [ AGENT = "fence_x", OPTIONS = "9x=1" ]',
    "action-attribute": 'FENCE = [ AGENT = "fence_x", ACTION = "on" ]',
    "not-a-vector": 'FENCE = "fence_x"',
}

Levels = list[tuple[int, str, dict[str, str]]] | str  # (level, agent, off params) or the error


def by_text(template: Template) -> Levels:
    try:
        return [(d.level, d.agent, d.agent_params("off")) for d in fence_levels(template)]
    except FenceConfigError as exc:
        return str(exc)


def by_document(fence: Template) -> Levels:
    return by_text(fence)


class Recorder:
    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, str]]] = []

    async def run(self, agent: str, params: dict[str, str], timeout: float) -> AgentResult:
        self.runs.append((agent, dict(params)))
        return AgentResult(1, "", "ERROR: no")


def by_agent_fencer(host_xml: str) -> Levels:
    recorder = Recorder()
    fencer = agent_fencer(recorder, SystemClock(), FencePolicy(attempts=1, backoff=0))
    ok, output = asyncio.run(fencer(host_xml))
    assert not ok
    if not recorder.runs:
        return output
    return [(n, agent, params) for n, (agent, params) in enumerate(recorder.runs, start=1)]


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    with Harness(hosts=1, start=False) as h:
        yield h


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_the_readers_agree(name: str, tmp_path: Path, harness: Harness) -> None:
    pw, empty = tmp_path / "node.pw", tmp_path / "empty.pw"
    pw.write_text("file-pw\n")
    empty.write_text("\n")
    template = Template.parse(TEMPLATES[name].format(pw=pw, empty=empty))
    expected = by_text(template)

    host_id = harness.host_id("node1")
    old = Template([(n, v) for n, v in harness.store.host(host_id).template.items
                    if n != "FENCE"])  # fmt: skip
    harness.inv.update_host(host_id, Template([*old.items, *template.items]), False)
    api = Api(harness.controller, fence_key=KEY)

    host_doc = api.host_info(CTX, host_id)
    creds = fence_template(SafeET.fromstring(api.host_fencecreds(CTX, host_id, KEY)))
    _, read_id, fence_attrs = read_host_id(host_doc.encode())
    assert read_id == host_id
    if masked(fence_attrs):  # as fence_host does: the real levels from fencecreds
        fence_attrs = creds
    readers = {"fence_host": by_document(fence_attrs)}
    if template.vectors("FENCE") == template.values("FENCE"):  # fencecreds has vectors only
        readers["fencecreds"] = by_document(creds)
    unmasked = f"<HOST><ID>{host_id}</ID><NAME>node1</NAME>{template_xml('TEMPLATE', template)}"
    readers["agent_fencer"] = by_agent_fencer(unmasked + "</HOST>")
    for reader, got in readers.items():
        assert got == expected, f"{reader} reads {name} differently"
    if isinstance(expected, list):
        assert expected, name
        assert all("action" in params for _, _, params in expected)


def test_the_cases_cover_levels_errors_and_both_passwords(tmp_path: Path) -> None:
    pw = tmp_path / "node.pw"
    pw.write_text("file-pw\n")
    two = by_text(Template.parse(TEMPLATES["two-levels"].format(pw=pw, empty="")))
    assert isinstance(two, list) and [agent for _, agent, _ in two] == ["fence_redfish",
                                                                       "fence_ipmilan"]
    assert two[0][2]["password"] == "file-pw" and two[1][2]["password"] == "lit"
    assert two[1][2]["power_wait"] == "0" and two[1][2]["verbose"] == "1"
    three = by_text(Template.parse(TEMPLATES["three-levels"].format(pw=pw, empty="")))
    assert isinstance(three, list) and three[2][2]["password"] == "file-pw"  # the file wins
    for name, message in [("missing-agent", "FENCE level 2: missing AGENT"),
                          ("options-action", "OPTIONS may not set action"),
                          ("not-a-vector", "FENCE must be a vector")]:
        got = by_text(Template.parse(TEMPLATES[name]))
        assert isinstance(got, str) and message in got, name
