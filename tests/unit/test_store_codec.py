"""store/codec.py: every entity survives encode -> decode, for any template content."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from lazarus.domain.entities import VM, History, Host
from lazarus.domain.states import HistoryAction, LcmState, VmState
from lazarus.domain.template import Template, Vector
from lazarus.store import codec

names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
texts = st.text(max_size=12)
vectors = st.builds(Vector, st.lists(st.tuples(names, texts), max_size=4))
templates = st.builds(Template, st.lists(st.tuples(names, st.one_of(texts, vectors)), max_size=6))
histories = st.builds(
    History,
    oid=st.integers(0, 10**6),
    seq=st.integers(0, 50),
    hostname=texts,
    hid=st.integers(0, 10**4),
    stime=st.integers(0, 2**40),
    action=st.sampled_from(list(HistoryAction)),
    request_id=st.integers(-1, 10**6),
)


@settings(max_examples=60)
@given(
    template=templates,
    user_template=templates,
    history=st.lists(histories, max_size=3),
    state=st.sampled_from(list(VmState)),
    lcm=st.sampled_from(list(LcmState)),
    monitoring=st.dictionaries(names, texts, max_size=3),
)
def test_vm_round_trip(
    template: Template,
    user_template: Template,
    history: list[History],
    state: VmState,
    lcm: LcmState,
    monitoring: dict[str, str],
) -> None:
    vm = VM(
        id=4,
        name="x",
        state=state,
        lcm_state=lcm,
        template=template,
        user_template=user_template,
        history=history,
        monitoring=monitoring,
    )
    assert codec.decode_vm(4, codec.encode_vm(vm)) == vm


@settings(max_examples=40)
@given(template=templates)
def test_host_round_trip(template: Template) -> None:
    host = Host(id=1, name="n", template=template)
    assert codec.decode_host(1, codec.encode_host(host)) == host


def test_older_shorter_history_rows_decode_with_defaults() -> None:
    """A field appended to History later must not break rows written before it."""
    vm = VM(id=0, name="x", history=[History(oid=0, seq=0, hostname="n", hid=2, request_id=7)])
    body = json.loads(codec.encode_vm(vm))
    body["history"][0] = body["history"][0][:-1]  # as if request_id did not exist yet
    decoded = codec.decode_vm(0, json.dumps(body))
    assert decoded.history[0].hid == 2
    assert decoded.history[0].request_id == -1
