"""The KEY=VALUE filter of one.vmpool.info / infoextended (api/search.py)."""

from __future__ import annotations

import pytest

from helpers.rbac import RoleWorld
from helpers.xsd import validate
from lazarus.domain.errors import ErrorCode
from lazarus.domain.template import Template

TEXT = (
    'NAME = "{name}"\nCPU = "0.5"\nMEMORY = "{mem}"\nROLE = "{role}"\n'
    'DISK = [ IMAGE = "base", DEV_PREFIX = "vd" ]\nDISK = [ IMAGE = "{image}" ]\n'
)


@pytest.fixture
def world() -> RoleWorld:
    w = RoleWorld()  # VMs 0 and 1 are alice's
    for name, mem, role, image in (
        ("web-1", 64, "web", "data"),
        ("web-2", 128, "web", "logs"),
        ("db-1", 64, "db", "data"),
    ):
        template = Template.parse(TEXT.format(name=name, mem=mem, role=role, image=image))
        w.run_fn(lambda t=template: w.controller.lifecycle.allocate(t, True, 0))
    return w


def ids(
    world: RoleWorld,
    query: str,
    role: str = "oneadmin",
    method: str = "one.vmpool.info",
    flt: int = -2,
    start: int = -1,
    end: int = -1,
) -> list[int]:
    result = world.call(role, method, flt, start, end, -1, query)
    assert result[0] is True, result
    document = str(result[1])
    validate("vm_pool.xsd" if method == "one.vmpool.info" else "vm_pool_extended.xsd", document)
    return [int(part.split("</ID>")[0]) for part in document.split("<VM><ID>")[1:]]


def test_key_value_pairs_filter(world: RoleWorld) -> None:
    try:
        assert ids(world, "VM.NAME=web-1") == [2]
        assert ids(world, "VM.USER_TEMPLATE.ROLE=web") == [2, 3]
        assert ids(world, "VM.USER_TEMPLATE.ROLE=web&VM.TEMPLATE.MEMORY=64") == [2]
        assert ids(world, "VM.TEMPLATE.DISK[*].IMAGE=data") == [2, 4]
        assert ids(world, "VM.TEMPLATE.DISK[1].IMAGE=data") == [2, 4]
        assert ids(world, "VM.TEMPLATE.DISK[0].IMAGE=data") == []
        assert ids(world, "VM.UNAME=alice") == [0, 1]
        assert ids(world, "VM.NAME=nothing") == []
        assert ids(world, "VM.NAME=web-2", method="one.vmpool.infoextended") == [3]
        assert ids(world, "VM.USER_TEMPLATE.ROLE=web", start=0, end=-2) == [2, 3]
        assert ids(world, "VM.USER_TEMPLATE.ROLE=web", start=1, end=-2) == [3]
        assert ids(world, "") == [0, 1, 2, 3, 4]  # no filter
    finally:
        world.close()


def test_the_filter_keeps_the_callers_view(world: RoleWorld) -> None:
    try:
        assert ids(world, "VM.TEMPLATE.MEMORY=64", role="alice") == [0, 1]
        assert ids(world, "VM.TEMPLATE.MEMORY=64", role="bob") == []
        assert ids(world, "VM.TEMPLATE.MEMORY=64", role="reader") == [0, 1, 2, 4]
    finally:
        world.close()


@pytest.mark.parametrize(
    "query",
    [
        "NAME",
        "web-1",
        "HOST.NAME=x",
        "VM=x",
        "VM.NA ME=x",
        "VM.NAME=a&",
        "VM.DISK[x].IMAGE=a",
        "x" * 5000,
    ],
)
def test_a_malformed_filter_is_refused_not_ignored(world: RoleWorld, query: str) -> None:
    try:
        for method in ("one.vmpool.info", "one.vmpool.infoextended"):
            result = world.call("oneadmin", method, -2, -1, -1, -1, query)
            assert result[0] is False and result[2] == ErrorCode.RPC_API, (query, result)
    finally:
        world.close()
