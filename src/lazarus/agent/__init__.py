"""`lazarus agent`: the optional per-host process that writes the storage heartbeat and feeds
the host's watchdog. No controller code: it sees only ports and domain (loop.py); the real
adapters are wired by app/agent.py, the simulated ones by sim/agents.py."""
