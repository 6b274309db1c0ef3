"""Input bounds at the API (api/validation.py through api/methods.py and hook_methods.py):
numbers the core computes with, template size and attribute count, names, host names and
addresses. Each refusal is a clear OpenNebula-style error and stores nothing (issue 20)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.core import Harness
from lazarus.api.hook_methods import HookApi
from lazarus.api.methods import Api
from lazarus.api.validation import MAX_ATTRIBUTES, MAX_TEMPLATE_CHARS, is_host_name
from lazarus.api.xmlrpc import CallContext
from lazarus.core.hooks import HookManager
from lazarus.domain.entities import User
from lazarus.domain.errors import ActionError, AllocateError, ApiError, InternalError
from lazarus.drivers.hooks.fake import FakeHookExecutor

CTX = CallContext(User(0, "oneadmin", "x"), "one.vm.allocate", "test")
VM = 'NAME = "v"\nCPU = 1\nMEMORY = 512\n'


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness(hosts=1, start=False) as harness:
        yield harness


def hook_api(h: Harness) -> HookApi:
    return HookApi(HookManager(h.store, h.clock, FakeHookExecutor(), h.settings), h.store)


@pytest.fixture
def api(h: Harness) -> Api:
    return Api(h.controller)


def refused(call: object, error: type[ApiError], *words: str) -> str:
    assert callable(call)
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in info.value.message
    return info.value.message


@pytest.mark.parametrize(
    "extra",
    [
        "CPU = 1e307", "CPU = inf", "CPU = nan", "CPU = -1", "CPU = abc", "VCPU = 1e12",
        "MEMORY = 1e30", "HA_PRIORITY = 1e400", "HA_PRIORITY = 99999999999",
    ],
    ids=lambda e: e.replace(" ", ""),
)
def test_vm_numbers_must_be_finite_and_sane(h: Harness, api: Api, extra: str) -> None:
    before = len(h.store.vms())
    name = extra.split()[0]
    message = refused(lambda: api.vm_allocate(CTX, VM + extra + "\n"), AllocateError, name)
    assert "finite number" in message
    assert len(h.store.vms()) == before  # nothing stored


def test_sane_vm_numbers_pass(h: Harness, api: Api) -> None:
    vm_id = api.vm_allocate(CTX, VM + "VCPU = 4\nHA_PRIORITY = -5\n", hold=True)
    assert h.store.vm(vm_id).ha_priority == -5


@pytest.mark.parametrize(
    "text", ['RESERVED_CPU = "1e307"', 'RESERVED_MEM = "-inf"', "SIM_CPU = nan"]
)
def test_host_numbers_are_checked_on_update(h: Harness, api: Api, text: str) -> None:
    before = h.host(0).template.copy()
    refused(lambda: api.host_update(CTX, 0, text, 1), InternalError, "finite number")
    assert h.host(0).template == before


def test_host_reservations_in_range_pass(h: Harness, api: Api) -> None:
    api.host_update(CTX, 0, 'RESERVED_CPU = "-100"\nRESERVED_MEM = "1048576"', 1)
    assert h.host(0).template.get("RESERVED_CPU") == "-100"


@pytest.mark.parametrize("timeout", ["-1", "1e400", "nan", "inf", "1e9"])
def test_hook_timeout_must_be_finite_and_not_negative(h: Harness, timeout: str) -> None:
    hooks = hook_api(h)
    text = 'NAME="x"\nTYPE="state"\nRESOURCE="HOST"\nSTATE="ERROR"\nCOMMAND="x"\n'
    refused(lambda: hooks.allocate(CTX, text + f"TIMEOUT={timeout}\n"), AllocateError, "TIMEOUT")
    hook_id = hooks.allocate(CTX, text + "TIMEOUT=30\n")
    refused(lambda: hooks.update(CTX, hook_id, f"TIMEOUT={timeout}", 1), InternalError, "TIMEOUT")
    assert h.store.hook(hook_id).timeout == 30


# -- size and count -------------------------------------------------------------------------


def test_template_size_is_bounded(api: Api) -> None:
    huge = VM + f'NOTE = "{"x" * MAX_TEMPLATE_CHARS}"\n'
    refused(lambda: api.vm_allocate(CTX, huge), AllocateError, "Template too large")
    refused(lambda: api.host_update(CTX, 0, huge, 1), InternalError, "Template too large")


def test_attribute_count_is_bounded(h: Harness, api: Api) -> None:
    many = VM + "".join(f"A{i} = {i}\n" for i in range(MAX_ATTRIBUTES))
    refused(lambda: api.vm_allocate(CTX, many), AllocateError, "Too many attributes")
    vectors = "".join("V = [ A = 1, B = 2 ]\n" for _ in range(MAX_ATTRIBUTES // 3 + 1))
    refused(lambda: api.host_update(CTX, 0, vectors, 1), InternalError, "Too many attributes")
    # appending is bounded by the attributes the host already has
    api.host_update(CTX, 0, "".join(f"A{i} = {i}\n" for i in range(MAX_ATTRIBUTES // 2)), 1)
    more = "".join(f"B{i} = {i}\n" for i in range(MAX_ATTRIBUTES // 2 + 10))
    refused(lambda: api.host_update(CTX, 0, more, 1), InternalError, "Too many attributes")


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["web\nFAKE host/0 node0: MONITORED => ERROR", "a\x1b[2Jb", "x" * 1000]
)
def test_vm_names_are_bounded_and_printable(h: Harness, api: Api, name: str) -> None:
    text = 'NAME = "' + name + '"\nCPU = 1\nMEMORY = 64\n'  # a real newline in the quotes
    before = len(h.store.vms())
    refused(lambda: api.vm_allocate(CTX, text), AllocateError, "ame")
    assert len(h.store.vms()) == before


@pytest.mark.parametrize(
    "name", ["../../etc", "-oProxyCommand=x", "a b", "node\n1", "x" * 300, "a..b", ""]
)
def test_host_names_follow_hostname_syntax(h: Harness, api: Api, name: str) -> None:
    before = len(h.store.hosts())
    refused(lambda: api.host_allocate(CTX, name, "sim", "sim"), AllocateError)
    refused(lambda: api.host_rename(CTX, 0, name), ActionError)
    assert len(h.store.hosts()) == before
    assert h.host(0).name == "node1"


@pytest.mark.parametrize("name", ["node1", "node-1.example.com", "10.0.0.7", "fd00::1", "n_1"])
def test_good_host_names(name: str) -> None:
    assert is_host_name(name)


@pytest.mark.parametrize(
    "address", ["-oProxyCommand=touch /tmp/pwned", "a;b", "$(id)", "x y", "../h", "[x]"]
)
def test_host_address_is_validated(h: Harness, api: Api, address: str) -> None:
    text = 'ADDRESS = "' + address.replace('"', "") + '"'
    refused(lambda: api.host_update(CTX, 0, text, 1), InternalError, "ADDRESS")
    assert h.host(0).template.get("ADDRESS") is None
    api.host_update(CTX, 0, 'ADDRESS = "192.168.7.1"', 1)
    assert h.host(0).template.get("ADDRESS") == "192.168.7.1"


def test_hook_and_datastore_names(h: Harness, api: Api) -> None:
    hooks = hook_api(h)
    text = 'NAME="a\x07b"\nTYPE="state"\nRESOURCE="HOST"\nSTATE="ERROR"\nCOMMAND="x"\n'
    refused(lambda: hooks.allocate(CTX, text), AllocateError, "control characters")
    hook_id = hooks.allocate(CTX, text.replace("\x07", ""))
    refused(lambda: hooks.rename(CTX, hook_id, "n\r\nx"), ActionError, "control characters")
    ds = 'NAME="d\x00"\nTYPE="SYSTEM_DS"\nTM_MAD="shared"\n'
    refused(lambda: api.datastore_allocate(CTX, ds), AllocateError)


@pytest.mark.parametrize("append", [0, 1], ids=["replace", "append"])
def test_a_masked_host_template_written_back_keeps_the_fence_password(api: Api, h: Harness,
                                                                      append: int) -> None:
    """Before: reading the host (PASSWORD shown ****) and writing the template back with
    one.host.update stored "****": the next fence sent password=**** to the BMC."""
    from defusedxml import ElementTree as SafeET

    from lazarus.domain.xml import template_from_element

    api.host_update(CTX, 0, 'FENCE = [ AGENT = "fence_ipmilan", PASSWORD = "bmc-pw" ]\n'
                    'LABEL = "a"', 1)
    shown = template_from_element(SafeET.fromstring(api.host_info(CTX, 0)).find("TEMPLATE"))
    assert shown.vectors("FENCE")[0].get("PASSWORD") == "****"
    shown.set("LABEL", "b")
    api.host_update(CTX, 0, shown.render(), append)
    stored = h.store.host(0).template
    assert [v.get("PASSWORD") for v in stored.vectors("FENCE")] == ["bmc-pw"]
    assert stored.get("LABEL") == "b"


def test_refusals_never_echo_a_secret_word(api: Api) -> None:
    """Found by tests/integration/test_attack.py: the ADDRESS refusal echoed the value, and
    with it "passwd=<secret>", into the answer, $API, hook records and events."""
    message = refused(lambda: api.host_update(CTX, 0, 'ADDRESS = "h passwd=top-s3cret"', 1),
                      InternalError, "ADDRESS")
    assert "top-s3cret" not in message and "passwd=****" in message
