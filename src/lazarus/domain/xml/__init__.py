"""OpenNebula's XML documents, rendered from Lazarus' entities (and templates parsed back).

Pure string building, stdlib only, shaped after OpenNebula's XSDs (share/doc/xsd in its
source): element order, required elements, integers that stay integers. Every
document is validated against those XSDs in tests/unit/test_xml.py and bound with pyone.

    text.py   escaping, CDATA, typed numbers, template_xml / template_from_element
    vm.py     VM full and short bodies, VM pools, split_vm_template
    infra.py  HOST, DATASTORE, CLUSTER, OPENNEBULA_CONFIGURATION and their pools

Users: the API (every *.info call, system.config, XML template parameters), the hook manager
($TEMPLATE of state hooks), the store if it caches rendered bodies.
"""

from .infra import (
    CONFIG_KEYS,
    cluster_members,
    cluster_pool_xml,
    cluster_xml,
    config_xml,
    datastore_pool_xml,
    datastore_xml,
    host_monitoring_xml,
    host_pool_xml,
    host_xml,
)
from .text import cdata, esc, template_from_element, template_xml
from .vm import (
    VM_TEMPLATE_ATTRIBUTES,
    accounting_xml,
    history_xml,
    monitoring_data_xml,
    split_vm_template,
    vm_monitoring_xml,
    vm_pool_extended_xml,
    vm_pool_xml,
    vm_short_xml,
    vm_xml,
)

__all__ = [
    "CONFIG_KEYS",
    "VM_TEMPLATE_ATTRIBUTES",
    "accounting_xml",
    "cdata",
    "cluster_members",
    "cluster_pool_xml",
    "cluster_xml",
    "config_xml",
    "datastore_pool_xml",
    "datastore_xml",
    "esc",
    "history_xml",
    "host_monitoring_xml",
    "host_pool_xml",
    "host_xml",
    "monitoring_data_xml",
    "split_vm_template",
    "template_from_element",
    "template_xml",
    "vm_monitoring_xml",
    "vm_pool_extended_xml",
    "vm_pool_xml",
    "vm_short_xml",
    "vm_xml",
]
