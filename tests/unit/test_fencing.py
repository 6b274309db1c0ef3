"""ha/fencing.py against a scripted fake runner and the SimAgentRunner, in virtual time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from lazarus.domain.errors import PermanentDriverError
from lazarus.domain.template import Template
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop
from lazarus.drivers.fence.sim import SimAgentRunner, SimFault
from lazarus.ha.fencing import (
    FenceConfigError,
    FenceDevice,
    FenceOutcome,
    FencePolicy,
    agent_message,
    fence,
    fence_levels,
    redact,
)
from lazarus.ports.fence import AgentResult

SECRET = "s3cr3t-Pa55"
ON = AgentResult(0, "Status: ON\n", "")
OFF = AgentResult(2, "Status: OFF\n", "")
OK = AgentResult(0, "Success: Powered OFF\n", "")
FAIL = AgentResult(1, "", f"2026-01-01 00:00:00,000 ERROR: login failed for password {SECRET}\n")
HANG = "hang"


class FakeRunner:
    """Answers from a script per (agent, action); records (virtual time, agent, action)."""

    def __init__(self, clock: VirtualClock, script: Mapping[tuple[str, str], list[Any]]) -> None:
        self.clock = clock
        self.script = script
        self.calls: list[tuple[float, str, str, float]] = []

    async def run(self, agent: str, params: Mapping[str, str], timeout: float) -> AgentResult:
        self.calls.append((self.clock.monotonic(), agent, params["action"], timeout))
        answers = self.script[(agent, params["action"])]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer == HANG:
            await self.clock.sleep(timeout)
            return AgentResult(-9, "", "", timed_out=True)
        if answer == "forever":
            await self.clock.sleep(10_000)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, AgentResult)
        return answer


def dev(level: int, agent: str = "fence_a") -> FenceDevice:
    return FenceDevice(level, agent, (("ip", "10.0.0.1"),), password=SECRET)


def run_fence(script: Mapping[tuple[str, str], list[Any]], devices: list[FenceDevice],
              policy: FencePolicy | None = None) -> tuple[FenceOutcome, FakeRunner]:
    loop = VirtualEventLoop()
    clock = VirtualClock(loop)
    runner = FakeRunner(clock, script)
    try:
        outcome = loop.run_until_complete(fence("node1", devices, runner, clock, policy))
    finally:
        loop.close()
    return outcome, runner


def test_off_then_status_off_is_success() -> None:
    outcome, runner = run_fence({("fence_a", "off"): [OK], ("fence_a", "status"): [OFF]},
                                [dev(1)])
    assert outcome.ok and outcome.level == 1
    assert [(c[1], c[2]) for c in runner.calls] == [("fence_a", "off"), ("fence_a", "status")]
    assert [a.result for a in outcome.attempts] == ["ok", "off"]
    assert "fenced" in outcome.summary and "level 1" in outcome.summary


def test_status_on_after_off_fails_the_level_and_next_level_is_tried() -> None:
    script = {("fence_a", "off"): [OK], ("fence_a", "status"): [ON],
              ("fence_b", "off"): [OK], ("fence_b", "status"): [OFF]}
    outcome, runner = run_fence(script, [dev(1), dev(2, "fence_b")])
    assert outcome.ok and outcome.level == 2
    assert [(c[1], c[2]) for c in runner.calls] == [
        ("fence_a", "off"), ("fence_a", "status"), ("fence_b", "off"), ("fence_b", "status")]
    assert outcome.attempts[1].result == "on"


def test_all_levels_fail() -> None:
    script = {("fence_a", "off"): [OK], ("fence_a", "status"): [ON],
              ("fence_b", "off"): [FAIL]}
    outcome, _ = run_fence(script, [dev(1), dev(2, "fence_b")],
                           FencePolicy(total_timeout=1000))
    assert not outcome.ok and outcome.level is None
    assert "status says ON" in outcome.summary and "fence_b: off failed" in outcome.summary


def test_retries_with_exponential_backoff_in_virtual_seconds() -> None:
    script = {("fence_a", "off"): [FAIL, FAIL, OK], ("fence_a", "status"): [OFF]}
    outcome, runner = run_fence(script, [dev(1)], FencePolicy(attempts=3, backoff=1.0))
    assert outcome.ok
    assert [c[0] for c in runner.calls] == [0.0, 1.0, 3.0, 3.0]
    assert [a.attempt for a in outcome.attempts] == [1, 2, 3, 1]


def test_timeouts_count_as_failed_attempts() -> None:
    script = {("fence_a", "off"): [HANG]}
    outcome, runner = run_fence(script, [dev(1)],
                                FencePolicy(attempts=3, timeout=5, total_timeout=100))
    assert not outcome.ok
    assert [a.result for a in outcome.attempts] == ["timeout"] * 3
    # 5 + 1 + 5 + 2 + 5
    assert outcome.duration == pytest.approx(18.0)
    assert all(c[3] == 5 for c in runner.calls)


def test_the_total_timeout_bounds_everything() -> None:
    script = {("fence_a", "off"): [HANG], ("fence_b", "off"): [HANG]}
    outcome, runner = run_fence(script, [dev(1), dev(2, "fence_b")],
                                FencePolicy(attempts=3, timeout=20, total_timeout=30))
    assert not outcome.ok
    assert outcome.duration <= 30.0
    # the second attempt gets only the 9 s left, the third would start after the bound
    assert [c[3] for c in runner.calls] == [20, 9]
    assert "not tried (total timeout)" in outcome.summary


def test_a_runner_overrunning_its_timeout_is_abandoned() -> None:
    script = {("fence_a", "off"): ["forever"]}
    outcome, _ = run_fence(script, [dev(1)],
                           FencePolicy(attempts=1, timeout=2, grace=1, total_timeout=60))
    assert not outcome.ok and outcome.attempts[0].result == "timeout"
    assert outcome.duration == pytest.approx(3.0)


def test_missing_agent_is_not_retried() -> None:
    missing = PermanentDriverError("fence agent fence_a not found")
    script: dict[tuple[str, str], list[Any]] = {
              ("fence_a", "off"): [missing],
              ("fence_b", "off"): [OK], ("fence_b", "status"): [OFF]}
    outcome, runner = run_fence(script, [dev(1), dev(2, "fence_b")])
    assert outcome.ok and outcome.level == 2
    assert len([c for c in runner.calls if c[1] == "fence_a"]) == 1


def test_status_failure_is_retried_then_fails_the_level() -> None:
    script = {("fence_a", "off"): [OK], ("fence_a", "status"): [FAIL, OFF]}
    outcome, _ = run_fence(script, [dev(1)])
    assert outcome.ok
    outcome, _ = run_fence({("fence_a", "off"): [OK], ("fence_a", "status"): [FAIL]}, [dev(1)])
    assert not outcome.ok and "status failed" in outcome.summary


def test_no_devices() -> None:
    outcome, _ = run_fence({}, [])
    assert not outcome.ok and "no FENCE levels" in outcome.summary


def test_password_never_in_outcome_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = {("fence_a", "off"): [FAIL], ("fence_b", "off"): [OK],
              ("fence_b", "status"): [AgentResult(2, f"Status: OFF {SECRET}", SECRET)]}
    outcome, _ = run_fence(script, [dev(1), dev(2, "fence_b")], FencePolicy(attempts=2))
    assert outcome.ok
    assert SECRET not in repr(outcome)
    assert SECRET not in repr(dev(1))
    assert SECRET not in caplog.text
    assert "********" in outcome.attempts[0].message
    assert "login failed" in caplog.text


def test_redact_and_agent_message() -> None:
    assert redact("a xyz b xy", ["xy", "xyz", None, ""]) == "a ******** b ********"
    noisy = AgentResult(1, "", "/usr/sbin/fence_ipmilan:5: DeprecationWarning: 'pipes'\n"
                                "  from pipes import quote\n"
                                "2026-11-28 22:21:33,064 ERROR: Connection timed out\n\n")
    assert agent_message(noisy, []) == "ERROR: Connection timed out"


# -- parsing ---------------------------------------------------------------------------------
def test_fence_levels(tmp_path: Path) -> None:
    pw = tmp_path / "node1.pw"
    pw.write_text(SECRET + "\n")
    template = Template.parse(f"""
        FENCE = [ AGENT = "fence_redfish", IP = "127.0.0.1", PORT = "8000", USERNAME = "admin",
                  PASSWORD_FILE = "{pw}",
                  OPTIONS = "ssl_insecure=1 systems_uri=/redfish/v1/Systems/x" ]
        FENCE = [ AGENT = "fence_ipmilan", IP = "10.0.0.9", PASSWORD = "lit", PLUG = "p1",
                  LANPLUS = "1", OPTIONS = "power-wait=0 verbose" ]
    """)
    first, second = fence_levels(template)
    assert first.agent == "fence_redfish" and first.level == 1 and first.password == SECRET
    assert first.agent_params("off") == {
        "action": "off", "ip": "127.0.0.1", "ipport": "8000", "username": "admin",
        "ssl_insecure": "1", "systems_uri": "/redfish/v1/Systems/x", "password": SECRET}
    assert second.level == 2 and second.password == "lit"
    assert dict(second.params) == {"ip": "10.0.0.9", "plug": "p1", "lanplus": "1",
                                   "power_wait": "0", "verbose": "1"}
    assert "lit" not in repr(second) and SECRET not in repr(first)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('FENCE = [ IP = "1.2.3.4" ]', "FENCE level 1: missing AGENT"),
        ('FENCE = [ AGENT = "rm -rf" ]', "is not a fence agent name"),
        ('FENCE = [ AGENT = "/usr/sbin/fence_x" ]', "is not a fence agent name"),
        ('FENCE = [ AGENT = "fence_x", PASSWORD_FILE = "/nonexistent/pw" ]',
         "cannot read PASSWORD_FILE /nonexistent/pw: No such file or directory"),
        ('FENCE = [ AGENT = "fence_x", OPTIONS = "action=on" ]', "OPTIONS may not set action"),
        ('FENCE = [ AGENT = "fence_x", OPTIONS = "password=x" ]', "OPTIONS may not set password"),
        ('FENCE = [ AGENT = "fence_x", ACTION = "on" ]', "attribute ACTION is not allowed"),
        ('FENCE = [ AGENT = "fence_x", IP = "a\nb" ]', "contains a line break"),
        ('FENCE = "fence_x"', "FENCE must be a vector"),
    ],
    ids=["no-agent", "bad-name", "path", "unreadable-pw", "action", "pw-option", "action-attr",
         "newline", "not-vector"],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(FenceConfigError, match=message.replace("(", r"\(")):
        fence_levels(Template.parse(text))


def test_second_level_error_names_its_level(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pw"
    empty.write_text("\n")
    text = (f'FENCE = [ AGENT = "fence_a" ]\n'
            f'FENCE = [ AGENT = "fence_b", PASSWORD_FILE = "{empty}" ]')
    with pytest.raises(FenceConfigError, match=r"FENCE level 2: PASSWORD_FILE .* is empty"):
        fence_levels(Template.parse(text))


# -- the simulated agent ---------------------------------------------------------------------
class Chassis:
    def __init__(self) -> None:
        self.state = {"n1": "on", "n2": "on"}

    def power_off(self, name: str) -> None:
        self.state[name] = "off"

    def power_on(self, name: str) -> None:
        self.state[name] = "on"

    def power_state(self, name: str) -> str:
        return self.state[name]


def sim_fence(
    chassis: Chassis, fault: SimFault | None, policy: FencePolicy | None = None
) -> tuple[FenceOutcome, SimAgentRunner]:
    loop = VirtualEventLoop()
    clock = VirtualClock(loop)
    runner = SimAgentRunner(chassis, clock, password=SECRET)
    if fault is not None:
        runner.set_fault("n1", fault)
    device = FenceDevice(1, "fence_sim", (("plug", "n1"),), password=SECRET)
    try:
        return loop.run_until_complete(fence("n1", [device], runner, clock, policy)), runner
    finally:
        loop.close()


def test_sim_agent_fences_through_the_protocol() -> None:
    chassis = Chassis()
    outcome, runner = sim_fence(chassis, None)
    assert outcome.ok and chassis.state == {"n1": "off", "n2": "on"}
    assert runner.calls == [("off", "n1"), ("status", "n1")]


@pytest.mark.parametrize(
    ("fault", "power", "result"),
    [
        (SimFault(unreachable=True), "on", "timeout"),
        (SimFault(wrong_password=True), "on", "failed"),
        (SimFault(ignores_off=True), "on", "on"),
        (SimFault(delay=30), "on", "timeout"),
    ],
    ids=["unreachable", "wrong-password", "ignores-off", "too-slow"],
)
def test_sim_agent_faults(fault: SimFault, power: str, result: str) -> None:
    chassis = Chassis()
    outcome, _ = sim_fence(chassis, fault, FencePolicy(timeout=5, total_timeout=60))
    assert not outcome.ok and chassis.state["n1"] == power
    assert outcome.attempts[-1].result == result


def test_lying_sim_device_fools_the_fence() -> None:
    # Why levels and real status checks matter: a lying BMC cannot be caught by the protocol.
    chassis = Chassis()
    outcome, _ = sim_fence(chassis, SimFault.lying())
    assert outcome.ok and chassis.state["n1"] == "on"


def test_slow_sim_device_succeeds_in_virtual_time() -> None:
    chassis = Chassis()
    outcome, _ = sim_fence(chassis, SimFault(delay=3))
    assert outcome.ok and outcome.duration == pytest.approx(6.0)


def test_sim_agent_async_power_control() -> None:
    class AsyncChassis(Chassis):
        async def power_off(self, name: str) -> None:  # type: ignore[override]
            await asyncio.sleep(0)
            self.state[name] = "off"

    chassis = AsyncChassis()
    outcome, _ = sim_fence(chassis, None)
    assert outcome.ok and chassis.state["n1"] == "off"
