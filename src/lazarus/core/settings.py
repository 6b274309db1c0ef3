"""Controller settings with their defaults (the daemon reads them from flags, environment and
the config file; the simulator from a scenario). Names follow oned.conf / monitord.conf where
OpenNebula has the same knob, and `to_config()` is what one.system.config answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lazarus.domain.secrets import mask_db_url


@dataclass
class Settings:
    # monitoring (OpenNebula's default interval is 180 s; ours is 5 s)
    monitoring_interval_host: float = 5.0
    monitor_failures: int = 3  # consecutive failed probes before ERROR
    retry_interval: float = 0.5  # re-probe cadence once a probe failed
    # fast re-probes in ERROR before falling back to the interval (a host dead for hours is
    # still probed, but every MONITORING_INTERVAL_HOST, not twice a second)
    retry_burst: int = 20
    probe_timeout: float = 2.0
    # When a host of a cluster starts failing, every other host of that cluster is probed
    # every MONITOR_ALERT_INTERVAL until MONITOR_ALERT_WINDOW has passed without a new host
    # starting to fail: a loss spreading host by host is seen within about a second, and
    # ft/host_error does not fence until the cluster has been quiet for its
    # --mass-failure-window (5 s) (docs/ha.md).
    monitor_alert_interval: float = 1.0
    monitor_alert_window: float = 6.0  # at least host_error's --mass-failure-window
    persist_interval: float = 60.0  # unchanged monitoring data is written at most this often
    missing_vm_state: str = "POWEROFF"  # VMs the hypervisor no longer lists: POWEROFF | UNKNOWN
    # scheduler
    sched_interval: float = 2.0
    live_rescheds: int = 0  # 1: resched RUNNING VMs live (OpenNebula's LIVE_RESCHEDS)
    sched_policy: str = "striping"  # packing | striping | load (OpenNebula default: striping)
    max_actions_per_host: int = 8
    max_actions_per_cycle: int = 200
    # HA restart policy (core/restarts.py): a failed recovery start is restarted on its host
    # this many times, then relocated this many times, then left in its failure state
    ha_max_restarts: int = 1
    ha_max_relocations: int = 2
    ha_restart_delay: float = 5.0  # before the first restart; doubles for each further one
    # drivers
    # VMM drivers the daemon loads, by the VM_MAD name hosts give (oned.conf's VM_MAD): sim
    # (the in-process simulated cluster, with the lazarus.sim.* methods), and kvm, qemu,
    # libvirt (all three the libvirt driver, when libvirt-python is installed)
    vm_mad: str = "sim kvm qemu libvirt"
    driver_timeout: float = 120.0
    cleanup_timeout: float = 10.0
    # hooks
    hooks_dir: str = ""  # default: the package's hooks/ (ft/host_error, ft/fence_host)
    remote_hooks_dir: str = ""  # default: /var/tmp/lazarus/hooks on the hosts
    hook_concurrency: int = 10
    hook_log_retention: int = 20
    hook_record_limit: int = 256 * 1024  # bytes of ARGUMENTS, STDOUT, STDERR kept per record
    # the newest events kept once the hook outbox dispatched them (0: all, forever)
    event_retention: int = 100_000
    # API
    api_listen: str = "127.0.0.1"
    api_port: int = 2633
    api_request_timeout: float = 10.0  # seconds to receive one request (line, headers, body)
    # store (store/url.py): "" = <data dir>/lazarus.db, sqlite:PATH, or
    # postgresql://USER@HOST:PORT/DB with the password in DB_PASSWORD_FILE (0600) or libpq's
    # ~/.pgpass / PGPASSFILE / PGPASSWORD, never in the URL
    db: str = ""
    db_password_file: str = ""
    # PostgreSQL: a statement (or the wait for the write lock) longer than this is cancelled
    # and fails as a store error, which the caller retries: a stuck database cannot hang the
    # controller's loop for longer (SQLite's own busy timeout is fixed)
    db_statement_timeout: float = 5.0

    def to_config(self) -> dict[str, str | int | float]:
        """The OPENNEBULA_CONFIGURATION document's values (host_error reads
        MONITORING_INTERVAL_HOST from it)."""
        values = {k.upper(): v for k, v in asdict(self).items()}
        values["MONITORING_INTERVAL_HOST"] = int(self.monitoring_interval_host) or 1
        values["PORT"] = self.api_port
        values["LISTEN_ADDRESS"] = self.api_listen
        values["HOOK_LOG_RETENTION"] = self.hook_log_retention
        values["DB"] = mask_db_url(self.db) if self.db else "sqlite"
        return {k: v for k, v in values.items() if isinstance(v, str | int | float)}
