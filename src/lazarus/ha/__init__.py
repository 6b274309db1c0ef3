"""HA recovery programs: ft/host_error's logic and its fencers. They speak the OpenNebula API
(through api/client.py in production, api/local.py in the simulator), like any hook."""
