"""one.template.* and instantiate, the zone, the empty pools, one.cluster.addhost/delhost
(api/templates.py), with the documents against the XSDs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.rbac import RoleWorld
from helpers.xsd import validate
from lazarus.domain.entities import Cluster
from lazarus.domain.errors import ErrorCode
from lazarus.domain.xml.templates import EMPTY_POOLS

XSD = {
    "VNET_POOL": "vnet_pool.xsd",
    "IMAGE_POOL": "image_pool.xsd",
    "VM_GROUP_POOL": "vm_group_pool.xsd",
}


@pytest.fixture
def w() -> Iterator[RoleWorld]:
    world = RoleWorld()
    yield world
    world.close()


def ok(result: list[object]) -> object:
    assert result[0] is True, result
    return result[1]


def test_templates_allocate_info_update_clone_delete(w: RoleWorld) -> None:
    tid = ok(
        w.call(
            "alice",
            "one.template.allocate",
            'NAME = "web"\nCPU = "0.5"\nMEMORY = "64"\nHA_PRIORITY = "3"',
        )
    )
    doc = ok(w.call("alice", "one.template.info", tid))
    validate("vmtemplate.xsd", str(doc))
    assert "<UNAME>alice</UNAME>" in str(doc) and "<NAME>web</NAME>" in str(doc)
    ok(w.call("alice", "one.template.update", tid, 'VCPU = "2"', 1))
    assert "VCPU" in str(ok(w.call("alice", "one.template.info", tid)))
    pool = str(ok(w.call("alice", "one.templatepool.info", -2, -1, -1)))
    validate("vmtemplate_pool.xsd", pool)
    assert pool.count("<VMTEMPLATE>") == 1  # alice's own; oneadmin's t0 is not hers
    assert str(ok(w.call("oneadmin", "one.templatepool.info"))).count("<VMTEMPLATE>") == 2
    copy = ok(w.call("alice", "one.template.clone", tid, "web-copy"))
    ok(w.call("alice", "one.template.rename", copy, "web-2"))
    ok(w.call("alice", "one.template.delete", copy))
    assert w.call("alice", "one.template.info", copy)[2] == ErrorCode.NO_EXISTS
    assert w.call("alice", "one.template.allocate", 'CPU = "1"')[2] == ErrorCode.ALLOCATE
    assert w.call("bob", "one.template.info", tid)[2] == ErrorCode.AUTHORIZATION


def test_instantiate_makes_a_vm_of_the_caller(w: RoleWorld) -> None:
    tid = ok(
        w.call(
            "alice",
            "one.template.allocate",
            'NAME = "web"\nCPU = "0.5"\nMEMORY = "64"\nHA_PRIORITY = "3"',
        )
    )
    vm_id = ok(w.call("alice", "one.template.instantiate", tid, "", True, 'MEMORY = "96"', False))
    vm = w.store.vm(int(vm_id))  # type: ignore[call-overload]
    assert vm.name == f"web-{vm_id}" and vm.uid == w.uid["alice"] and vm.gname == "users"
    assert vm.template.get("MEMORY") == "96" and vm.template.get("TEMPLATE_ID") == str(tid)
    assert vm.user_template.get("HA_PRIORITY") == "3"
    named = ok(w.call("alice", "one.template.instantiate", tid, "named", True, "", False))
    assert w.store.vm(int(named)).name == "named"  # type: ignore[call-overload]
    assert w.call("alice", "one.template.instantiate", 99, "", True, "", False)[2] == 0x400
    bad = w.call("alice", "one.template.instantiate", tid, "", True, 'MEMORY = "-1"', False)
    assert bad[0] is False


def test_empty_pools_zone_and_cluster_hosts(w: RoleWorld) -> None:
    for method, root in EMPTY_POOLS.items():
        doc = str(ok(w.call("bob", method, -2, -1, -1)))
        assert doc == f"<{root}></{root}>"
        if root in XSD:
            validate(XSD[root], doc)
    validate("zone_pool.xsd", str(ok(w.call("bob", "one.zonepool.info"))))
    validate("zone.xsd", str(ok(w.call("bob", "one.zone.info", 0))))
    assert w.call("bob", "one.zone.info", 1)[2] == ErrorCode.NO_EXISTS
    with w.store.transaction() as tx:
        cid = tx.add_cluster(Cluster(-1, "second")).id
    ok(w.call("oneadmin", "one.cluster.addhost", cid, 1))
    assert w.store.host(1).cluster_id == cid and w.store.host(1).cluster == "second"
    assert "<HOSTS><ID>1</ID></HOSTS>" in str(ok(w.call("oneadmin", "one.cluster.info", cid)))
    ok(w.call("oneadmin", "one.cluster.delhost", cid, 1))
    assert w.store.host(1).cluster_id == 0
    assert w.call("oneadmin", "one.cluster.delhost", cid, 1)[2] == ErrorCode.ACTION
    assert w.call("oneadmin", "one.cluster.addhost", 7, 1)[2] == ErrorCode.NO_EXISTS
    assert w.call("oneadmin", "one.cluster.addhost", 0, 77)[2] == ErrorCode.NO_EXISTS
    assert w.call("oneadmin", "one.cluster.delhost", 0, 77)[2] == ErrorCode.NO_EXISTS
