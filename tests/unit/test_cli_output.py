"""Pure parts of the CLI (no daemon): state filters, record building from XML, formatting,
and the one-line error contract."""

from __future__ import annotations

import io

import click
import pytest

from lazarus.cli.host import host_record
from lazarus.cli.output import (
    CliError,
    duration,
    parse_xml,
    size_mib,
    template_dict,
    template_lines,
)
from lazarus.cli.vm import parse_state, vm_record
from lazarus.domain.states import LcmState, VmState


@pytest.mark.parametrize(
    ("word", "server", "lcm_ok", "lcm_not"),
    [
        ("pending", VmState.PENDING, None, None),
        ("POWEROFF", VmState.POWEROFF, None, None),
        ("poff", VmState.POWEROFF, None, None),
        ("8", VmState.POWEROFF, None, None),
        ("-2", -2, None, None),
        ("done", VmState.DONE, None, None),
        ("running", VmState.ACTIVE, LcmState.RUNNING, LcmState.UNKNOWN),
        ("runn", VmState.ACTIVE, LcmState.RUNNING, LcmState.BOOT),
        ("unknown", VmState.ACTIVE, LcmState.UNKNOWN, LcmState.RUNNING),
        ("fail", VmState.ACTIVE, LcmState.BOOT_FAILURE, LcmState.RUNNING),
        ("prolog-migrate-unknown", VmState.ACTIVE, LcmState.PROLOG_MIGRATE_UNKNOWN, None),
    ],
)
def test_parse_state(word: str, server: int, lcm_ok: LcmState | None,
                     lcm_not: LcmState | None) -> None:
    state, check = parse_state(word)
    assert state == int(server)
    if lcm_ok is None:
        assert check is None
    else:
        assert check is not None and check(int(lcm_ok))
        assert lcm_not is None or not check(int(lcm_not))


def test_parse_state_rejects_unknown_words() -> None:
    with pytest.raises(click.BadParameter):
        parse_state("sleepy")


def test_vm_record_from_a_short_body() -> None:
    vm = parse_xml(
        "<VM><ID>4</ID><UID>0</UID><UNAME>oneadmin</UNAME><NAME>db</NAME><STATE>3</STATE>"
        "<LCM_STATE>16</LCM_STATE><RESCHED>0</RESCHED><STIME>100</STIME><ETIME>0</ETIME>"
        "<DEPLOY_ID>one-4</DEPLOY_ID><TEMPLATE><CPU>2</CPU><MEMORY>2048</MEMORY></TEMPLATE>"
        "<HISTORY_RECORDS><HISTORY><SEQ>0</SEQ><HOSTNAME>n1</HOSTNAME><HID>7</HID>"
        "<DS_ID>0</DS_ID><ACTION>0</ACTION></HISTORY></HISTORY_RECORDS></VM>"
    )
    record = vm_record(vm)
    assert record["STAT"] == "unkn" and record["STATE_LABEL"] == "ACTIVE/UNKNOWN"
    assert (record["HOST"], record["HOST_ID"], record["MEMORY"]) == ("n1", 7, 2048)
    pending = parse_xml("<VM><ID>5</ID><STATE>1</STATE><LCM_STATE>0</LCM_STATE></VM>")
    assert vm_record(pending)["STAT"] == "pend" and vm_record(pending)["HOST_ID"] == -1


def test_host_record_states_and_vms() -> None:
    host = parse_xml(
        "<HOST><ID>2</ID><NAME>n3</NAME><STATE>3</STATE><CLUSTER>default</CLUSTER>"
        "<HOST_SHARE><CPU_USAGE>100</CPU_USAGE><TOTAL_CPU>800</TOTAL_CPU></HOST_SHARE>"
        "<VMS><ID>1</ID><ID>4</ID></VMS></HOST>"
    )
    record = host_record(host)
    assert (record["STAT"], record["STATE_NAME"], record["VMS"]) == ("err", "ERROR", [1, 4])
    assert record["CPU_USAGE"] == 100 and record["TOTAL_CPU"] == 800


def test_templates_render_and_convert() -> None:
    tmpl = parse_xml(
        '<TEMPLATE><NAME>a "b"</NAME><FENCE><AGENT>fence_sim</AGENT><PORT>1</PORT></FENCE>'
        "<NIC><IP>1</IP></NIC><NIC><IP>2</IP></NIC></TEMPLATE>"
    )
    assert template_lines(tmpl) == [
        'NAME="a \\"b\\""',
        'FENCE=[\n  AGENT="fence_sim",\n  PORT="1" ]',
        'NIC=[\n  IP="1" ]',
        'NIC=[\n  IP="2" ]',
    ]
    assert template_dict(tmpl) == {
        "NAME": 'a "b"',
        "FENCE": {"AGENT": "fence_sim", "PORT": "1"},
        "NIC": [{"IP": "1"}, {"IP": "2"}],
    }


def test_formats() -> None:
    assert [size_mib(m) for m in (512, 1024, 1536, 16384, 2 * 1024 * 1024)] == [
        "512M", "1G", "1.5G", "16G", "2T"]
    assert duration(3 * 86400 + 4 * 3600 + 5 * 60 + 59) == "3d 04h05"
    assert duration(-5) == "0d 00h00"


def test_hostile_xml_is_refused() -> None:
    with pytest.raises(CliError, match="unreadable"):
        parse_xml('<!DOCTYPE x [<!ENTITY a "b">]><VM>&a;</VM>')


def test_cli_error_is_one_line() -> None:
    out = io.StringIO()
    CliError("[one.vm.info] first\nsecond  line").show(out)
    assert out.getvalue() == "lazarus: [one.vm.info] first second line\n"
    assert CliError("x").exit_code == 1
