"""Hooks: template validation, XML documents, and the manager on the virtual clock.

The manager runs inside a real Controller over SqliteStore.memory() and the simulated cluster,
with FakeHookExecutor in place of processes, so hosts fail and hooks fire in virtual time.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from defusedxml import ElementTree as SafeET
from lxml import etree

from helpers.core import Harness
from helpers.env import require_xsd
from lazarus.api.stack import build_dispatcher
from lazarus.core.controller import Controller
from lazarus.core.hooks import CURSOR, HookManager
from lazarus.domain.entities import Event, EventKind, ObjType, User
from lazarus.domain.errors import (
    AllocateError,
    InternalError,
    LockedError,
    NoExistsError,
    RpcApiError,
)
from lazarus.domain.hooks import (
    RUNNING,
    ExecutionRecord,
    ExecutionResult,
    Hook,
    HookJob,
    event_key,
    is_read_call,
    parse_hook,
    substitute,
    updated_template,
)
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.domain.xml.hooks import call_info_xml, hook_pool_xml, hook_xml
from lazarus.drivers.hooks.fake import FakeHookExecutor
from lazarus.ha.examples import error_hook_text

ERROR_HOOK = error_hook_text()  # the shipped file
NS = "http://opennebula.org/XMLSchema"
T = TypeVar("T")


def tpl(text: str) -> Template:
    return Template.parse(text)


# -- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TYPE=state\nCOMMAND=x\nRESOURCE=HOST\nSTATE=ERROR", "No NAME in template for Hook."),
        ("NAME=a\nTYPE=state\nRESOURCE=HOST\nSTATE=ERROR", "No COMMAND in template for Hook."),
        ("NAME=a\nCOMMAND=x", "No TYPE or invalid one in template for Hook."),
        ("NAME=a\nCOMMAND=x\nTYPE=bogus", "No TYPE or invalid one in template for Hook."),
        ("NAME=a\nCOMMAND=x\nTYPE=state", "RESOURCE attribute is required for STATE hooks."),
        ("NAME=a\nCOMMAND=x\nTYPE=state\nRESOURCE=DISK\nSTATE=X", "Invalid resource type: DISK"),
        ("NAME=a\nCOMMAND=x\nTYPE=state\nRESOURCE=HOST\nSTATE=BROKEN", "Invalid STATE: BROKEN"),
        ("NAME=a\nCOMMAND=x\nTYPE=state\nRESOURCE=VM\nON=SOON", "Unkown state condition: SOON"),
        (
            "NAME=a\nCOMMAND=x\nTYPE=state\nRESOURCE=VM\nON=CUSTOM\nSTATE=ACTIVE\nLCM_STATE=NOPE",
            "Wrong LCM_STATE: NOPE",
        ),
        ("NAME=a\nCOMMAND=x\nTYPE=api", "No CALL in template for API type Hook"),
        ("NAME=a\nCOMMAND=x\nTYPE=api\nCALL=one.vm.info", "only reads"),
        ("NAME=a\nCOMMAND=x\nTYPE=api\nCALL=one.hooklog.info", "only reads"),
        ("NAME=a\nCOMMAND=x\nTYPE=api\nCALL=one.vmpool.infoextended", "only reads"),
        ("NAME=a\nCOMMAND=x\nTYPE=api\nCALL=one.vm.nothing", "does not exist"),
        (
            "NAME=a\nCOMMAND=../../bin/sh\nTYPE=state\nRESOURCE=HOST\nSTATE=ERROR",
            "leaves the hooks directory",
        ),
    ],
)
def test_invalid_templates_are_refused_with_opennebula_texts(text: str, message: str) -> None:
    with pytest.raises(AllocateError) as info:
        parse_hook(tpl(text), known_calls={"one.vm.allocate", "one.vm.info"})
    assert message in info.value.message


def test_error_hook_is_normalised_as_oned_does() -> None:
    hook = parse_hook(tpl(ERROR_HOOK))
    assert (hook.name, hook.type, hook.key) == ("host_error", "state", "HOST/ERROR/")
    assert "NAME" not in hook.template and "TYPE" not in hook.template
    assert hook.template.get("REMOTE") == "NO"
    assert hook.stdin and not hook.remote and hook.timeout is None


@pytest.mark.parametrize(
    ("on", "key"),
    [
        ("PROLOG", "VM/ACTIVE/PROLOG"),
        ("RUNNING", "VM/ACTIVE/RUNNING"),
        ("SHUTDOWN", "VM/ACTIVE/EPILOG"),
        ("STOP", "VM/STOPPED/LCM_INIT"),
        ("DONE", "VM/DONE/LCM_INIT"),
        ("UNKNOWN", "VM/ACTIVE/UNKNOWN"),
    ],
)
def test_on_shortcuts_become_state_and_lcm_state(on: str, key: str) -> None:
    hook = parse_hook(tpl(f"NAME=v\nTYPE=STATE\nRESOURCE=vm\nON={on}\nCOMMAND=/bin/true"))
    assert hook.key == key and "ON" not in hook.template


def test_custom_vm_hook_and_api_hook_keys() -> None:
    custom = "NAME=c\nTYPE=state\nRESOURCE=VM\nON=CUSTOM\nSTATE=POWEROFF\nLCM_STATE=RUNNING\n"
    assert parse_hook(tpl(custom + "COMMAND=x")).key == "VM/POWEROFF/LCM_INIT"
    api = parse_hook(tpl("NAME=a\nTYPE=api\nCALL=one.vm.allocate\nCOMMAND=x\nREMOTE=TRUE"))
    assert api.key == "API one.vm.allocate" and api.template.get("REMOTE") == "YES"


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (Event(kind=EventKind.STATE, line="anything", obj=ObjType.HOST, obj_id=3,
               state="ERROR"), "HOST/ERROR/"),
        (Event(kind=EventKind.STATE, line="", obj=ObjType.VM, obj_id=5, state="ACTIVE",
               lcm_state="UNKNOWN"), "VM/ACTIVE/UNKNOWN"),
        (Event(kind=EventKind.API_CALL, line="reworded", obj=ObjType.API,
               method="one.vm.allocate"), "API one.vm.allocate"),
        # an inventory fact whose line happens to read like a method is not an API call
        (Event(kind=EventKind.TEMPLATE, line="one.host.update", obj=ObjType.HOST, obj_id=1),
         None),
        (Event(kind=EventKind.FLAG, line="vm/5: RESCHED=1", obj=ObjType.VM, obj_id=5,
               state="ACTIVE", lcm_state="UNKNOWN", flag="RESCHED", value="1"), None),
    ],
    ids=["host-state", "vm-state", "api-call", "template-note", "flag"],
)
def test_event_keys_come_from_fields_not_lines(event: Event, key: str | None) -> None:
    assert event_key(event.kind, event.obj, event.state, event.lcm_state, event.method) == key


def test_update_keeps_the_rules() -> None:
    hook = parse_hook(tpl(ERROR_HOOK))
    with pytest.raises(InternalError, match=r"The COMMAND attribute is not defined\."):
        updated_template(hook, tpl("ARGUMENTS = x"), append=False)
    with pytest.raises(InternalError, match="The STATE attribute is not defined"):
        updated_template(hook, tpl("COMMAND = x\nRESOURCE = HOST"), append=False)
    merged = updated_template(hook, tpl("TIMEOUT = 30"), append=True)
    assert merged.get("TIMEOUT") == "30" and merged.get("STATE") == "ERROR"


def test_a_masked_hook_template_written_back_keeps_its_secret_words() -> None:
    """one.hook.info shows ARGUMENTS "--password ****"; writing that template back whole
    stored the mask (the command then ran with the literal ****)."""
    from lazarus.domain.secrets import redact

    hook = parse_hook(tpl(ERROR_HOOK))
    hook.template.set("ARGUMENTS", "$TEMPLATE --password s3cret -p 1")
    shown = redact(hook.template)
    assert "s3cret" not in shown.render()
    new = updated_template(hook, shown, append=False)
    assert new.get("ARGUMENTS") == "$TEMPLATE --password s3cret -p 1"


def test_read_calls_and_substitution() -> None:
    assert is_read_call("one.vm.info") and is_read_call("one.hookpool.info")
    assert not is_read_call("one.vm.allocate") and not is_read_call("one.hook.retry")
    assert substitute("$TEMPLATE  -m -p 5 $API", "VA==", "QQ==") == "VA== -m -p 5 QQ=="


# -- XML --------------------------------------------------------------------------------------


def validate(xsd: str, document: str) -> None:
    root = etree.fromstring(document.encode())
    for elem in root.iter():
        if isinstance(elem.tag, str):
            elem.tag = f"{{{NS}}}{elem.tag}"
    schema = etree.XMLSchema(etree.parse(str(require_xsd(xsd))))
    assert schema.validate(root), f"{xsd}: {schema.error_log}\n{document[:1500]}"
    SafeET.fromstring(document)


def _record(**kw: Any) -> ExecutionRecord:
    base: dict[str, Any] = dict(
        hook_id=3, execution_id=0, timestamp=1_700_000_000, arguments="QQ== -m",
        result=ExecutionResult("ft/host_error", b"out ]]> \x00", b"err" * 50, 1),
    )
    base.update(kw)
    return ExecutionRecord(**base)


def test_hook_documents_validate_against_the_xsds() -> None:
    hook = parse_hook(tpl(ERROR_HOOK))
    hook.id = 3
    validate("hook.xsd", hook_xml(hook))
    records = [_record(), _record(execution_id=1, remote_host="node1", retry=True)]
    validate("hook.xsd", hook_xml(hook, records))
    hook.lock, hook.lock_time = 2, 1_700_000_000
    api = parse_hook(tpl("NAME=a\nTYPE=api\nCALL=one.vm.allocate\nCOMMAND=x"))
    validate("hook_pool.xsd", hook_pool_xml([hook, api]))
    validate("hook_pool.xsd", hook_pool_xml([]))


def test_stdout_is_base64_in_60_character_lines() -> None:
    doc = SafeET.fromstring(hook_xml(Hook(1, "h", "state"), [_record()]))
    text = doc.findtext("HOOKLOG/HOOK_EXECUTION_RECORD/EXECUTION_RESULT/STDERR") or ""
    assert all(len(line) <= 60 for line in text.split("\n"))
    assert base64.b64decode(text.replace("\n", "")) == b"err" * 50


def test_call_info_validates_and_masks_the_session() -> None:
    ok = call_info_xml(("NAME=x", False), [True, 7, 0], extra="<VM><ID>7</ID></VM>")
    validate("api_info.xsd", ok)
    root = SafeET.fromstring(ok)
    assert root.findtext("RESULT") == "1"
    values = [(p.findtext("TYPE"), p.findtext("POSITION"), p.findtext("VALUE"))
              for p in root.iter("PARAMETER")]
    assert ("IN", "1", "****") in values and ("OUT", "2", "7") in values
    failed = call_info_xml(("bad",), [False, "[one.vm.allocate] nope", 0x4000, -1, 0])
    validate("api_info.xsd", failed)
    assert SafeET.fromstring(failed).findtext("RESULT") == "0"


# -- the manager in a controller ----------------------------------------------------------------


class HookHarness(Harness):
    """A Harness whose controller has a hook manager with a fake executor."""

    def __init__(self, hosts: int = 2, **settings: Any) -> None:
        super().__init__(hosts=0, start=False)
        for name, value in settings.items():
            setattr(self.settings, name, value)
        self.fake = FakeHookExecutor(self.clock)
        self.controller = Controller(
            self.store, self.clock, {"sim": self.driver}, self.settings, hook_executor=self.fake
        )
        for index in range(hosts):
            self.add_host(f"node{index + 1}")
        self.run(self.controller.start())
        self.started = True
        self.monitored()

    def __enter__(self) -> HookHarness:
        return self

    @property
    def hooks(self) -> HookManager:
        assert self.controller.hooks is not None
        return self.controller.hooks

    def create(self, text: str) -> int:
        return OnLoopCall(self)(lambda: self.hooks.allocate(tpl(text)))

    def records(self, hook_id: int) -> list[ExecutionRecord]:
        return self.store.hook_records(hook_id)

    def fail(self, name: str) -> int:
        host_id = self.host_id(name)
        self.sim.power_off(name)
        self.wait_for(lambda: self.host(host_id).state is HostState.ERROR)
        return host_id

    def quiet(self) -> None:
        """Every recorded event dispatched, no job pending or running."""

        def done() -> bool:
            cursor = int(self.store.get_meta(CURSOR) or 0)
            return (
                not self.store.events(after_id=cursor, limit=1)
                and not self.store.hook_jobs()
                and self.fake.running == 0
            )

        self.wait_for(done)


class OnLoopCall:
    def __init__(self, h: Harness) -> None:
        self.h = h

    def __call__(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self.h.run(run())


def test_host_error_fires_every_hook_on_the_key_once_with_the_host_xml() -> None:
    with HookHarness() as h:
        first = h.create(ERROR_HOOK)
        second = h.create(ERROR_HOOK.replace("host_error", "second").replace("ft/second", "x"))
        h.create(ERROR_HOOK.replace("host_error", "on_mon").replace("ERROR", "MONITORED"))
        host_id = h.fail("node1")
        h.quiet()
        h.advance(30)  # more failed probes: no new transition, no new execution
        h.quiet()
        for hook_id in (first, second):
            [record] = h.records(hook_id)
            template_b64, *rest = record.arguments.split(" ")
            assert rest == ["-m", "-p", "5"]
            host = SafeET.fromstring(base64.b64decode(template_b64))
            assert host.findtext("ID") == str(host_id) and host.findtext("STATE") == "3"
            assert record.result.code == 0 and record.execution_id == 0
        request = next(r for r in h.fake.requests if r.hook_id == first)
        assert request.stdin and request.command == "ft/host_error" and not request.remote_host
        assert request.env["LAZARUS_HOOK_EXECUTION"].startswith(f"{first}:")


def test_vm_unknown_hook_and_remote_host_is_the_vms_host() -> None:
    with HookHarness() as h:
        hook_id = h.create(
            "NAME=vmu\nTYPE=state\nRESOURCE=VM\nON=UNKNOWN\nCOMMAND=notify\n"
            "ARGUMENTS=\"$TEMPLATE\"\nREMOTE=yes"
        )
        vm_id = h.running_vm("web", host="node1")
        h.fail("node1")
        h.wait_for(lambda: h.state(vm_id) == (VmState.ACTIVE, LcmState.UNKNOWN))
        h.quiet()
        [record] = h.records(hook_id)
        assert record.remote_host == "node1"
        vm = SafeET.fromstring(base64.b64decode(record.arguments))
        assert vm.findtext("ID") == str(vm_id) and vm.findtext("LCM_STATE") == "16"


def test_a_hook_does_not_fire_for_events_older_than_itself() -> None:
    with HookHarness() as h:
        h.fail("node1")
        hook_id = h.create(ERROR_HOOK)
        with h.store.transaction() as tx:
            tx.set_meta(CURSOR, "0")  # force a full rescan of the history
        h.hooks.notify()
        h.advance(10)
        h.quiet()
        assert h.records(hook_id) == []


def test_concurrency_is_capped() -> None:
    with HookHarness(hosts=1, hook_concurrency=3) as h:
        for index in range(8):
            h.create(ERROR_HOOK.replace("host_error", f"h{index}"))
        h.fake.duration = 5.0
        h.fail("node1")
        h.quiet()
        assert h.fake.max_running == 3 and len(h.fake.requests) == 8


def test_ha_hooks_have_their_own_lane() -> None:
    """API hooks busy on every slot (a flood of hooked calls) never delay ft/host_error."""
    with HookHarness(hosts=1, hook_concurrency=1) as h:
        api_hook = h.create("NAME=api\nTYPE=api\nCALL=one.host.update\nCOMMAND=slow")
        error_hook = h.create(ERROR_HOOK)
        h.fake.gate = asyncio.Event()  # every execution waits until the test opens the gate
        for _ in range(20):
            OnLoopCall(h)(lambda: h.hooks.record_api("one.host.update", "<CALL_INFO/>"))
        h.wait_for(lambda: h.fake.running == 1)  # the API lane is full
        h.fail("node1")
        h.wait_for(lambda: any(r.hook_id == error_hook for r in h.fake.requests))
        assert h.fake.running == 2  # one per lane: the API jobs wait, host_error runs
        h.fake.gate.set()
        h.quiet()
        assert len(h.records(api_hook)) == 20 and len(h.records(error_hook)) == 1


@pytest.mark.parametrize(
    ("text", "ha"),
    [
        (ERROR_HOOK, True),
        ("NAME=a\nTYPE=state\nRESOURCE=VM\nON=RUNNING\nCOMMAND=x", False),
        ("NAME=a\nTYPE=state\nRESOURCE=VM\nON=RUNNING\nCOMMAND=x\nHA=YES", True),
        ("NAME=a\nTYPE=api\nCALL=one.vm.allocate\nCOMMAND=x", False),
    ],
    ids=["host-state", "vm-state", "flagged", "api"],
)
def test_which_hooks_are_ha(text: str, ha: bool) -> None:
    assert parse_hook(tpl(text)).ha is ha


def test_retention_and_retry() -> None:
    with HookHarness(hosts=1, hook_log_retention=3) as h:
        hook_id = h.create(ERROR_HOOK)
        for _ in range(2):
            h.fail("node1")
            h.sim.power_on("node1")
            h.wait_for(lambda: h.host(h.host_id("node1")).state is HostState.MONITORED)
        h.quiet()
        first_args = h.records(hook_id)[0].arguments
        OnLoopCall(h)(lambda: h.hooks.update(hook_id, tpl("COMMAND=ft/other"), True))
        for source in (0, 2, 3):  # each retry of a retry keeps the recorded arguments
            OnLoopCall(h)(lambda: h.hooks.retry(hook_id, source))  # noqa: B023
            h.hooks.notify()
            h.quiet()
        records = h.records(hook_id)
        assert [r.execution_id for r in records] == [2, 3, 4]  # the last 3 kept
        assert all(r.retry for r in records) and records[-1].arguments == first_args
        assert h.fake.requests[-1].command == "ft/other"  # current settings, recorded args
        with pytest.raises(NoExistsError):
            OnLoopCall(h)(lambda: h.hooks.retry(hook_id, 0))  # dropped by retention


def test_interrupted_execution_is_recorded_and_run_again_once() -> None:
    with HookHarness(hosts=1) as h:
        hook_id = h.create(ERROR_HOOK)
        with h.store.transaction() as tx:  # what a SIGKILL mid-run leaves behind
            job = tx.add_hook_job(HookJob(-1, hook_id, 10_000, "QQ==", status=RUNNING, attempt=1))
        manager = HookManager(h.store, h.clock, h.fake, h.settings)
        assert manager.recover() == 1
        [interrupted] = h.records(hook_id)
        assert interrupted.interrupted and b"Interrupted" in interrupted.result.stderr
        assert interrupted.job_id == job.id
        h.hooks.notify()
        h.quiet()
        records = h.records(hook_id)
        assert [r.result.code for r in records] == [-1, 0]
        assert records[1].job_id == job.id  # same LAZARUS_HOOK_EXECUTION on the re-run
        assert h.fake.requests[-1].env["LAZARUS_HOOK_ATTEMPT"] == "2"


def test_crud_locks_and_delete_drops_the_log() -> None:
    with HookHarness(hosts=1) as h:
        call = OnLoopCall(h)
        hook_id = h.create(ERROR_HOOK)
        with pytest.raises(AllocateError, match="NAME is already taken"):
            h.create(ERROR_HOOK)
        call(lambda: h.hooks.lock(hook_id, 1))
        with pytest.raises(LockedError):
            call(lambda: h.hooks.delete(hook_id))
        with pytest.raises(LockedError):
            call(lambda: h.hooks.lock(hook_id, 2, True))
        call(lambda: h.hooks.unlock(hook_id))
        call(lambda: h.hooks.rename(hook_id, "renamed"))
        assert h.store.hook(hook_id).name == "renamed"
        h.fail("node1")
        h.quiet()
        call(lambda: h.hooks.delete(hook_id))
        assert h.store.hook_log(hook_id=hook_id) == []
        with pytest.raises(NoExistsError):
            h.store.hook(hook_id)


def test_api_hooks_fire_on_success_and_failure_through_the_dispatcher() -> None:
    with HookHarness(hosts=1) as h:
        admin = User(0, "oneadmin", "x")
        dispatcher = build_dispatcher(h.controller, lambda session: admin)

        def call(method: str, *params: object) -> list[object]:
            async def run() -> list[object]:
                return dispatcher.call(method, ["oneadmin:secret", *params])

            return h.run(run())

        ok = call("one.hook.allocate", "NAME=a\nTYPE=api\nCALL=one.vm.allocate\nCOMMAND=x\n"
                  "ARGUMENTS=\"$API\"")
        assert ok[0] is True
        hook_id = int(ok[1])  # type: ignore[call-overload]
        refused = call("one.hook.allocate", "NAME=b\nTYPE=api\nCALL=one.vm.info\nCOMMAND=x")
        assert refused[0] is False
        assert call("one.vm.allocate", 'NAME="v"\nCPU=1\nMEMORY=64')[0] is True
        assert call("one.vm.allocate", "NAME = [")[0] is False
        call("one.vm.info", 0)
        h.quiet()
        results = []
        for record in h.records(hook_id):
            info = SafeET.fromstring(base64.b64decode(record.arguments))
            results.append(info.findtext("RESULT"))
            assert "secret" not in base64.b64decode(record.arguments).decode()
        assert results == ["1", "0"]
        first = SafeET.fromstring(base64.b64decode(h.records(hook_id)[0].arguments))
        assert first.find("EXTRA/VM") is not None
        hook_doc = call("one.hook.info", hook_id)
        validate("hook.xsd", str(hook_doc[1]))
        def count(rc: int) -> int:
            log_doc = call("one.hooklog.info", -1, -1, hook_id, rc)
            return str(log_doc[1]).count("<HOOK_EXECUTION_RECORD>")

        assert (count(0), count(1), count(-1)) == (2, 2, 0)  # the fake exits 0
        assert "<HOOKLOG>" not in str(call("one.hookpool.info")[1])


def test_api_hook_on_host_update_keeps_no_secret() -> None:
    """The FENCE PASSWORD of a one.host.update is masked in $API, the event, the record's
    ARGUMENTS and output, and the hook's own literal ARGUMENTS secret in the record."""
    with HookHarness(hosts=1) as h:
        admin = User(0, "oneadmin", "x")
        dispatcher = build_dispatcher(h.controller, lambda session: admin)

        def call(method: str, *params: object) -> list[object]:
            async def run() -> list[object]:
                return dispatcher.call(method, ["oneadmin:pw", *params])

            return h.run(run())

        hook_id = h.create('NAME=a\nTYPE=api\nCALL=one.host.update\nCOMMAND=x\n'
                           'ARGUMENTS="--password clear-arg $API"')
        cursor = h.store.last_event_id()
        text = 'FENCE=[AGENT="fence_sim", PASSWORD="clear-fence", OPTIONS="passwd=clear-opt"]'
        assert call("one.host.update", h.host_id("node1"), text, 1)[0] is True
        h.quiet()
        [record] = h.records(hook_id)
        words = record.arguments.split()
        seen = [record.arguments, base64.b64decode(words[-1]).decode(),
                record.result.stdout.decode(), record.result.stderr.decode(),
                record.result.command]
        seen += [e.body + e.line for e in h.store.events(after_id=cursor, limit=100)]
        seen.append(str(call("one.hook.info", hook_id)[1]))
        for text_seen in seen:
            assert "clear-" not in text_seen, text_seen
        assert "FENCE" in seen[1] and "****" in seen[1]
        # the store keeps the real secret: only the shown copies are masked
        assert h.host(h.host_id("node1")).template.vectors("FENCE")[0].get("PASSWORD") == (
            "clear-fence")


@pytest.mark.parametrize(
    ("arguments", "stdin"),
    [('"$TEMPLATE -m"', True), ('"-m $TEMPLATE"', True), ('"plain -m"', False)],
    ids=["template-first", "template-later", "no-document"],
)
def test_a_document_argument_never_goes_to_argv(arguments: str, stdin: bool) -> None:
    """$TEMPLATE / $API in ARGUMENTS without ARGUMENTS_STDIN: the argument string goes to
    stdin anyway (argv is readable by every local user in /proc; docs/differences.md)."""
    with HookHarness() as h:
        h.create(f"NAME=e\nTYPE=state\nRESOURCE=HOST\nSTATE=ERROR\nCOMMAND=x\n"
                 f"ARGUMENTS={arguments}")
        h.fail("node1")
        h.quiet()
        [request] = h.fake.requests
        assert request.stdin is stdin


def read_only(h: Harness, on: bool) -> None:
    """The store as on a full disk or a read-only file system: every write fails."""
    h.store._writer.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


def test_a_run_whose_record_cannot_be_written_is_finished_when_the_store_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the failed finish left the job "running" (and its concurrency slot taken)
    until a restart; nothing retried it. Now the record is written again with backoff,
    each failure logged, and the job finishes once writes work."""
    with HookHarness(hosts=2) as h:
        hook_id = h.create(ERROR_HOOK)
        h.fake.duration = 5.0
        h.fail("node1")
        h.wait_for(lambda: h.fake.running == 1)
        read_only(h, True)
        h.advance(60)
        assert h.records(hook_id) == []
        assert sum("cannot write" in r.getMessage() for r in caplog.records
                   if r.levelname == "ERROR" and r.name == "lazarus.hooks") >= 2
        read_only(h, False)
        h.advance(120)
        h.quiet()
        [record] = h.records(hook_id)
        assert record.result.code == 0
        assert len([r for r in h.fake.requests if r.hook_id == hook_id]) == 1


def test_a_run_that_cannot_be_marked_running_starts_when_the_store_is_back() -> None:
    with HookHarness(hosts=2) as h:
        hook_id = h.create(ERROR_HOOK)
        with h.store.transaction() as tx:
            tx.add_hook_job(HookJob(-1, hook_id, 10_000, "QQ=="))
        read_only(h, True)
        h.hooks.notify()
        h.advance(30)
        assert h.fake.requests == [] and h.records(hook_id) == []
        read_only(h, False)
        h.advance(120)
        h.quiet()
        assert [r.result.code for r in h.records(hook_id)] == [0]


def test_events_are_pruned_once_dispatched_keeping_the_newest() -> None:
    """Before: the events table grew forever. EVENT_RETENTION keeps the newest N events;
    an event is never pruned before the hook outbox's cursor passed it."""
    with HookHarness(hosts=1, event_retention=5) as h:
        h.create(ERROR_HOOK)
        for _ in range(4):
            h.fail("node1")
            h.sim.power_on("node1")
            h.wait_for(lambda: h.host(h.host_id("node1")).state is HostState.MONITORED)
        h.quiet()
        last = h.store.last_event_id()
        kept = h.store.events(after_id=0, limit=1000)
        assert last > 5 and [e.id for e in kept] == list(range(last - 4, last + 1))
        cursor = int(h.store.get_meta(CURSOR) or 0)
        assert cursor == last


def test_undispatched_events_are_never_pruned() -> None:
    with HookHarness(hosts=1, event_retention=0) as h:  # 0: keep all
        h.quiet()
        last = h.store.last_event_id()
        assert last > 2 and h.store.events(after_id=0, limit=1)[0].id == 1
        h.settings.event_retention = 1
        with h.store.transaction() as tx:
            h.hooks.prune(tx, cursor=1)  # the cursor is behind: only event 1 may go
        assert [e.id for e in h.store.events(after_id=0, limit=1000)] == list(range(2, last + 1))


def test_stored_arguments_and_outputs_are_bounded_with_a_marker() -> None:
    with HookHarness(hosts=1, hook_record_limit=1000) as h:
        hook_id = h.create(ERROR_HOOK)
        h.fake.script["ft/host_error"] = ExecutionResult("ft/host_error", b"o" * 5000,
                                                         b"e" * 3000, 0)
        h.fail("node1")
        h.quiet()
        [record] = h.records(hook_id)
        assert len(record.arguments) < 1100 and record.arguments.endswith("bytes dropped]")
        assert record.result.stdout.startswith(b"o" * 900)
        assert b"[truncated: 4000 bytes dropped]" in record.result.stdout
        assert b"[truncated: 2000 bytes dropped]" in record.result.stderr
        request = next(r for r in h.fake.requests if r.hook_id == hook_id)
        assert len(request.arguments) > 1000  # the command itself got everything
        with pytest.raises(RpcApiError, match="truncated"):
            OnLoopCall(h)(lambda: h.hooks.retry(hook_id, 0))


def test_api_events_are_pruned_once_dispatched() -> None:
    """Before: EVENT_RETENTION kept the newest 100,000 events whatever their kind, and an API
    event holds the call's whole masked parameters (a template can be 256 KiB): 100,000 of
    them are tens of GB. Once dispatched, an API event has no reader (its jobs hold $API),
    so it goes at once; the newest event row always stays (last_event_id reads it)."""
    with HookHarness(hosts=1) as h:
        hook_id = h.create("NAME=api\nTYPE=api\nCALL=one.host.update\nCOMMAND=api-cmd")
        body = "<CALL_INFO>" + "x" * 100_000 + "</CALL_INFO>"
        for _ in range(5):
            OnLoopCall(h)(lambda: h.hooks.record_api("one.host.update", body))
        h.quiet()
        last = h.store.last_event_id()
        api = [e.id for e in h.store.events(after_id=0, limit=1000) if e.obj == "API"]
        assert api == [last]  # only the newest row, kept for the id sequence
        assert len([r for r in h.fake.requests if r.hook_id == hook_id]) == 5  # all ran
        h.fail("node1")  # a state event after it: the last API event goes too
        h.quiet()
        assert [e for e in h.store.events(after_id=0, limit=1000) if e.obj == "API"] == []
        assert h.store.events(after_id=0, limit=1000, kind="state")  # state history kept
