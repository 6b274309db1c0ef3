"""VMTEMPLATE documents (vmtemplate.xsd, vmtemplate_pool.xsd), the ZONE pool of the one zone,
and the empty pools of the objects Lazarus does not manage."""

from __future__ import annotations

from collections.abc import Iterable

from ..entities import VmTemplate
from ..secrets import redact
from .text import esc, template_xml
from .vm import permissions_xml


def vmtemplate_xml(t: VmTemplate) -> str:
    return (
        f"<VMTEMPLATE><ID>{t.id}</ID><UID>{t.uid}</UID><GID>{t.gid}</GID>"
        f"<UNAME>{esc(t.uname)}</UNAME><GNAME>{esc(t.gname)}</GNAME><NAME>{esc(t.name)}</NAME>"
        f"{permissions_xml(t.perms)}<REGTIME>{t.regtime}</REGTIME>"
        f"{template_xml('TEMPLATE', redact(t.template))}</VMTEMPLATE>"
    )


def vmtemplate_pool_xml(templates: Iterable[VmTemplate]) -> str:
    return (
        "<VMTEMPLATE_POOL>" + "".join(vmtemplate_xml(t) for t in templates) + ("</VMTEMPLATE_POOL>")
    )


# The pools of objects Lazarus does not keep (method -> root element): always empty.
EMPTY_POOLS = {
    "one.vnpool.info": "VNET_POOL",
    "one.imagepool.info": "IMAGE_POOL",
    "one.vmgrouppool.info": "VM_GROUP_POOL",
    "one.secgrouppool.info": "SECURITY_GROUP_POOL",
    "one.vrouterpool.info": "VROUTER_POOL",
    "one.marketpool.info": "MARKETPLACE_POOL",
    "one.marketapppool.info": "MARKETPLACEAPP_POOL",
    "one.vdcpool.info": "VDC_POOL",
    "one.documentpool.info": "DOCUMENT_POOL",
    "one.vntemplatepool.info": "VNTEMPLATE_POOL",
    "one.backupjobpool.info": "BACKUPJOB_POOL",
}


def zone_xml(endpoint: str) -> str:
    """Zone 0, the only one: a standalone oned's "OpenNebula" zone."""
    return (
        "<ZONE><ID>0</ID><NAME>OpenNebula</NAME><STATE>0</STATE><TEMPLATE>"
        f"<ENDPOINT><![CDATA[{endpoint}]]></ENDPOINT></TEMPLATE><SERVER_POOL/></ZONE>"
    )


def zone_pool_xml(endpoint: str) -> str:
    return f"<ZONE_POOL>{zone_xml(endpoint)}</ZONE_POOL>"
