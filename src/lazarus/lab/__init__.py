"""Test-and-lab infrastructure: emulated BMCs, network namespaces, real qemu hosts.

Used by integration and lab tests and the demo; may use subprocess and real waits."""
