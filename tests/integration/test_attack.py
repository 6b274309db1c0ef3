"""The issue-20 re-attack, as a black box: a real `lazarus serve`, loopback only, bounded.

What a hostile client can try against the API, each probe asserting a clear refusal and that
nothing was lost or leaked:

* every method without credentials and with wrong ones: refused (AUTHENTICATION), nothing
  changed, no hook fired, no event row written;
* hostile XML-RPC bodies (entity bombs, external entities, 20 MB, deep nesting, invalid
  UTF-8, huge integers): refused, the daemon answers the next call;
* hostile templates (CPU=1e307, NaN, -1, 1 MB names, 50,000 attributes, control characters,
  `../../etc` host names, ADDRESS="-oProxyCommand=..."): refused with OpenNebula's error
  class, nothing stored;
* planted secrets (a FENCE PASSWORD, a VM CONTEXT PASSWORD) appear in no API answer, hook
  record, $API, event row or the daemon's log.

The daemon is module-scoped; probes are few and each is bounded in time.
"""

from __future__ import annotations

import base64
import http.client
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from defusedxml import ElementTree as SafeET

from helpers.daemon import Daemon, running_daemon, wait_for
from lazarus.api.client import Client, RpcFaultError, TransportError
from lazarus.api.wire import dumps_call
from lazarus.domain.errors import ApiError, AuthenticationError, ErrorCode

FENCE_SECRET = "fence-S3cret-pw-9f2"
CONTEXT_SECRET = "ctx-S3cret-pw-4d1"
SECRETS = (FENCE_SECRET, CONTEXT_SECRET)

# name -> XML-RPC signature (return, then parameters; the first is the session)
METHODS = {
    "one.system.version": "s", "one.system.config": "s", "one.hostpool.info": "siii",
    "one.host.info": "sib", "one.host.allocate": "ssssi", "one.host.delete": "si",
    "one.host.status": "sii", "one.host.update": "sisi", "one.host.rename": "sis",
    "lazarus.host.fenced": "si", "lazarus.host.fencecreds": "sis",
    "one.vmpool.info": "siiiis", "one.vmpool.infoextended": "siiiis", "one.vm.info": "sib",
    "one.vm.allocate": "ssb", "one.vm.action": "ssi", "one.vm.deploy": "siibis",
    "one.vm.migrate": "siibbii", "one.vm.recover": "sii", "one.datastorepool.info": "siii",
    "one.datastore.info": "sib", "one.datastore.allocate": "ssi", "one.cluster.info": "sib",
    "one.clusterpool.info": "siii", "one.hook.allocate": "ss", "one.hook.info": "sib",
    "one.hook.delete": "si", "one.hook.update": "sisi", "one.hook.rename": "sis",
    "one.hook.lock": "siib", "one.hook.unlock": "si", "one.hook.retry": "sii",
    "one.hookpool.info": "siii", "one.hooklog.info": "siiii", "lazarus.sim.power": "sss",
    "lazarus.sim.network": "sss", "lazarus.sim.hang": "ssb", "lazarus.sim.running": "si",
}
VALUES = {"i": 0, "b": False}
STRINGS = {  # a string parameter that would act, if the call got through
    "one.host.allocate": ["evil", "sim", "sim"], "one.host.update": ['LABEL = "evil"'],
    "one.host.rename": ["evil"], "one.vm.allocate": ['NAME = "evil"\nCPU = 1\nMEMORY = 64'],
    "one.vm.action": ["terminate-hard"], "one.datastore.allocate": ['NAME = "evil"'],
    "one.hook.allocate": ['NAME = "evil"\nTYPE = api\nCALL = one.vm.action\nCOMMAND = "x"'],
    "one.hook.update": ['COMMAND = "evil"'], "one.hook.rename": ["evil"],
    "lazarus.sim.power": ["node1", "off"], "lazarus.sim.network": ["node1", "cut"],
    "lazarus.sim.hang": ["node1"],
}
BAD_SESSIONS = ["", "oneadmin", "oneadmin:", "oneadmin:wrong", "nobody:x", "oneadmin:" + "x" * 5000,
                ":", "oneadmin:wrong\x00"]

HOOK_SCRIPT = "#!/bin/sh\n# echoes its stdin ($API, base64) and marks that it ran\n" \
              "touch {mark}\nexec cat\n"


def params(method: str) -> list[Any]:
    strings = list(STRINGS.get(method, []))
    out: list[Any] = []
    for kind in METHODS[method][1:]:
        out.append(strings.pop(0) if kind == "s" and strings else "x" if kind == "s"
                   else VALUES[kind])
    return out


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running_daemon(tmp_path_factory.mktemp("attack"))


@pytest.fixture(scope="module")
def world(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two hosts (one with a FENCE PASSWORD), a VM with a CONTEXT PASSWORD running, an API hook
    on every write a probe tries (its command marks that it ran and echoes $API)."""
    work = tmp_path_factory.mktemp("attack-hook")
    mark = work / "hook-ran"
    script = work / "echo_api"
    script.write_text(HOOK_SCRIPT.format(mark=mark))
    script.chmod(0o755)
    with daemon.client() as c:
        h1 = int(c.call("one.host.allocate", "node1", "sim", "sim", -1))
        c.call("one.host.update", h1, 'FENCE = [ AGENT = "fence_sim", PLUG = "node1", '
               f'PASSWORD = "{FENCE_SECRET}" ]', 1)
        h2 = int(c.call("one.host.allocate", "node2", "sim", "sim", -1))
        vm = int(c.call("one.vm.allocate", 'NAME = "victim"\nCPU = 1\nMEMORY = 64\n'
                        f'CONTEXT = [ PASSWORD = "{CONTEXT_SECRET}", USERNAME = "root" ]',
                        False))
        wait_for("the VM RUNNING", lambda: SafeET.fromstring(c.call("one.vm.info", vm))
                 .findtext("LCM_STATE") == "3")
        hooks = [int(c.call("one.hook.allocate",
                            f'NAME = "watch-{m}"\nTYPE = api\nCALL = "{m}"\n'
                            f'COMMAND = "{script}"\nARGUMENTS = "$API"'))
                 for m in ("one.host.update", "one.vm.allocate", "one.vm.action",
                           "one.host.allocate", "one.hook.delete", "one.vm.recover")]
    return {"hosts": [h1, h2], "vm": vm, "hooks": hooks, "mark": mark}


def state(daemon: Daemon, world: dict[str, Any]) -> dict[str, Any]:
    """What an attack could change: objects (without monitoring data), hooks, hook records,
    the number of event rows."""
    with daemon.client() as c:
        hosts = SafeET.fromstring(c.call("one.hostpool.info"))
        vms = SafeET.fromstring(c.call("one.vmpool.info", -2, -1, -1, -1, ""))
        hook_pool = c.call("one.hookpool.info", -2, -1, -1)
        log = c.call("one.hooklog.info", 0, 0, -1, 0)
        datastores = c.call("one.datastorepool.info", -2, -1, -1)
    return {
        "hosts": [(h.findtext("ID"), h.findtext("NAME"), h.findtext("STATE"),
                   SafeET.tostring(h.find("TEMPLATE"))) for h in hosts.findall("HOST")],
        "vms": [(v.findtext("ID"), v.findtext("NAME"), v.findtext("STATE"),
                 v.findtext("LCM_STATE")) for v in vms.findall("VM")],
        "hooks": hook_pool, "log": log, "datastores": datastores,
        "events": event_rows(daemon), "hook_ran": world["mark"].exists(),
    }


def event_rows(daemon: Daemon) -> int:
    db = sqlite3.connect(f"file:{daemon.data_dir / 'lazarus.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        db.close()


def raw_post(daemon: Daemon, body: bytes, headers: dict[str, str] | None = None,
             timeout: float = 30) -> tuple[int, bytes]:
    url = daemon.url.split("//", 1)[1]
    hostport, _, path = url.partition("/")
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/" + path, body, {"Content-Type": "text/xml", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    except (ConnectionError, http.client.HTTPException) as exc:  # refused by closing
        return -1, str(exc).encode()
    finally:
        conn.close()


def still_serves(daemon: Daemon) -> None:
    with daemon.client(timeout=10) as c:
        assert c.call("one.system.version")


# ------------------------------------------------------------------------- no credentials
def test_no_method_acts_without_valid_credentials(daemon: Daemon, world: dict[str, Any]) -> None:
    before = state(daemon, world)
    tried = 0
    for session in BAD_SESSIONS:
        with Client(daemon.url, session, timeout=10, retries=0) as client:
            for method in METHODS:
                try:
                    client.call(method, *params(method))
                except AuthenticationError:
                    tried += 1
                    continue
                except (ApiError, RpcFaultError, TransportError) as exc:
                    pytest.fail(f"{method} with session {session[:20]!r}: not an "
                                f"authentication failure: {exc}")
                pytest.fail(f"{method} with session {session[:20]!r} succeeded")
    assert tried == len(BAD_SESSIONS) * len(METHODS)
    assert state(daemon, world) == before  # nothing changed, no hook ran, no event row


# -------------------------------------------------------------------- hostile XML-RPC bodies
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
          + b"".join(b'<!ENTITY %s "%s">' % (chr(98 + i).encode(), (b"&" + chr(97 + i).encode()
                                                                    + b";") * 10)
                     for i in range(9))
          + b']><methodCall><methodName>one.system.version</methodName><params><param>'
          b"<value><string>&j;</string></value></param></params></methodCall>")
XXE = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
       b"<methodCall><methodName>one.host.allocate</methodName><params>"
       b"<param><value><string>&e;</string></value></param></params></methodCall>")


def call_body(method: str, values: str) -> bytes:
    return (f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>"
            f"{values}</params></methodCall>").encode()


@pytest.mark.parametrize("name", ["billion-laughs", "external-entity", "20MB", "deep-nesting",
                                  "invalid-utf8", "huge-int", "huge-i8", "not-xml",
                                  "escape-byte", "escape-reference"])
def test_hostile_bodies_are_refused(daemon: Daemon, world: dict[str, Any], name: str) -> None:
    session = daemon.session()
    s = f"<param><value><string>{session}</string></value></param>"
    bodies = {
        "billion-laughs": LAUGHS,
        "external-entity": XXE,
        "20MB": call_body("one.vm.allocate", s + "<param><value><string>" + "A" * 20_000_000
                          + "</string></value></param>"),
        "deep-nesting": call_body("one.host.update", s + "<param><value>"
                                  + "<array><data><value>" * 50_000
                                  + "</value></data></array>" * 50_000 + "</value></param>"),
        "invalid-utf8": call_body("one.vm.allocate", s).replace(
            b"</params>", b"<param><value><string>NAME=\xff\xfe\xc3(</string></value>"
            b"</param></params>"),
        "huge-int": call_body("one.host.delete", s + "<param><value><int>"
                              + "9" * 5000 + "</int></value></param>"),
        "huge-i8": call_body("one.vm.info", s + "<param><value><i8>"
                             + "9" * 40 + "</i8></value></param>"),
        "not-xml": b"\x00\x01 definitely not xml",
        "escape-byte": call_body("one.vm.allocate", s + "<param><value><string>NAME = \"a\x1b[2J"
                                 "\"\nCPU = 1\nMEMORY = 64</string></value></param>"),
        "escape-reference": call_body("one.vm.allocate", s + "<param><value><string>NAME = "
                                      "\"a&#27;[2J\"\nCPU = 1\nMEMORY = 64</string></value>"
                                      "</param>"),
    }
    before = state(daemon, world)
    status, answer = raw_post(daemon, bodies[name])
    assert status in (-1, 200, 400, 413), (status, answer[:200])
    if status == 200:  # an XML-RPC fault or an OpenNebula failure, never a success
        assert b"<name>faultCode</name>" in answer or b"<boolean>0</boolean>" in answer, \
            answer[:300]
    assert b"root:" not in answer and len(answer) < 100_000  # nothing read, nothing expanded
    still_serves(daemon)
    assert state(daemon, world) == before


# ----------------------------------------------------------------------- hostile templates
HOSTILE_VMS = {
    "cpu-1e307": 'NAME = "a"\nCPU = "1e307"\nMEMORY = 64',
    "cpu-nan": 'NAME = "a"\nCPU = "NaN"\nMEMORY = 64',
    "cpu-negative": 'NAME = "a"\nCPU = "-1"\nMEMORY = 64',
    "memory-inf": 'NAME = "a"\nCPU = 1\nMEMORY = "inf"',
    "name-1MB": f'NAME = "{"n" * 1_000_000}"\nCPU = 1\nMEMORY = 64',
    "50000-attributes": 'NAME = "a"\nCPU = 1\nMEMORY = 64\n'
                        + "".join(f"A{i} = {i}\n" for i in range(50_000)),
    "control-characters": 'NAME = "a\nforged: host/0 node1: MONITORED => ERROR"\nCPU = 1\n'
                          "MEMORY = 64",
    # C1 CSI (legal in XML 1.0, a terminal escape); the client replaces C0 ones (illegal in
    # XML) with U+FFFD, the raw-body probes send those
    "escape-in-name": 'NAME = "a\x9b2J"\nCPU = 1\nMEMORY = 64',
}


@pytest.mark.parametrize("name", list(HOSTILE_VMS))
def test_hostile_vm_templates_are_refused(daemon: Daemon, world: dict[str, Any],
                                          name: str) -> None:
    before = state(daemon, world)
    with daemon.client(timeout=30) as c, pytest.raises(ApiError) as refused:
        c.call("one.vm.allocate", HOSTILE_VMS[name], False)
    assert refused.value.code in (ErrorCode.ALLOCATE, ErrorCode.RPC_API), refused.value
    assert len(str(refused.value)) < 2000
    after = state(daemon, world)
    assert after["vms"] == before["vms"] and after["hosts"] == before["hosts"]


@pytest.mark.parametrize("call", [
    ("one.host.allocate", "../../etc", "sim", "sim", -1),
    ("one.host.allocate", "-oProxyCommand=touch /tmp/pwned", "sim", "sim", -1),
    ("one.host.allocate", "a" * 1_000_000, "sim", "sim", -1),
    ("one.host.rename", 0, "../../etc"),
    ("one.host.update", 0, 'ADDRESS = "-oProxyCommand=touch /tmp/pwned"', 1),
    ("one.host.update", 0, 'ADDRESS = "../../etc"', 0),
    ("one.host.update", 0, 'RESERVED_CPU = "NaN"', 1),
    ("one.datastore.allocate", 'NAME = "d\nforged"', -1),
    ("one.hook.allocate", 'NAME = "h"\nTYPE = api\nCALL = one.vm.action\nCOMMAND = "../../x"'),
    ("one.hook.allocate", 'NAME = "h"\nTYPE = api\nCALL = one.vm.action\nCOMMAND = "x"\n'
                          'TIMEOUT = "-1"'),
], ids=lambda call: call[0] + ":" + str(call[1:])[:30])
def test_hostile_host_and_hook_input_is_refused(daemon: Daemon, world: dict[str, Any],
                                                call: tuple[Any, ...]) -> None:
    before = state(daemon, world)
    method, *rest = call
    if method in ("one.host.rename", "one.host.update"):
        rest[0] = world["hosts"][1]
    with daemon.client(timeout=30) as c, pytest.raises(ApiError) as refused:
        c.call(method, *rest)
    assert len(str(refused.value)) < 2000
    after = state(daemon, world)
    for key in ("hosts", "vms", "hooks", "datastores"):
        assert after[key] == before[key], key
    assert not Path("/tmp/pwned").exists()


# --------------------------------------------------------------------------- planted secrets
def test_no_secret_in_any_answer_record_event_or_log(daemon: Daemon,
                                                     world: dict[str, Any]) -> None:
    h1, vm = world["hosts"][0], world["vm"]
    with daemon.client() as c:
        # a hooked call carrying a secret in its template parameter: $API must be masked
        c.call("one.host.update", h1, f'NOTE = "x"\nAPI_TOKEN = "{FENCE_SECRET}"', 1)
        # a refused hooked call whose error message echoes the value holding a secret word
        with pytest.raises(ApiError) as refused:
            c.call("one.host.update", h1, f'ADDRESS = "h passwd={FENCE_SECRET}"', 1)
        assert FENCE_SECRET not in str(refused.value)
        wait_for("the API hook's records", lambda: c.call(
            "one.hook.info", world["hooks"][0], False).count("<HOOK_EXECUTION_RECORD>") >= 2)
        answers = [
            c.call("one.host.info", h1, False), c.call("one.hostpool.info", -2, -1, -1),
            c.call("one.vm.info", vm, False), c.call("one.vmpool.info", -2, -1, -1, -1, ""),
            c.call("one.vmpool.infoextended", -2, -1, -1, -1, ""),
            c.call("one.hookpool.info", -2, -1, -1), c.call("one.hooklog.info", 0, 0, -1, 0),
            c.call("one.datastorepool.info", -2, -1, -1), c.call("one.clusterpool.info", -2,
                                                                 -1, -1),
            *[c.call("one.hook.info", h, False) for h in world["hooks"]],
        ]
    decoded = list(answers)
    for answer in answers:  # hook records: STDOUT/STDERR/ARGUMENTS are base64, $API inside
        for element in SafeET.fromstring(answer).iter():
            if element.tag in ("STDOUT", "STDERR", "ARGUMENTS") and element.text:
                decoded.append(b64(element.text))
                decoded.append(b64(b64(element.text)))
    db = sqlite3.connect(f"file:{daemon.data_dir / 'lazarus.db'}?mode=ro", uri=True)
    try:
        events = [f"{line} {body}" for line, body in db.execute("SELECT line, body FROM events")]
        jobs = [str(row) for row in db.execute("SELECT * FROM hook_jobs")]
    finally:
        db.close()
    logs = [daemon.log_path.read_text(errors="replace")]
    log_dir = daemon.data_dir / "log"
    logs += [p.read_text(errors="replace") for p in log_dir.glob("*")] if log_dir.is_dir() else []
    for where, texts in (("API answers and records", decoded), ("event rows", events),
                         ("hook jobs", jobs), ("daemon log", logs)):
        for secret in SECRETS:
            assert not any(secret in t for t in texts), f"{secret} in {where}"
    assert any("****" in t for t in decoded)  # the secrets were there, masked
    assert stat.S_IMODE(daemon.log_path.stat().st_mode) == 0o600


def b64(text: str) -> str:
    try:
        return base64.b64decode("".join(text.split()), validate=False).decode(errors="replace")
    except ValueError:
        return ""


def test_the_session_never_appears_in_records_or_logs(daemon: Daemon,
                                                      world: dict[str, Any]) -> None:
    password = daemon.session().split(":", 1)[1]
    with daemon.client() as c:
        texts = [c.call("one.hook.info", h, False) for h in world["hooks"]]
    texts += [b64(t) for t in texts]
    texts.append(daemon.log_path.read_text(errors="replace"))
    assert not any(password in t for t in texts)


def test_dumps_call_roundtrip_sanity() -> None:
    """The raw bodies above are built by hand; the client's own encoding stays plain."""
    assert b"<methodName>one.system.version</methodName>" in dumps_call(
        "one.system.version", ["oneadmin:x"])
