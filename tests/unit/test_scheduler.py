"""Scheduler placement rules (OpenNebula's resched and placement rules)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.core import Harness
from lazarus.core.scheduler import Placement, candidates, plan
from lazarus.domain.entities import VM, History, Host, HostShare
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template

S, L, H = VmState, LcmState, HostState


def host(hid: int, state: HostState = H.MONITORED, cpu_used: int = 0, vms: int = 0) -> Host:
    share = HostShare(total_cpu=800, total_mem=8 << 20, cpu_usage=cpu_used,
                      mem_usage=cpu_used * 1024, running_vms=vms, free_cpu=800 - cpu_used)
    return Host(id=hid, name=f"n{hid}", state=state, share=share)


def vm(vid: int, state: VmState = S.PENDING, lcm: LcmState = L.LCM_INIT, cpu: str = "1",
       resched: bool = False, on: int | None = None, priority: int = 0) -> VM:
    template = Template.parse(f"CPU={cpu}\nMEMORY=512")
    user = Template.parse(f"HA_PRIORITY={priority}")
    history = [History(oid=vid, seq=0, hostname=f"n{on}", hid=on)] if on is not None else []
    return VM(id=vid, name=f"v{vid}", state=state, lcm_state=lcm, template=template,
              user_template=user, resched=resched, history=history)


@pytest.mark.parametrize("state", [H.ERROR, H.INIT, H.DISABLED, H.OFFLINE])
def test_never_places_on_unusable_hosts(state: HostState) -> None:
    assert plan([vm(1)], [host(0, state)]) == []


def test_candidates_follow_opennebula() -> None:
    vms = [
        vm(1),
        vm(2, S.HOLD),
        vm(3, S.ACTIVE, L.RUNNING, resched=True, on=0),
        vm(4, S.ACTIVE, L.UNKNOWN, resched=True, on=0),
        vm(5, S.POWEROFF, resched=True, on=0),
        vm(6, S.ACTIVE, L.BOOT, resched=True, on=0),
        vm(7, S.SUSPENDED, resched=True, on=0),
        vm(8, S.ACTIVE, L.RUNNING, on=0),
    ]
    assert [v.id for v in candidates(vms)] == [1, 3, 4, 5]


def test_resched_never_lands_on_the_current_host() -> None:
    placements = plan([vm(1, S.ACTIVE, L.UNKNOWN, resched=True, on=0)], [host(0), host(1)])
    assert [(p.host_id, p.migrate) for p in placements] == [(1, True)]


def test_capacity_is_respected_and_consumed() -> None:
    placements = plan([vm(i, cpu="4") for i in range(5)], [host(0), host(1)])
    assert len(placements) == 4  # 2 hosts x 8 cores / 4 cores
    assert sorted(p.host_id for p in placements) == [0, 0, 1, 1]


def test_priority_first_when_capacity_is_short() -> None:
    vms = [vm(1, cpu="6"), vm(2, cpu="6", priority=10), vm(3, cpu="6", priority=5)]
    placements = plan(vms, [host(0)])
    assert [p.vm_id for p in placements] == [2]


def test_policies() -> None:
    hosts = [host(0, cpu_used=400, vms=4), host(1, cpu_used=100, vms=1)]
    assert plan([vm(1)], hosts, "packing")[0].host_id == 0
    assert plan([vm(1)], hosts, "striping")[0].host_id == 1
    assert plan([vm(1)], hosts, "load")[0].host_id == 1
    with pytest.raises(ValueError, match="unknown scheduler policy"):
        plan([vm(1)], hosts, "random")


def test_caps_per_host_and_per_cycle() -> None:
    vms = [vm(i) for i in range(20)]
    assert len(plan(vms, [host(0)], max_actions_per_host=3)) == 3
    assert len(plan(vms, [host(0), host(1)], max_actions_per_cycle=5)) == 5


def test_hosts_without_a_system_datastore_are_skipped() -> None:
    assert plan([vm(1)], [host(0)], clusters_with_system_ds={7}) == []


def test_scheduler_places_pending_vms_on_events() -> None:
    with Harness(hosts=2) as h:
        h.monitored()
        ids = [h.create_vm(f"v{i}") for i in range(4)]
        took = h.wait_for(lambda: all(h.state(i) == (S.ACTIVE, L.RUNNING) for i in ids))
        assert took < h.settings.sched_interval + 2  # woken by the PENDING events
        per_host = {h.vm(i).host_id for i in ids}
        assert per_host == {0, 1}  # striping spreads them


def _scan_plan(vms: list[VM], hosts: list[Host], policy: str, per_host: int) -> list[Placement]:
    """The obvious O(VMs x hosts) reading of the rules, as the oracle for plan()'s heap."""
    rooms = [[h, h.share.total_cpu - h.share.cpu_usage, h.share.total_mem - h.share.mem_usage,
              h.share.running_vms, 0] for h in hosts if h.state is H.MONITORED]

    def key(r: list[Any]) -> tuple[int, ...]:
        share = r[0].share
        return {
            "packing": (r[1], r[2], r[0].id),
            "striping": (r[3], r[0].id),
            "load": (-(share.free_cpu - (share.total_cpu - r[1])), r[0].id),
        }[policy]

    out = []
    for v in candidates(vms):
        current = v.host_id if v.state is not S.PENDING else None
        fits = [r for r in rooms if r[0].id != current and r[4] < per_host
                and r[1] >= v.cpu and r[2] >= v.memory]
        if not fits:
            continue
        best = min(fits, key=key)
        best[1] -= v.cpu
        best[2] -= v.memory
        best[3] += 1
        best[4] += 1
        migrate = v.state is not S.PENDING
        out.append(Placement(v.id, best[0].id, migrate, False))
    return out


@settings(max_examples=150, deadline=None)
@given(
    policy=st.sampled_from(["packing", "striping", "load"]),
    per_host=st.integers(0, 4),
    used=st.lists(st.integers(0, 800), min_size=1, max_size=12),
    cpus=st.lists(st.sampled_from(["0.5", "1", "2", "4"]), max_size=30),
    on=st.lists(st.integers(-1, 11), max_size=30),
)
def test_plan_matches_the_plain_scan(
    policy: str, per_host: int, used: list[int], cpus: list[str], on: list[int]
) -> None:
    hosts = [host(i, cpu_used=u, vms=u // 100) for i, u in enumerate(used)]
    vms = [
        vm(i, cpu=c) if i >= len(on) or on[i] < 0 or on[i] >= len(used)
        else vm(i, S.ACTIVE, L.UNKNOWN, cpu=c, resched=True, on=on[i])
        for i, c in enumerate(cpus)
    ]
    assert plan(vms, hosts, policy, per_host, 1000) == _scan_plan(vms, hosts, policy, per_host)


# -- one bad VM must not stop placement for everyone ----------------------------------------


def test_plan_skips_a_vm_it_cannot_plan() -> None:
    skipped: dict[int, str] = {}
    placed = plan([vm(1, cpu="1e307", priority=9), vm(2)], [host(0)], skipped=skipped)
    assert placed == [Placement(2, 0, False, False)]
    assert list(skipped) == [1]
    assert "OverflowError" in skipped[1]


def test_scheduler_carries_on_past_an_unplannable_vm_and_reports_it_once() -> None:
    with Harness(hosts=2, start=False) as h:
        with h.store.transaction() as tx:  # stored before the API refused such numbers
            bad = tx.add_vm(VM(id=-1, name="bad", template=Template.parse("CPU=1e307\nMEMORY=64"),
                               user_template=Template.parse("HA_PRIORITY=100")))
        h.run(h.controller.start())
        h.started = True
        h.monitored()
        good = h.create_vm("good")
        h.wait_for(lambda: h.state(good) == (S.ACTIVE, L.RUNNING))
        message = h.vm(bad.id).user_template.get("SCHED_MESSAGE") or ""
        assert "cannot be scheduled" in message
        notes = [e for e in h.store.events(after_id=0, limit=10_000) if "vm/0 bad" in e.line
                 and "cannot be scheduled" in e.line]
        h.advance(10 * h.settings.sched_interval)  # many more cycles: still one report
        notes_after = [e for e in h.store.events(after_id=0, limit=10_000)
                       if "vm/0 bad" in e.line and "cannot be scheduled" in e.line]
        assert len(notes) == len(notes_after) == 1
        assert h.state(bad.id) == (S.PENDING, L.LCM_INIT)
