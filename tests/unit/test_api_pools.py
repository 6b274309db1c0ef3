"""one.vmpool.info answers from the store's cached short bodies (api/methods.py,
StoreReader.vm_short_bodies): the document must be exactly what rendering the VMs gives, for
every filter and page, and follow the VMs as the controller changes them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.core import Harness
from lazarus.api.methods import Api
from lazarus.api.xmlrpc import CallContext
from lazarus.domain import xml as docs
from lazarus.domain.entities import VM, History, User
from lazarus.domain.errors import RpcApiError
from lazarus.domain.states import LcmState, VmState
from lazarus.domain.template import Template

CTX = CallContext(User(0, "oneadmin", "x"), "one.vmpool.info", "test")
STATES = [
    (VmState.ACTIVE, LcmState.RUNNING),
    (VmState.DONE, LcmState.LCM_INIT),
    (VmState.POWEROFF, LcmState.LCM_INIT),
    (VmState.HOLD, LcmState.LCM_INIT),
    (VmState.ACTIVE, LcmState.UNKNOWN),
]


@pytest.fixture
def api() -> Iterator[Api]:
    with Harness(hosts=0, start=False) as h:
        with h.store.transaction() as tx:
            for n in range(12):
                state, lcm = STATES[n % len(STATES)]
                tx.add_vm(
                    VM(
                        id=-1,
                        name=f"vm{n} <&>",
                        uid=n % 3,
                        state=state,
                        lcm_state=lcm,
                        template=Template.parse(
                            f'CPU = "1"\nMEMORY = "{128 * (n + 1)}"\n'
                            'DISK = [ IMAGE = "base", DISK_ID = "0", DEV_PREFIX = "vd" ]\n'
                        ),
                        user_template=Template.parse(f'HA = "YES"\nHA_PRIORITY = "{n}"\n'),
                        history=[History(oid=n, seq=0, hostname=f"node{n % 2}", hid=n % 2)],
                        monitoring={"CPU": "1.5", "MEMORY": "1024"},
                    )
                )
        yield Api(h.controller)


def rendered(api: Api, flt: int, start: int, end: int, state: int) -> str:
    """The document rendered from decoded VMs, the way vmpool_info worked before the cache."""
    return docs.vm_pool_xml(api._pool(api.store.vms, flt, start, end, state))


def ids(document: str) -> list[int]:
    return [int(part.split("</ID>")[0]) for part in document.split("<VM><ID>")[1:]]


@pytest.mark.parametrize(
    ("flt", "start", "end", "state", "expected"),
    [
        (-2, -1, -1, -1, [0, 2, 3, 4, 5, 7, 8, 9, 10]),  # every state but DONE
        (-2, -1, -1, -2, list(range(12))),  # DONE too
        (-2, -1, -1, 3, [0, 4, 5, 9, 10]),  # ACTIVE
        (-2, -1, -1, 6, [1, 6, 11]),  # DONE only
        (1, -1, -1, -2, [1, 4, 7, 10]),  # owner 1
        (-2, 3, 8, -1, [3, 4, 5, 7, 8]),  # id range
        (-2, 0, -4, -1, [0, 2, 3, 4]),  # first page of 4
        (-2, 4, -4, -1, [5, 7, 8, 9]),  # offset 4, page of 4
        (-2, 8, -4, -1, [10]),  # the last, short page
        (-2, 20, -4, -1, []),  # past the end
        (0, -1, -1, -2, [0, 3, 6, 9]),
    ],
    ids=lambda v: repr(v) if not isinstance(v, list) else "",
)
def test_vmpool_info_is_the_rendered_pool(
    api: Api, flt: int, start: int, end: int, state: int, expected: list[int]
) -> None:
    document = api.vmpool_info(CTX, flt, start, end, state)
    assert ids(document) == expected
    assert document == rendered(api, flt, start, end, state)


def test_vmpool_info_follows_changes(api: Api) -> None:
    with api.store.transaction() as tx:
        vm = tx.vm(2)
        vm.state, vm.lcm_state = VmState.ACTIVE, LcmState.RUNNING
        vm.history.append(History(oid=2, seq=1, hostname="node7", hid=7))
        vm.name = "moved & renamed"
        tx.save_vm(vm)
        tx.delete_vm(3)
    document = api.vmpool_info(CTX, -2, -1, -1, -1)
    assert 3 not in ids(document)
    assert "<NAME>moved &amp; renamed</NAME>" in document
    assert document == rendered(api, -2, -1, -1, -1)


def test_vmpool_info_refuses_an_unknown_state_filter(api: Api) -> None:
    with pytest.raises(RpcApiError, match="Incorrect state filter"):
        api.vmpool_info(CTX, -2, -1, -1, 99)
