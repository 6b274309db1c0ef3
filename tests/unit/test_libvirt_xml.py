"""The libvirt driver's pure parts: domain XML, state mapping, names, URIs.

domain_xml needs no libvirt at all; the XML is also checked against libvirt's own RelaxNG
schema when it is installed (/usr/share/libvirt/schemas, from libvirt-daemon).
"""

from __future__ import annotations

from pathlib import Path

import defusedxml.ElementTree as SafeET
import pytest

from lazarus.domain.entities import Host
from lazarus.domain.template import Template, Vector
from lazarus.drivers.vmm.libvirt import (
    LibvirtHypervisor,
    default_domain_type,
    domain_xml,
    vm_id_of,
)
from lazarus.ports.hypervisor import DiskSpec, DomainState, VmSpec

SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")

NASTY = "/var/lib/one/<ds>/a&b'\"c.qcow2"


def full_spec() -> VmSpec:
    return VmSpec(
        vm_id=12,
        name="one-12",
        vcpu=2,
        cpu=150,
        memory_kib=65536,
        disks=(
            DiskSpec(NASTY, target="vda", format="qcow2", readonly=True),
            DiskSpec("/data/disk.1", target="sdb"),
        ),
        serial_path="/var/log/one/12 <serial>.log",
    )


@pytest.mark.parametrize("domain_type", ["qemu", "kvm", "test"])
def test_domain_xml_carries_the_spec_and_escapes_paths(domain_type: str) -> None:
    root = SafeET.fromstring(domain_xml(full_spec(), domain_type))
    assert root.get("type") == domain_type
    assert root.findtext("name") == "one-12"
    assert root.find("memory").get("unit") == "KiB"
    assert root.findtext("memory") == "65536"
    assert root.findtext("vcpu") == "2"
    assert root.findtext("on_poweroff") == "destroy"
    disks = root.findall("devices/disk")
    assert [d.find("source").get("file") for d in disks] == [NASTY, "/data/disk.1"]
    assert [d.find("driver").get("type") for d in disks] == ["qcow2", "raw"]
    assert [d.find("target").get("bus") for d in disks] == ["virtio", "scsi"]
    assert [d.find("readonly") is not None for d in disks] == [True, False]
    serial = root.find("devices/serial")
    assert serial.get("type") == "file"
    assert serial.find("source").get("path") == "/var/log/one/12 <serial>.log"
    machine = root.find("os/type").get("machine")
    assert machine == (None if domain_type == "test" else "pc")
    assert root.find("uuid") is None


def test_domain_xml_optional_parts() -> None:
    template = Template()
    template.set("OS", Vector([("ARCH", "aarch64"), ("MACHINE", "virt")]))
    template.set("EMULATOR", "/usr/bin/qemu-system-aarch64")
    spec = VmSpec(vm_id=1, name="one-1", vcpu=0, cpu=10, memory_kib=1024, template=template)
    root = SafeET.fromstring(domain_xml(spec, "qemu", uuid="2b1e1e1e-0000-4000-8000-000000000001"))
    assert root.findtext("uuid") == "2b1e1e1e-0000-4000-8000-000000000001"
    assert root.find("os/type").attrib == {"arch": "aarch64", "machine": "virt"}
    assert root.findtext("devices/emulator") == "/usr/bin/qemu-system-aarch64"
    assert root.findtext("vcpu") == "1"  # at least one
    assert root.find("devices/serial") is None


@pytest.mark.skipif(not SCHEMA.exists(), reason="libvirt's RelaxNG schemas are not installed")
@pytest.mark.parametrize("domain_type", ["qemu", "test"])
def test_domain_xml_validates_against_libvirts_schema(domain_type: str) -> None:
    lxml_etree = pytest.importorskip("lxml.etree")
    schema = lxml_etree.RelaxNG(lxml_etree.parse(str(SCHEMA)))
    document = lxml_etree.fromstring(domain_xml(full_spec(), domain_type).encode())
    assert schema.validate(document), schema.error_log


def test_vm_ids_come_from_one_names_only() -> None:
    assert vm_id_of("one-42") == 42
    assert [vm_id_of(n) for n in ("test", "one-", "one-4x", "xone-4", "one-4-b")] == [None] * 5


def test_uri_and_domain_type() -> None:
    template = Template()
    template.set("LIBVIRT_URI", "test+unix:///default?socket=/tmp/s")
    assert LibvirtHypervisor.uri(Host(id=0, name="n1", template=template)) == (
        "test+unix:///default?socket=/tmp/s"
    )
    assert LibvirtHypervisor.uri(Host(id=1, name="n2")) == "qemu+tcp://n2/system"
    assert default_domain_type("test:///tmp/node.xml") == "test"
    assert default_domain_type("test+tcp://127.0.0.1:1/default") == "test"
    assert default_domain_type("qemu+tcp://10.0.0.5/system") == "qemu"


def test_state_mapping() -> None:
    libvirt = pytest.importorskip("libvirt")
    from lazarus.drivers.vmm.libvirt import map_state

    assert map_state(libvirt.VIR_DOMAIN_RUNNING) is DomainState.RUNNING
    assert map_state(libvirt.VIR_DOMAIN_BLOCKED) is DomainState.RUNNING
    assert map_state(libvirt.VIR_DOMAIN_SHUTDOWN) is DomainState.RUNNING  # still going down
    assert map_state(libvirt.VIR_DOMAIN_PAUSED) is DomainState.SUSPENDED
    assert map_state(libvirt.VIR_DOMAIN_PMSUSPENDED) is DomainState.SUSPENDED
    assert map_state(libvirt.VIR_DOMAIN_SHUTOFF) is DomainState.POWEROFF
    crashed_off = libvirt.VIR_DOMAIN_SHUTOFF_CRASHED
    assert map_state(libvirt.VIR_DOMAIN_SHUTOFF, crashed_off) is DomainState.FAILURE
    assert map_state(libvirt.VIR_DOMAIN_CRASHED) is DomainState.FAILURE


def test_reasons_and_events_for_vm_ha() -> None:
    lv = pytest.importorskip("libvirt")
    from lazarus.drivers.vmm.libvirt import event_kind, map_reason, map_state

    assert map_state(lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_PAUSED_WATCHDOG) is DomainState.FAILURE
    assert map_reason(lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_PAUSED_WATCHDOG) == "watchdog"
    assert map_reason(lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_PAUSED_IOERROR) == "io_error"
    assert map_reason(lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_PAUSED_USER) == ""
    assert map_reason(lv.VIR_DOMAIN_SHUTOFF, lv.VIR_DOMAIN_SHUTOFF_CRASHED) == "crashed"
    assert map_reason(lv.VIR_DOMAIN_SHUTOFF, lv.VIR_DOMAIN_SHUTOFF_SHUTDOWN) == "shutdown"
    assert map_reason(lv.VIR_DOMAIN_CRASHED, lv.VIR_DOMAIN_CRASHED_PANICKED) == "panicked"
    assert map_reason(lv.VIR_DOMAIN_RUNNING) == ""
    stopped = lv.VIR_DOMAIN_EVENT_STOPPED
    assert event_kind(stopped, lv.VIR_DOMAIN_EVENT_STOPPED_FAILED) == "crashed"
    assert event_kind(stopped, lv.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN) == "shutdown"
    assert event_kind(stopped, lv.VIR_DOMAIN_EVENT_STOPPED_DESTROYED) == "stopped"
    assert event_kind(lv.VIR_DOMAIN_EVENT_CRASHED, 0) == "panicked"
    suspended = lv.VIR_DOMAIN_EVENT_SUSPENDED
    assert event_kind(suspended, lv.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR) == "io_error"
    assert event_kind(suspended, lv.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG) == "watchdog"
    assert event_kind(lv.VIR_DOMAIN_EVENT_STARTED, 0) == ""


def test_liveness_devices_and_the_commands_socket() -> None:
    spec = VmSpec(vm_id=1, name="one-1", vcpu=1, cpu=100, memory_kib=1024,
                  template=Template.parse('SERIAL_SOCKET = "/ds/one-1.sock"'))
    root = SafeET.fromstring(domain_xml(spec, "qemu"))
    assert root.find("devices/watchdog").attrib == {"model": "i6300esb", "action": "pause"}
    assert root.find("devices/panic").get("model") == "isa"
    serial = root.find("devices/serial[@type='unix']")
    assert serial.find("source").attrib == {"mode": "bind", "path": "/ds/one-1.sock"}
    assert serial.find("target").get("port") == "1"
    off = VmSpec(vm_id=1, name="one-1", vcpu=1, cpu=100, memory_kib=1024,
                 template=Template.parse('WATCHDOG_MODEL = "none"\nPANIC_DEVICE = "NO"'))
    root = SafeET.fromstring(domain_xml(off, "qemu"))
    assert root.find("devices/watchdog") is None and root.find("devices/panic") is None
    assert SafeET.fromstring(domain_xml(spec, "test")).find("devices/watchdog") is None


def test_tcp_addresses_are_probed_before_libvirt_opens_them() -> None:
    from lazarus.drivers.vmm.libvirt import _tcp_address

    assert _tcp_address("qemu+tcp://10.0.0.5/system") == ("10.0.0.5", 16509)
    assert _tcp_address("test+tcp://127.0.0.1:1234/default") == ("127.0.0.1", 1234)
    assert _tcp_address("qemu+tls://admin@hv.example:99/system") == ("hv.example", 99)
    assert _tcp_address("qemu+tcp://[::1]:5/system") == ("::1", 5)
    for other in ("qemu+ssh://hv/system", "test:///n.xml", "test+unix:///default?socket=/s"):
        assert _tcp_address(other) is None


def test_real_domains_get_no_usb_controller_unless_they_ask_for_input_devices() -> None:
    # libvirt adds a USB controller by default; the BIOS initialising it costs each TCG boot
    # about 0.07 s of CPU (docs/benchmarks.md), and no HA guest device needs it.
    def usb(spec: VmSpec, domain_type: str = "qemu") -> list[str | None]:
        root = SafeET.fromstring(domain_xml(spec, domain_type))
        return [c.get("model") for c in root.findall("devices/controller[@type='usb']")]

    assert usb(full_spec()) == ["none"]
    assert usb(full_spec(), "test") == []
    template = Template()
    template.add("INPUT", Vector([("TYPE", "tablet"), ("BUS", "usb")]))
    spec = VmSpec(vm_id=1, name="one-1", vcpu=1, cpu=10, memory_kib=1024, template=template)
    assert usb(spec) == []


def test_the_tcp_reach_check_has_its_own_short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead host's re-probe fails after reach_timeout (0.5 s), not PROBE_TIMEOUT; the wait
    for another caller's open keeps connect_timeout (a busy libvirtd's handshake is slow)."""
    pytest.importorskip("libvirt")
    import lazarus.drivers.vmm.libvirt as module
    from lazarus.domain.errors import TemporaryDriverError

    asked: list[tuple[tuple[str, int], float]] = []

    def unreachable(address: tuple[str, int], timeout: float) -> None:
        asked.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(module.socket, "create_connection", unreachable)
    driver = LibvirtHypervisor()
    assert (driver.reach_timeout, driver.connect_timeout, driver.keepalive_count) == (0.5, 5.0, 2)
    with pytest.raises(TemporaryDriverError, match="cannot reach"):
        driver._open("qemu+tcp://10.0.0.5/system")
    assert asked == [(("10.0.0.5", 16509), 0.5)]
