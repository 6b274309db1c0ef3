"""docs/api.md, generated: every OpenNebula XML-RPC method a stock CLI or pyone calls, whether
Lazarus serves it, the right it needs (api/rights.py), and how it differs.

    python -m lazarus.app.api_doc > docs/api.md        # tests/unit/test_api_doc.py checks it

"Served" comes from the method registry the daemon builds (api/stack.py, with the simulated
driver's lazarus.sim.* table), so the table cannot claim a method that is not registered,
nor miss one that is: a registered method without a row here is listed under "Lazarus' own".
"""

from __future__ import annotations

import sys

from lazarus.api.rights import OP_NAMES, RIGHTS, Need
from lazarus.api.stack import build_dispatcher
from lazarus.core.controller import Controller
from lazarus.core.settings import Settings
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop
from lazarus.drivers.hooks.fake import FakeHookExecutor
from lazarus.drivers.vmm.sim import SimCluster, SimHypervisor
from lazarus.store.sqlite import SqliteStore

from .sim_api import SimApi

# OpenNebula's methods (6.x / 7.x, as the Ruby OCA and pyone call them), by object, with what
# Lazarus does differently when it serves them and why it does not when it does not.
_NOT_MANAGED = "Lazarus does not manage {what}"
ONE_METHODS: dict[str, dict[str, str]] = {
    "system": {
        "one.system.version": "",
        "one.system.config": "served to every authenticated user (oned: the oneadmin group "
        "only): it holds no secret, and ft/host_error reads MONITORING_INTERVAL_HOST from it",
    },
    "users": {
        "one.user.allocate": "core driver only",
        "one.user.delete": "oneadmin and lazarus-ha cannot be deleted",
        "one.user.passwd": "",
        "one.user.login": "only the token's sha256 is kept; LOGIN_TOKEN/TOKEN shows it",
        "one.user.update": "",
        "one.user.chauth": "core driver only: not served",
        "one.user.quota": "no quotas",
        "one.user.chgrp": "",
        "one.user.addgroup": "",
        "one.user.delgroup": "",
        "one.user.enable": "not served",
        "one.user.info": "PASSWORD shown as `****`",
        "one.userpool.info": "",
        "one.userquota.info": "no quotas",
        "one.userquota.update": "no quotas",
    },
    "groups": {
        "one.group.allocate": "",
        "one.group.delete": "",
        "one.group.info": "no quotas, no group admins",
        "one.group.update": "",
        "one.group.addadmin": "no group admins",
        "one.group.deladmin": "no group admins",
        "one.group.quota": "no quotas",
        "one.grouppool.info": "",
        "one.groupquota.info": "no quotas",
        "one.groupquota.update": "no quotas",
    },
    "ACL": {
        "one.acl.addrule": "rule parts as hexadecimal strings (the CLI converts); zone optional",
        "one.acl.delrule": "",
        "one.acl.info": "",
    },
    "hosts": {
        "one.host.allocate": "",
        "one.host.delete": "",
        "one.host.status": "",
        "one.host.update": "masked secrets written back keep the stored ones",
        "one.host.rename": "",
        "one.host.info": "",
        "one.host.monitoring": "records of MONITORED hosts every MONITORING_RECORD_INTERVAL",
        "one.hostpool.info": "no filter (oned has none for hosts either)",
        "one.hostpool.monitoring": "",
    },
    "VMs": {
        "one.vm.allocate": "",
        "one.vm.deploy": "",
        "one.vm.action": "",
        "one.vm.migrate": "",
        "one.vm.recover": "",
        "one.vm.info": "",
        "one.vm.update": "USER_TEMPLATE; HA and HA_PRIORITY checked",
        "one.vm.rename": "",
        "one.vm.lock": "",
        "one.vm.unlock": "",
        "one.vm.chown": "",
        "one.vm.chmod": "",
        "one.vm.resize": "not running VMs only (no hotplug)",
        "one.vm.monitoring": "records of ACTIVE VMs with monitoring values",
        "one.vm.updateconf": "not served",
        "one.vm.attach": "no images",
        "one.vm.detach": "no images",
        "one.vm.attachnic": "no networks",
        "one.vm.detachnic": "no networks",
        "one.vm.snapshotcreate": "no snapshots",
        "one.vm.snapshotrevert": "no snapshots",
        "one.vm.snapshotdelete": "no snapshots",
        "one.vm.disksnapshotcreate": "no snapshots",
        "one.vm.disksaveas": "no images",
        "one.vm.diskresize": "no images",
        "one.vm.backup": "no backups",
        "one.vm.schedadd": "no scheduled actions",
        "one.vmpool.info": "KEY=VALUE filter: VM.<path>[n|*]=VALUE pairs joined by &",
        "one.vmpool.infoextended": "the same filter",
        "one.vmpool.infoset": "not served",
        "one.vmpool.monitoring": "",
        "one.vmpool.accounting": "from the VMs' history records",
        "one.vmpool.showback": "no showback",
        "one.vmpool.calculateshowback": "no showback",
    },
    "templates": {
        "one.template.allocate": "",
        "one.template.info": "",
        "one.template.update": "",
        "one.template.rename": "",
        "one.template.delete": "recursive is ignored (no images)",
        "one.template.clone": "recursive is ignored (no images)",
        "one.template.instantiate": "persistent is ignored (no images)",
        "one.template.chown": "not served",
        "one.template.chmod": "not served",
        "one.template.lock": "not served",
        "one.template.unlock": "not served",
        "one.templatepool.info": "",
    },
    "datastores, clusters, zones": {
        "one.datastore.allocate": "",
        "one.datastore.info": "",
        "one.datastore.delete": "not served",
        "one.datastore.update": "not served",
        "one.datastorepool.info": "",
        "one.cluster.info": "",
        "one.cluster.allocate": "not served (one default cluster, others by the store only)",
        "one.cluster.addhost": "",
        "one.cluster.delhost": "the host goes back to the default cluster 0",
        "one.clusterpool.info": "",
        "one.zone.info": "zone 0 only",
        "one.zonepool.info": "zone 0 only",
        "one.zone.raftstatus": "no federation",
    },
    "hooks": {
        "one.hook.allocate": "",
        "one.hook.info": "",
        "one.hook.delete": "",
        "one.hook.update": "",
        "one.hook.rename": "",
        "one.hook.lock": "",
        "one.hook.unlock": "",
        "one.hook.retry": "",
        "one.hookpool.info": "",
        "one.hooklog.info": "",
    },
    "objects Lazarus does not manage": {
        "one.vnpool.info": "always empty: " + _NOT_MANAGED.format(what="virtual networks"),
        "one.vn.info": _NOT_MANAGED.format(what="virtual networks"),
        "one.imagepool.info": "always empty: " + _NOT_MANAGED.format(what="images"),
        "one.image.info": _NOT_MANAGED.format(what="images"),
        "one.vmgrouppool.info": "always empty",
        "one.secgrouppool.info": "always empty",
        "one.vrouterpool.info": "always empty",
        "one.marketpool.info": "always empty",
        "one.marketapppool.info": "always empty",
        "one.vdcpool.info": "always empty",
        "one.documentpool.info": "always empty",
        "one.vntemplatepool.info": "always empty",
        "one.backupjobpool.info": "always empty",
    },
}


def _registry_names() -> list[str]:
    loop = VirtualEventLoop()
    try:
        clock = VirtualClock(loop)
        sim = SimCluster(clock)
        controller = Controller(
            SqliteStore.memory(),
            clock,
            {"sim": SimHypervisor(sim)},
            Settings(),
            hook_executor=FakeHookExecutor(clock),
        )
        dispatcher = build_dispatcher(
            controller,
            lambda session: None,  # type: ignore[arg-type]
            extra_methods=[SimApi(sim, controller)],
        )
        return dispatcher.registry.names()
    finally:
        loop.close()


def _right(need: Need | None) -> str:
    if need is None:
        return "oneadmin group"
    if need.open:
        return "any user"
    if need.pool:
        return f"lists what one may {need.obj}:USE"
    op = "by action" if callable(need.op) else OP_NAMES[need.op]
    return f"{need.obj}:{op}"


def render() -> str:
    served = set(_registry_names())
    out = [
        "# OpenNebula API conformance",
        "",
        "Generated by `python -m lazarus.app.api_doc` from the method registry the daemon "
        "builds (api/stack.py) and the rights table (api/rights.py); "
        "tests/unit/test_api_doc.py fails when this file is not current. A method not "
        'served is an XML-RPC fault -506 ("Method not defined"), as oned answers for an '
        "unknown name; the Ruby CLI then fails the command. Rights are OpenNebula's "
        "(OBJECT:OPERATION; the oneadmin group may do everything; docs/security.md).",
        "",
    ]
    listed: set[str] = set()
    for group, methods in ONE_METHODS.items():
        out += [f"## {group}", "", "| method | served | right | differences |", "|---|---|---|---|"]
        for method, note in methods.items():
            listed.add(method)
            yes = method in served
            right = _right(RIGHTS.get(method)) if yes else ""
            out.append(f"| `{method}` | {'yes' if yes else 'no'} | {right} | {note} |")
        out.append("")
    own = sorted(served - listed)
    out += ["## Lazarus' own", "", "| method | right |", "|---|---|"]
    out += [f"| `{m}` | {_right(RIGHTS.get(m))} |" for m in own]
    out.append("")
    return "\n".join(out)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
