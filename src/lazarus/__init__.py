"""Lazarus: high availability for virtual machines on KVM/libvirt clusters."""

__version__ = "0.1.0"
# The OpenNebula API level we answer one.system.version with: clients check it.
ONE_VERSION = "6.10.0"
