"""Validate a document against one of OpenNebula's XSDs (skips where the shared reference is
absent, see helpers/env.py) and bind it with pyone, as tests/unit/test_xml.py does."""

from __future__ import annotations

from typing import Any

import defusedxml.ElementTree as SafeET
import pyone.bindings
from lxml import etree

from helpers.env import require_xsd

NS = "http://opennebula.org/XMLSchema"
_schemas: dict[str, etree.XMLSchema] = {}


def schema(name: str) -> etree.XMLSchema:
    if name not in _schemas:
        path = require_xsd(name)
        _schemas[name] = etree.XMLSchema(etree.parse(str(path)))
    return _schemas[name]


def validate(xsd: str, document: str) -> Any:
    """Assert `document` is valid for `xsd`; return what pyone binds it to."""
    root = etree.fromstring(document.encode())
    for elem in root.iter():
        if isinstance(elem.tag, str):
            elem.tag = f"{{{NS}}}{elem.tag}"
    xsd_schema = schema(xsd)
    assert xsd_schema.validate(root), f"{xsd}: {xsd_schema.error_log}\n{document[:2000]}"
    SafeET.fromstring(document)
    return pyone.bindings.parseString(document.encode())
