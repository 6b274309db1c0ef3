"""The example VM hook boot_retry (app/boot_retry.py): bounded `recover --retry` of a VM in
BOOT_FAILURE, once per execution, never of a VM that left BOOT_FAILURE."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from helpers.core import Harness
from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.local import LocalClient
from lazarus.api.stack import build_dispatcher
from lazarus.app.boot_retry import _options, retry
from lazarus.domain.entities import User
from lazarus.domain.hooks import parse_hook
from lazarus.domain.states import LcmState, VmState
from lazarus.domain.template import Template
from lazarus.ha.examples import EXAMPLES

BOOT_FAILURE = (VmState.ACTIVE, LcmState.BOOT_FAILURE)


@pytest.fixture
def h() -> Any:
    harness = Harness(hosts=1)
    with harness.store.transaction() as tx:
        tx.add_user(User(id=-1, name="oneadmin", password_hash=hash_password("pw")))
    harness.monitored()
    yield harness
    harness.close()


def api(h: Harness) -> LocalClient:
    return LocalClient(build_dispatcher(h.controller, Authenticator(h.store.user_by_name)),
                       "oneadmin:pw")  # fmt: skip


def failed_vm(h: Harness, failures: int) -> int:
    h.sim.fail_next("node1", "deploy", permanent=True, count=failures)
    vm = h.create_vm(hold=True)
    h.lc.deploy(vm, h.host_id("node1"))
    h.wait_for(lambda: h.state(vm) == BOOT_FAILURE)
    return vm


def run(h: Harness, client: LocalClient, vm: int, state: Path, execution: str) -> int:
    xml = client.call("one.vm.info", vm, False)
    _, options = _options(["x", "--delay", "0"])
    lines: list[str] = []

    async def go() -> int:
        return retry(client, base64.b64encode(xml.encode()).decode(), options, state,
                     execution, now=h.clock.now, sleep=lambda _s: None, emit=lines.append)

    code = h.run(go())
    h.settle()
    h.advance(1)
    return code


def test_the_shipped_template_is_a_vm_state_hook() -> None:
    hook = parse_hook(Template.parse((EXAMPLES / "vm_hooks" / "boot_failure_hook").read_text()))
    assert hook.template.get("LCM_STATE") == "BOOT_FAILURE"
    assert (EXAMPLES / "vm_hooks" / "boot_retry").stat().st_mode & 0o111


def test_retries_a_bounded_number_of_times(h: Harness, tmp_path: Path) -> None:
    client = api(h)
    vm = failed_vm(h, failures=10)
    codes = [run(h, client, vm, tmp_path, f"1:{n}") for n in range(4)]
    assert codes == [0, 0, 0, 1]  # three retries, then it gives up
    assert h.state(vm) == BOOT_FAILURE
    assert len((tmp_path / f"vm-{vm}").read_text().splitlines()) == 3
    assert (tmp_path / f"vm-{vm}").stat().st_mode & 0o777 == 0o600


def test_a_retry_that_works_and_a_rerun_of_the_same_execution(h: Harness, tmp_path: Path) -> None:
    client = api(h)
    vm = failed_vm(h, failures=1)
    assert run(h, client, vm, tmp_path, "1:7") == 0
    h.wait_for(lambda: h.state(vm) == (VmState.ACTIVE, LcmState.RUNNING))
    assert run(h, client, vm, tmp_path, "1:7") == 0  # not BOOT_FAILURE: nothing to do
    assert len((tmp_path / f"vm-{vm}").read_text().splitlines()) == 1
