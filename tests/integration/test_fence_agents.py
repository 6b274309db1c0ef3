"""Real ClusterLabs agents against real BMC emulators: fence_redfish -> sushy-tools (HTTPS),
fence_ipmilan -> virtualbmc, both acting on chassis-power domains of a test libvirtd."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.bmc import bmc_set
from lazarus.domain.template import Template, Vector
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.fence.agent import SubprocessAgentRunner
from lazarus.ha.fencing import FenceOutcome, FencePolicy, fence, fence_levels
from lazarus.lab.bmc import BmcSet

pytestmark = pytest.mark.root
HOSTS = ["hv1", "hv2", "hv3"]
FAST = FencePolicy(attempts=2, timeout=15, backoff=0.1, total_timeout=60)


@pytest.fixture(scope="module")
def bmcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BmcSet]:
    yield from bmc_set(tmp_path_factory.mktemp("fence"), HOSTS)


@pytest.fixture(autouse=True)
def all_on(bmcs: BmcSet) -> None:
    for host in HOSTS:
        bmcs.power_on(host)


def run(host: str, vectors: list[dict[str, str]], policy: FencePolicy = FAST) -> FenceOutcome:
    devices = fence_levels(Template([("FENCE", Vector(list(v.items()))) for v in vectors]))
    return asyncio.run(fence(host, devices, SubprocessAgentRunner(), SystemClock(), policy))


def assert_no_secret(bmcs: BmcSet, outcome: FenceOutcome, logs: str) -> None:
    assert bmcs.password not in repr(outcome)
    assert bmcs.password not in logs


@pytest.mark.parametrize("kind", ["redfish", "ipmi"])
def test_fence_powers_the_chassis_off(bmcs: BmcSet, kind: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    outcome = run("hv1", [bmcs.fence_attributes("hv1", kind)])
    assert outcome.ok, outcome.summary
    assert [a.result for a in outcome.attempts] == ["ok", "off"]
    assert bmcs.power_state("hv1") == "off"
    assert bmcs.wait_power("hv1", "off", 10)
    assert bmcs.power_state("hv2") == "on"  # systems_uri / port picked the right chassis
    assert_no_secret(bmcs, outcome, caplog.text)


@pytest.mark.parametrize("kind", ["redfish", "ipmi"])
def test_wrong_password_fails_without_power_change(
    bmcs: BmcSet, kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-" + bmcs.password)
    attrs = bmcs.fence_attributes("hv2", kind) | {"PASSWORD_FILE": str(wrong)}
    outcome = run("hv2", [attrs])
    assert not outcome.ok
    assert [a.result for a in outcome.attempts] == ["failed", "failed"]
    assert bmcs.power_state("hv2") == "on"
    assert "not-" + bmcs.password not in repr(outcome) + caplog.text
    assert_no_secret(bmcs, outcome, caplog.text)


def test_second_level_fences_when_the_first_fails(bmcs: BmcSet, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("nope")
    first = bmcs.fence_attributes("hv3", "redfish") | {"PASSWORD_FILE": str(wrong)}
    outcome = run("hv3", [first, bmcs.fence_attributes("hv3", "ipmi")])
    assert outcome.ok and outcome.level == 2, outcome.summary
    assert bmcs.power_state("hv3") == "off"


def test_unreachable_bmc_fails_within_the_bound(bmcs: BmcSet) -> None:
    # A socket that accepts connections and never answers: TLS hangs like a dead BMC.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        port = black_hole.getsockname()[1]
        attrs = bmcs.fence_attributes("hv1", "redfish") | {"PORT": str(port)}
        policy = FencePolicy(attempts=3, timeout=1.5, backoff=0.1, total_timeout=4)
        outcome = run("hv1", [attrs], policy)
    assert not outcome.ok
    assert {a.result for a in outcome.attempts} == {"timeout"}
    assert outcome.duration <= policy.total_timeout + policy.grace
    assert bmcs.power_state("hv1") == "on"


def test_refused_port_is_a_failure(bmcs: BmcSet) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    attrs = bmcs.fence_attributes("hv1", "redfish") | {"PORT": str(port)}
    outcome = run("hv1", [attrs])
    assert not outcome.ok and outcome.attempts[0].result == "failed"


def test_template_text_round_trip(bmcs: BmcSet) -> None:
    attrs = bmcs.fence_attributes("hv2", "redfish")
    text = "FENCE = [ " + ", ".join(f'{k} = "{v}"' for k, v in attrs.items()) + " ]"
    devices = fence_levels(Template.parse(text))
    outcome = asyncio.run(fence("hv2", devices, SubprocessAgentRunner(), SystemClock(), FAST))
    assert outcome.ok and bmcs.power_state("hv2") == "off"
