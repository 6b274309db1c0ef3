"""Fixtures of the contract suites.

`hv_backend`: the hypervisor contract (test_hypervisor.py) runs once per driver: "sim"
(virtual time), "libvirt-test" (in-process test:/// URIs) and "libvirtd" (root: test-only
daemons). The backends themselves live in tests/helpers/hypervisors.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from helpers.hypervisors import HvBackend, make_backend


@pytest.fixture(params=["sim", "libvirt-test", pytest.param("libvirtd", marks=pytest.mark.root)])
def hv_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HvBackend]:
    with ExitStack() as stack:
        yield make_backend(request.param, stack, tmp_path)
