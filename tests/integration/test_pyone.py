"""OpenNebula's own Python client, pyone, against a real `lazarus serve` daemon.

pyone binds every answer to classes generated from OpenNebula's XSDs and maps failure codes to
its exception classes, so these tests check the API's conformance from a real client's side
(return convention, method signatures, pyone's bindings): values bind, state numbers index
pyone's enums, filters and pagination of vmpool.info behave, and errors raise the right
exception. Simulated hosts (VM_MAD "sim"), no root needed; bounded polling against the
real-time daemon.
"""

# pyone binds XML elements to UPPER_CASE attributes, which ruff takes for constants (SIM300).
# ruff: noqa: SIM300

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyone
import pytest

from helpers.daemon import Daemon, running_daemon, wait_for
from lazarus import ONE_VERSION
from lazarus.api.auth import read_fence_key


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Daemon]:
    """One daemon per store for the whole module: SQLite in its data directory, then
    PostgreSQL on a database of the session's server (helpers/pg_fixtures.py)."""
    db = ""
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        name = server.next_name()
        server.create_database(name)
        db = server.url(name)
    yield from running_daemon(tmp_path_factory.mktemp("pyone"), db=db)


@pytest.fixture(scope="module")
def one(daemon: Daemon) -> Iterator[Any]:
    server = pyone.OneServer(daemon.url, session=daemon.session())
    try:
        yield server
    finally:
        server.server_close()


@pytest.fixture(scope="module")
def hosts(one: Any) -> list[int]:
    """Three simulated hosts, MONITORED."""
    ids = [one.host.allocate(f"py{i}", "sim", "sim", -1) for i in range(1, 4)]
    wait_for("hosts MONITORED", lambda: all(
        pyone.HOST_STATES(one.host.info(i).STATE) == pyone.HOST_STATES.MONITORED for i in ids))
    return ids


def wait_lcm(one: Any, vm_id: int, lcm: pyone.LCM_STATE) -> Any:
    def probe() -> Any:
        vm = one.vm.info(vm_id)
        ok = pyone.VM_STATE(vm.STATE) == pyone.VM_STATE.ACTIVE and pyone.LCM_STATE(
            vm.LCM_STATE) == lcm
        return vm if ok else None

    return wait_for(f"VM {vm_id} {lcm.name}", probe)


def wait_state(one: Any, vm_id: int, state: pyone.VM_STATE) -> Any:
    return wait_for(f"VM {vm_id} {state.name}",
                    lambda: (vm := one.vm.info(vm_id)) and pyone.VM_STATE(vm.STATE) == state
                    and vm)


def test_system_version_and_config(one: Any) -> None:
    assert one.system.version() == ONE_VERSION
    config = one.system.config()
    assert int(config.MONITORING_INTERVAL_HOST) == 1  # the fixture's fast setting
    assert type(config).__name__.startswith("OPENNEBULA_CONFIGURATION")


def test_hosts_bind(one: Any, hosts: list[int]) -> None:
    pool = one.hostpool.info()
    by_id = {h.ID: h for h in pool.HOST}
    assert set(hosts) <= set(by_id)
    for i, host_id in enumerate(hosts, start=1):
        host = by_id[host_id]
        assert host.NAME == f"py{i}" and host.VM_MAD == "sim" and host.IM_MAD == "sim"
        assert pyone.HOST_STATES(host.STATE).name == "MONITORED"
    info = one.host.info(hosts[0])
    assert info.ID == hosts[0] and info.CLUSTER_ID == 0 and info.CLUSTER == "default"
    assert info.HOST_SHARE.TOTAL_CPU == 800 and info.HOST_SHARE.MAX_MEM == 16 * 1024 * 1024
    assert info.TEMPLATE["HOSTNAME"] == "py1"
    assert isinstance(info.MONITORING.TIMESTAMP, int)

    assert one.host.status(hosts[2], pyone.HOST_STATUS.DISABLED) == hosts[2]
    assert pyone.HOST_STATES(one.host.info(hosts[2]).STATE) == pyone.HOST_STATES.DISABLED
    one.host.status(hosts[2], pyone.HOST_STATUS.ENABLED)
    wait_for("re-enabled host MONITORED",
             lambda: one.host.info(hosts[2]).STATE == pyone.HOST_STATES.MONITORED)


def test_vm_lifecycle_binds(one: Any, hosts: list[int]) -> None:
    vm_id = one.vm.allocate({"NAME": "py-a", "CPU": "1", "MEMORY": "512"}, True)
    vm = one.vm.info(vm_id)
    assert pyone.VM_STATE(vm.STATE) == pyone.VM_STATE.HOLD and vm.NAME == "py-a"
    assert one.vm.deploy(vm_id, hosts[1]) == vm_id
    vm = wait_lcm(one, vm_id, pyone.LCM_STATE.RUNNING)
    last = vm.HISTORY_RECORDS.HISTORY[-1]
    assert last.HOSTNAME == "py2" and last.HID == hosts[1] and last.DS_ID == 0
    assert vm.TEMPLATE["MEMORY"] == "512" and vm.UNAME == "oneadmin"
    assert vm_id in one.host.info(hosts[1]).VMS.ID

    assert one.vm.action("poweroff-hard", vm_id) == vm_id
    wait_state(one, vm_id, pyone.VM_STATE.POWEROFF)
    one.vm.action("resume", vm_id)
    wait_lcm(one, vm_id, pyone.LCM_STATE.RUNNING)
    assert one.vm.migrate(vm_id, hosts[0], False) == vm_id
    moved = wait_lcm(one, vm_id, pyone.LCM_STATE.RUNNING)
    wait_for("migrated", lambda: one.vm.info(vm_id).HISTORY_RECORDS.HISTORY[-1].HID == hosts[0])
    assert moved.ID == vm_id

    assert one.vm.recover(vm_id, 3) == vm_id  # --delete
    wait_state(one, vm_id, pyone.VM_STATE.DONE)


def test_host_failure_recover_recreate(one: Any, daemon: Daemon, hosts: list[int]) -> None:
    """What host_error.rb does after fencing: recover(4) puts an UNKNOWN VM back to PENDING and
    the scheduler places it on a surviving host."""
    vm_id = one.vm.allocate('NAME="py-ha"\nCPU="1"\nMEMORY="256"\n', True)
    victim = one.host.allocate("py-victim", "sim", "sim", -1)
    wait_for("victim MONITORED", lambda: one.host.info(victim).STATE == 2)
    one.vm.deploy(vm_id, victim)
    wait_lcm(one, vm_id, pyone.LCM_STATE.RUNNING)
    with daemon.client() as client:
        assert client.call("lazarus.sim.power", "py-victim", "off") == "off"
    wait_for("victim ERROR", lambda: pyone.HOST_STATES(one.host.info(victim).STATE)
             == pyone.HOST_STATES.ERROR)
    wait_lcm(one, vm_id, pyone.LCM_STATE.UNKNOWN)
    unknown = one.vmpool.info(-2, -1, -1, pyone.VM_STATE.ACTIVE)
    assert any(v.ID == vm_id and v.LCM_STATE == 16 for v in unknown.VM)

    one.vm.recover(vm_id, 4)  # --recreate
    vm = wait_lcm(one, vm_id, pyone.LCM_STATE.RUNNING)
    assert vm.HISTORY_RECORDS.HISTORY[-1].HID in hosts
    one.vm.recover(vm_id, 3)
    with daemon.client() as client:
        client.call("lazarus.sim.power", "py-victim", "on")


def test_vmpool_filters_and_pagination(one: Any, hosts: list[int]) -> None:
    ids = [one.vm.allocate(f'NAME="page{i}"\nCPU="0.1"\nMEMORY="64"\n', True) for i in range(5)]
    done = one.vm.allocate('NAME="gone"\nCPU="0.1"\nMEMORY="64"\n', True)
    one.vm.recover(done, 3)
    wait_state(one, done, pyone.VM_STATE.DONE)

    def pool_ids(*args: int) -> list[int]:
        pool = one.vmpool.info(*args)
        return [vm.ID for vm in (pool.VM or [])]

    everything = pool_ids(-2, -1, -1, -2)
    not_done = pool_ids(-2, -1, -1, -1)
    assert done in everything and done not in not_done and set(ids) <= set(not_done)
    held = pool_ids(-2, -1, -1, pyone.VM_STATE.HOLD)
    assert set(ids) <= set(held)
    assert all(one.vm.info(i).STATE == pyone.VM_STATE.HOLD for i in held)
    assert pool_ids(-2, ids[0], ids[2], -1) == ids[:3]  # start/end as an ID range

    # end < -1: start is an offset and -end the page size (the CLI's paging)
    pages = [pool_ids(-2, offset, -2, pyone.VM_STATE.HOLD) for offset in range(0, 6, 2)]
    assert all(len(page) <= 2 for page in pages)
    assert [i for page in pages for i in page] == held[:6]
    assert pool_ids(-2, 0, -3, -2) == everything[:3]

    extended = one.vmpool.infoextended(-2, -1, -1, pyone.VM_STATE.HOLD)
    assert {vm.ID for vm in extended.VM} == set(held)
    with pytest.raises(pyone.OneApiException, match="Incorrect state filter"):
        one.vmpool.info(-2, -1, -1, 99)
    for vm_id in ids:
        one.vm.recover(vm_id, 3)


def test_datastorepool(one: Any) -> None:
    pool = one.datastorepool.info()
    by_name = {ds.NAME: ds for ds in pool.DATASTORE}
    assert {"system", "default", "files"} <= set(by_name)
    system = by_name["system"]
    assert system.ID == 0 and pyone.DATASTORE_TYPES(system.TYPE).name == "SYSTEM"
    assert system.TEMPLATE["SHARED"] == "YES" and system.TM_MAD == "shared"
    assert 0 in system.CLUSTERS.ID


def test_exceptions(one: Any, daemon: Daemon) -> None:
    bad = pyone.OneServer(daemon.url, session="oneadmin:not-the-password")
    try:
        with pytest.raises(pyone.OneAuthenticationException,
                           match=r"\[one.hostpool.info\] User couldn't be authenticated"):
            bad.hostpool.info()
    finally:
        bad.server_close()
    with pytest.raises(pyone.OneNoExistsException,
                       match=r"\[one.vm.info\] Error getting virtual machine \[9999\]"):
        one.vm.info(9999)
    with pytest.raises(pyone.OneNoExistsException):
        one.host.info(9999)
    held = one.vm.allocate('NAME="refused"\nCPU="0.1"\nMEMORY="64"\n', True)
    with pytest.raises(pyone.OneActionException, match="not available for state HOLD"):
        one.vm.action("resume", held)
    with pytest.raises(pyone.OneException):
        one.vm.allocate("NAME=[broken", False)
    one.vm.recover(held, 3)


def test_a_template_read_and_written_back_keeps_the_fence_password(one: Any,
                                                                     daemon: Daemon) -> None:
    """pyone reads the host (PASSWORD shown ****) and writes its TEMPLATE back whole
    (replace): the stored FENCE PASSWORD stays, the edited attribute changes. Before, the
    store held **** and the next fence sent password=**** to the BMC."""
    host_id = one.host.allocate("pw1", "sim", "sim", -1)
    one.host.update(host_id, 'FENCE = [ AGENT = "fence_ipmilan", IP = "10.0.0.7", '
                    'PASSWORD = "bmc-secret-7" ]\nLABEL = "a"', 1)
    template = dict(one.host.info(host_id).TEMPLATE)
    assert template["FENCE"]["PASSWORD"] == "****"
    template["LABEL"] = "b"
    one.host.update(host_id, {"TEMPLATE": template}, 0)
    assert one.host.info(host_id).TEMPLATE["LABEL"] == "b"
    key = read_fence_key(daemon.data_dir / "fence_key")
    with daemon.client() as client:
        fence = str(client.call("lazarus.host.fencecreds", host_id, key))
    assert "bmc-secret-7" in fence and "****" not in fence
    one.host.delete(host_id)
