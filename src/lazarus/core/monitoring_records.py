"""Monitoring records: a bounded history of host and VM monitoring samples, for
one.host.monitoring, one.hostpool.monitoring, one.vm.monitoring, one.vmpool.monitoring (and
the dashboard's plots).

A service loop of the controller: every `monitoring_record_interval` seconds it takes a
sample of every MONITORED host (its <MONITORING> element as served in the HOST document) and
of every ACTIVE VM with monitoring values, stamped with the sample's time, stores them
(store/monitoring.py) and deletes samples older than HOST_MONITORING_EXPIRATION_TIME /
VM_MONITORING_EXPIRATION_TIME seconds (oned.conf's settings; 0 records nothing of that kind).
It reads what the monitor wrote and writes only its own tables, so it changes nothing the
monitor, the scheduler or the hooks see. Hosts in ERROR, DISABLED or OFFLINE are not sampled
(their values are not current). Two rounds in the same second store one sample.
"""

from __future__ import annotations

import logging

from lazarus.domain import xml as docs
from lazarus.domain.states import HostState, VmState
from lazarus.ports.clock import Clock
from lazarus.ports.store import Store

from .settings import Settings

log = logging.getLogger("lazarus.monitoring")


class MonitoringRecorder:
    def __init__(self, store: Store, clock: Clock, settings: Settings) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self._last_round = -1

    async def run(self) -> None:
        while True:
            await self.clock.sleep(max(self.settings.monitoring_record_interval, 1.0))
            self.sample()

    def sample(self) -> tuple[int, int]:
        """Take one round of samples and prune; (host records, VM records) written."""
        now = int(self.clock.now())
        s = self.settings
        hosts: list[tuple[int, int, str]] = []
        vms: list[tuple[int, int, str]] = []
        fresh = now != self._last_round
        self._last_round = now
        if fresh and s.host_monitoring_expiration_time > 0:
            for host in self.store.hosts():
                if host.state is not HostState.MONITORED or host.last_monitored <= 0:
                    continue
                host.monitoring = {**host.monitoring, "TIMESTAMP": str(now)}
                hosts.append((host.id, now, docs.host_monitoring_xml(host)))
        if fresh and s.vm_monitoring_expiration_time > 0:
            for vm in self.store.vms(states=[VmState.ACTIVE]):
                if vm.monitoring:
                    vms.append((vm.id, now, docs.vm_monitoring_xml(vm.id, now, vm.monitoring)))
        with self.store.transaction() as tx:
            if hosts:
                tx.add_monitoring_records("host", hosts)
            if vms:
                tx.add_monitoring_records("vm", vms)
            if s.host_monitoring_expiration_time > 0:
                tx.prune_monitoring_records("host", now - s.host_monitoring_expiration_time)
            if s.vm_monitoring_expiration_time > 0:
                tx.prune_monitoring_records("vm", now - s.vm_monitoring_expiration_time)
        return len(hosts), len(vms)
