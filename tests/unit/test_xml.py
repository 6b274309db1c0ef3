"""Every document domain/xml renders validates against OpenNebula's XSDs and binds with pyone.

OpenNebula's XSDs declare a target namespace (elementFormDefault=qualified) while oned sends
documents without one, so `validate` moves every element into that namespace before checking.
The XSDs are not in the repository (helpers/env.py: XSD_DIR): without them these tests skip,
saying why; CI sets LAZARUS_REQUIRE_XSD=1, so there a missing schema fails instead.
"""

from __future__ import annotations

from typing import Any

import defusedxml.ElementTree as SafeET
import pyone.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from helpers.env import require_xsd
from lazarus.domain.entities import VM, Cluster, Datastore, History, Host, HostShare
from lazarus.domain.errors import TemplateSyntaxError
from lazarus.domain.states import HistoryAction, HostState, LcmState, VmState
from lazarus.domain.template import Template, Vector, quote
from lazarus.domain.xml import (
    VM_TEMPLATE_ATTRIBUTES,
    cdata,
    cluster_members,
    cluster_pool_xml,
    cluster_xml,
    config_xml,
    datastore_pool_xml,
    datastore_xml,
    esc,
    host_pool_xml,
    host_xml,
    split_vm_template,
    template_from_element,
    template_xml,
    vm_pool_extended_xml,
    vm_pool_xml,
    vm_short_xml,
    vm_xml,
)

NS = "http://opennebula.org/XMLSchema"
NASTY = 'a ]]> b & c < d > e "q" \'s\' ]] ] > é ü 中文 🙂 \\ back'

_schemas: dict[str, etree.XMLSchema] = {}


def schema(name: str) -> etree.XMLSchema:
    path = require_xsd(name)  # skips, with the reason, where the shared reference is absent
    if name not in _schemas:
        _schemas[name] = etree.XMLSchema(etree.parse(str(path)))
    return _schemas[name]


def validate(xsd: str, document: str) -> Any:
    """Assert `document` is valid for `xsd`; return what pyone binds it to."""
    root = etree.fromstring(document.encode())
    for elem in root.iter():
        if isinstance(elem.tag, str):
            elem.tag = f"{{{NS}}}{elem.tag}"
    xsd_schema = schema(xsd)
    assert xsd_schema.validate(root), f"{xsd}: {xsd_schema.error_log}\n{document[:2000]}"
    SafeET.fromstring(document)  # also well-formed for the hardened parser the API uses
    return pyone.bindings.parseString(document.encode())


def test_the_validation_harness_rejects_invalid_documents() -> None:
    good = host_xml(Host(1, "h"))
    validate("host.xsd", good)
    for bad in (
        good.replace("<STATE>0</STATE>", "<STATE>x</STATE>"),  # integer typed
        good.replace("<VMS></VMS>", ""),  # required element missing
        good.replace("<CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER>",
                     "<CLUSTER>default</CLUSTER><CLUSTER_ID>0</CLUSTER_ID>"),  # order
    ):  # fmt: skip
        assert bad != good
        with pytest.raises(AssertionError):
            validate("host.xsd", bad)


# -- entities -----------------------------------------------------------------------------------

FENCE = Template.parse(
    'FENCE = [ AGENT = "fence_ipmilan", IP = "10.0.0.3", USER = "admin" ]\n'
    'HOSTNAME = "node3"\nRESERVED_CPU = ""\nNOTE = ' + quote(NASTY) + "\n"
)


def make_host(state: HostState, monitored: bool = True) -> Host:
    host = Host(
        id=int(state),
        name=f"node{int(state)}",
        state=state,
        prev_state=HostState.MONITORED,
        cluster_id=0,
        share=HostShare(
            mem_usage=1024, cpu_usage=50, total_mem=8 << 20, total_cpu=400, max_mem=8 << 20,
            max_cpu=400, running_vms=2, free_mem=4 << 20, used_mem=4 << 20, free_cpu=300,
            used_cpu=100,
        ),
        vms=[10, 11],
        template=FENCE.copy(),
    )  # fmt: skip
    if monitored:
        host.last_monitored = 1_700_000_123.75
        host.monitoring = {"NETRX": "1234", "NETTX": "99.0", "FREE_CPU_FORECAST": "12.5"}
        host.monitoring.update({"FREE_DISK": "1000", "MAX_DISK": "2000", "USED_DISK": "1000"})
    return host


HOSTS = [make_host(s) for s in HostState] + [make_host(HostState.INIT, monitored=False)]


def make_vm(vm_id: int, records: int, **extra: object) -> VM:
    vm = VM(
        id=vm_id,
        name=f"vm-{vm_id}",
        state=VmState.ACTIVE,
        lcm_state=LcmState.RUNNING,
        prev_state=VmState.ACTIVE,
        prev_lcm_state=LcmState.BOOT,
        stime=1_700_000_000,
        deploy_id=f"one-{vm_id}",
        template=Template.parse(
            'CPU = "0.5"\nMEMORY = "256"\nVCPU = "1"\n'
            'DISK = [ IMAGE = "debian", DISK_ID = "0", SIZE = "2048", DEV_PREFIX = "vd" ]\n'
            'NIC = [ NETWORK = "pub", IP = "10.0.0.9", MAC = "02:00:0a:00:00:09", MODEL = "v" ]\n'
            'GRAPHICS = [ TYPE = "vnc", LISTEN = "0.0.0.0", KEYMAP = "de" ]\n'
            'CONTEXT = [ NETWORK = "YES", SSH_PUBLIC_KEY = "ssh-ed25519 AAAA" ]\n'
            'OS = [ ARCH = "x86_64" ]\nAUTOMATIC_REQUIREMENTS = "(CLUSTER_ID = 0)"\n'
        ),
        user_template=Template.parse('HA = "YES"\nHA_PRIORITY = "3"\nDESCRIPTION = "web"\n'),
        history=[
            History(oid=vm_id, seq=i, hostname=f"node{i}", hid=i, stime=100 * i, etime=100 * i + 50,
                    action=HistoryAction.MIGRATE, request_id=i)
            for i in range(records)
        ],
        monitoring={"CPU": "12.5", "MEMORY": "262144", "NETRX": "100", "STATE": "a"},
    )
    for key, value in extra.items():
        setattr(vm, key, value)
    return vm


VMS = [
    make_vm(0, 0, state=VmState.PENDING, lcm_state=LcmState.LCM_INIT, monitoring={}),
    make_vm(1, 1),
    make_vm(2, 2, lcm_state=LcmState.UNKNOWN, resched=True, lock=2),
    make_vm(3, 5, state=VmState.POWEROFF, lcm_state=LcmState.LCM_INIT),
    make_vm(
        4,
        2,
        name=NASTY,
        uname="u&<>",
        deploy_id="]]>",
        template=Template.parse(
            'CPU = "1"\nDISK = [ IMAGE = ' + quote(NASTY) + ', SIZE = "1" ]\n'
            'DISK = [ IMAGE = "second" ]\nNIC = [ IP = "]]>" ]\nFOO = "bar"\n'
            'VIDEO = [ VRAM = "16", TYPE = "virtio" ]\n'
            'SNAPSHOT = [ NAME = "s", HYPERVISOR_ID = "h", SNAPSHOT_ID = "0", TIME = "1", '
            'SYSTEM_DISK_SIZE = "0" ]\nSNAPSHOT = [ NAME = "incomplete" ]\n'
            'MEMORY = [ A = "vector where a string belongs" ]\nVMID = "4"\n'
        ),
        user_template=Template.parse('LABELS = "a,b"\nX = [ Y = "]]>]]>" ]\n'),
        monitoring={"CPU": "abc", "MEMORY": "1e5", "TIMESTAMP": "17.0", "DISKRDBYTES": "5"},
    ),
    make_vm(5, 1, template=Template([("CPU", "ctl\x00\x07\r\nend"), ("TM_MAD_SYSTEM", "ssh")])),
]


# -- validation of every document ---------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS, ids=lambda h: f"{h.state.name}-{h.last_monitored > 0}")
def test_host_document_validates_and_binds(host: Host) -> None:
    bound = validate("host.xsd", host_xml(host))
    assert host.id == bound.ID
    assert int(host.state) == bound.STATE
    assert bound.VMS.ID == [10, 11]
    assert bound.HOST_SHARE.TOTAL_CPU == 400
    assert bound.TEMPLATE["FENCE"]["AGENT"] == "fence_ipmilan"
    assert bound.TEMPLATE["NOTE"] == NASTY
    if host.last_monitored:
        capacity = bound.MONITORING.CAPACITY
        assert (capacity.FREE_CPU, capacity.USED_MEMORY) == (300, 4 << 20)
        assert bound.MONITORING.TIMESTAMP == 1_700_000_123
        assert bound.MONITORING.SYSTEM.NETTX == 99


def test_host_pool_validates() -> None:
    bound = validate("host_pool.xsd", host_pool_xml(HOSTS))
    assert [h.ID for h in bound.HOST] == [h.id for h in HOSTS]
    validate("host_pool.xsd", host_pool_xml([]))


@pytest.mark.parametrize("vm", VMS, ids=lambda vm: f"vm{vm.id}-{len(vm.history)}records")
def test_vm_full_document_validates_and_binds(vm: VM) -> None:
    document = vm_xml(vm)
    bound = validate("vm.xsd", document)
    assert vm.id == bound.ID
    assert vm.name == bound.NAME
    assert (vm.state, vm.lcm_state) == (bound.STATE, bound.LCM_STATE)
    assert int(vm.resched) == bound.RESCHED
    history = bound.HISTORY_RECORDS.HISTORY
    assert [h.SEQ for h in history] == [h.seq for h in vm.history]
    assert [h.HOSTNAME for h in history] == [h.hostname for h in vm.history]
    assert all(h.ACTION == HistoryAction.MIGRATE for h in history)
    assert bound.TEMPLATE["VMID"] == str(vm.id)
    assert "TM_MAD_SYSTEM" in bound.TEMPLATE
    if vm.lock:
        assert vm.lock == bound.LOCK.LOCKED


@pytest.mark.parametrize("vm", VMS, ids=lambda vm: f"vm{vm.id}-{len(vm.history)}records")
def test_vm_short_document_validates_with_only_the_last_history(vm: VM) -> None:
    bound = validate("vm_pool.xsd", f"<VM_POOL>{vm_short_xml(vm)}</VM_POOL>")
    (short,) = bound.VM
    history = short.HISTORY_RECORDS.HISTORY
    if vm.history:
        assert [h.SEQ for h in history] == [vm.history[-1].seq]
        assert vm.history[-1].hostname == history[0].HOSTNAME
        assert vm.history[-1].ds_id == history[0].DS_ID
    else:
        assert history == []
    assert vm.name == short.NAME
    assert vm.state == short.STATE


def test_vm_pools_validate() -> None:
    short = validate("vm_pool.xsd", vm_pool_xml(VMS))
    assert [v.ID for v in short.VM] == [v.id for v in VMS]
    extended = validate("vm_pool_extended.xsd", vm_pool_extended_xml(VMS))
    assert [v.ID for v in extended.VM] == [v.id for v in VMS]
    validate("vm_pool.xsd", vm_pool_xml([]))
    validate("vm_pool_extended.xsd", vm_pool_extended_xml([]))


def test_vm_attributes_the_xsd_does_not_allow_in_template_show_in_user_template() -> None:
    vm = VMS[4]
    root = SafeET.fromstring(vm_xml(vm))
    template = template_from_element(root.find("TEMPLATE"))
    user = template_from_element(root.find("USER_TEMPLATE"))
    assert template.get("FOO") is None and user.get("FOO") == "bar"
    assert [v.get("NAME") for v in template.vectors("SNAPSHOT")] == ["s"]
    assert [v.get("NAME") for v in user.vectors("SNAPSHOT")] == ["incomplete"]
    assert template.vectors("MEMORY") == [] and len(user.vectors("MEMORY")) == 1
    assert [v.get("IMAGE") for v in template.vectors("DISK")] == [NASTY, "second"]
    assert template.vectors("NIC")[0].get("IP") == "]]>"
    # typed vectors are written in the XSD's child order, integers normalised
    assert [k for k, _ in template.vectors("VIDEO")[0].pairs] == ["TYPE", "VRAM"]


def test_vm_monitoring_keeps_only_typed_values_the_xsd_knows() -> None:
    root = SafeET.fromstring(vm_xml(VMS[4]))
    monitoring = {child.tag: child.text for child in root.find("MONITORING")}
    assert monitoring == {"DISKRDBYTES": "5", "TIMESTAMP": "17"}


def test_short_body_keeps_the_short_fields() -> None:
    root = SafeET.fromstring(vm_short_xml(VMS[1]))
    template = template_from_element(root.find("TEMPLATE"))
    assert [name for name, _ in template] == ["CPU", "MEMORY", "VCPU", "DISK", "NIC", "GRAPHICS"]
    assert template.vectors("DISK")[0].as_dict() == {"IMAGE": "debian", "DISK_ID": "0",
                                                     "SIZE": "2048"}  # fmt: skip
    assert "MODEL" not in template.vectors("NIC")[0].as_dict()
    user = template_from_element(root.find("USER_TEMPLATE"))
    assert [name for name, _ in user] == ["HA", "HA_PRIORITY"]
    assert root.find("PERMISSIONS") is None and root.find("PREV_STATE") is None


def test_text_xml_cannot_carry_is_replaced_and_cr_survives() -> None:
    root = SafeET.fromstring(vm_xml(VMS[5]))
    assert root.find("TEMPLATE/CPU").text == "ctl\ufffd\ufffd\r\nend"


@pytest.mark.parametrize(
    "ds",
    [
        Datastore(0, "system", template=Template.parse('SHARED = "YES"\nTYPE = "SYSTEM_DS"')),
        Datastore(1, "local & <img>", type=0, ds_mad="fs", tm_mad="ssh", base_path="/var/x",
                  cluster_ids=[0, 100], total_mb=10, free_mb=4, used_mb=6, state=1),
    ],
    ids=["system", "image"],
)
def test_datastore_validates_and_binds(ds: Datastore) -> None:
    bound = validate("datastore.xsd", datastore_xml(ds))
    assert (ds.id, ds.name, ds.type) == (bound.ID, bound.NAME, bound.TYPE)
    assert ds.cluster_ids == bound.CLUSTERS.ID
    assert bound.TEMPLATE.get("SHARED") == ds.template.get("SHARED")
    pool = validate("datastore_pool.xsd", datastore_pool_xml([ds, ds]))
    assert len(pool.DATASTORE) == 2


def test_cluster_validates_and_lists_members() -> None:
    cluster = Cluster(0, "default", template=Template.parse('RESERVED_CPU = ""'))
    bound = validate("cluster.xsd", cluster_xml(cluster, [1, 2], [0, 1], [7]))
    assert (bound.HOSTS.ID, bound.DATASTORES.ID, bound.VNETS.ID) == ([1, 2], [0, 1], [7])
    hosts = [Host(2, "b", cluster_id=0), Host(1, "a", cluster_id=0), Host(3, "c", cluster_id=100)]
    stores = [Datastore(1, "x", cluster_ids=[0, 100]), Datastore(0, "y")]
    host_ids, ds_ids = cluster_members(hosts, stores)
    assert host_ids == {0: [1, 2], 100: [3]} and ds_ids == {0: [0, 1], 100: [1]}
    clusters = [cluster, Cluster(100, "edge"), Cluster(101, "empty")]
    pool = validate("cluster_pool.xsd", cluster_pool_xml(clusters, host_ids, ds_ids))
    assert [c.HOSTS.ID for c in pool.CLUSTER] == [[1, 2], [3], []]


def test_config_validates_in_schema_order_with_integers() -> None:
    settings: dict[str, str | int | float] = {
        "PORT": 2633, "monitoring_interval_host": 180.0, "MANAGER_TIMER": "15",
        "DEFAULT_UMASK": 177, "LISTEN_ADDRESS": "127.0.0.1", "LAZARUS_ONLY": "skipped",
    }  # fmt: skip
    document = config_xml(settings)
    bound = validate("opennebula_configuration.xsd", document)
    assert bound.MONITORING_INTERVAL_HOST == 180
    assert bound.PORT == 2633
    assert "LAZARUS_ONLY" not in document and "180.0" not in document
    validate("opennebula_configuration.xsd", config_xml({}))
    with pytest.raises(ValueError, match="MONITORING_INTERVAL_HOST"):
        config_xml({"MONITORING_INTERVAL_HOST": 1.5})


# -- templates ----------------------------------------------------------------------------------


def test_template_xml_shape_and_round_trip() -> None:
    template = Template.parse(
        'KEY = "v"\nVEC = [ A = "b", C = ' + quote(NASTY) + ' ]\nKEY = "again"\n'
    )
    document = template_xml("TEMPLATE", template)
    assert document.startswith(
        "<TEMPLATE><KEY><![CDATA[v]]></KEY><VEC><A><![CDATA[b]]></A><C><![CDATA[a ]]]]>"
    )
    assert template_from_element(SafeET.fromstring(document)) == template


def test_template_from_element_reads_pyone_style_xml() -> None:
    root = SafeET.fromstring(
        "<TEMPLATE><cpu>1</cpu><DISK><IMAGE><![CDATA[x]]></IMAGE><SIZE>3</SIZE></DISK>"
        "<DISK><IMAGE>y</IMAGE></DISK><EMPTY/></TEMPLATE>"
    )
    assert template_from_element(root) == Template(
        [("CPU", "1"), ("DISK", Vector([("IMAGE", "x"), ("SIZE", "3")])),
         ("DISK", Vector([("IMAGE", "y")])), ("EMPTY", "")]
    )  # fmt: skip
    assert template_from_element(SafeET.fromstring("<ANY><A>b</A></ANY>")).get("A") == "b"


@pytest.mark.parametrize(
    "document",
    ["<T><A><B><C>deep</C></B></A></T>", "<T><x:A xmlns:x='urn:x'>1</x:A></T>"],
)
def test_template_from_element_refuses_what_templates_cannot_hold(document: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        template_from_element(SafeET.fromstring(document))


XML_CHARS = st.sampled_from("\t\n\r") | st.characters(
    min_codepoint=0x20, blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff"
)
NAMES = st.builds(
    lambda first, rest: (first + rest).upper(),
    st.sampled_from("ABCXYZ_abc"),
    st.text("ABZaz09_.-", max_size=8),
)
VALUES = st.text(XML_CHARS, max_size=30) | st.sampled_from(["]]>", "]]", "]", "a]]>b]]>", "&<>"])
ATTRS = st.lists(
    st.tuples(
        NAMES,
        VALUES | st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=4).map(Vector),
    ),
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(ATTRS)
def test_template_xml_round_trips(items: list[tuple[str, str | Vector]]) -> None:
    template = Template(list(items))
    root = SafeET.fromstring(template_xml("TEMPLATE", template))
    assert template_from_element(root) == template


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_escaping_always_gives_well_formed_xml(value: str) -> None:
    document = f"<R><A>{esc(value)}</A><B>{cdata(value)}</B></R>"
    root = SafeET.fromstring(document)
    cleaned = "".join(c if c in "\t\n\r" or " " <= c < "\ud800" or "\ue000" <= c < "\ufffe"
                      or c >= "\U00010000" else "\ufffd" for c in value)  # fmt: skip
    assert (root.find("A").text or "") == cleaned
    assert (root.find("B").text or "") == cleaned


def test_split_vm_template() -> None:
    system, user = split_vm_template(VMS[4].template)
    assert set(name for name, _ in system) <= VM_TEMPLATE_ATTRIBUTES
    assert [name for name, _ in user] == ["FOO", "SNAPSHOT", "MEMORY"]
    assert len(system) + len(user) == len(VMS[4].template)
