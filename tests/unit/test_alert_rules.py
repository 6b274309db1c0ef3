"""The example alert rules (share/monitoring/lazarus-rules.yml), checked with promtool.

`promtool check rules` and the shipped rule tests; then the "HA is blind" alert on values
taken from a real controller (virtual clock) whose monitor is stopped: the gauge is sampled
every virtual minute and promtool evaluates the shipped rule on those samples. Skipped when
promtool (Debian package prometheus) is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.core import Harness
from lazarus.telemetry.metrics import Metrics

MONITORING = Path(__file__).resolve().parents[2] / "share" / "monitoring"
RULES = MONITORING / "lazarus-rules.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus)"
)


def promtool(*args: str, cwd: Path = MONITORING) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_rules_are_valid_and_their_tests_pass() -> None:
    assert "SUCCESS" in promtool("check", "rules", str(RULES))
    assert "SUCCESS" in promtool("test", "rules", "lazarus-rules.test.yml")


def humanize(seconds: int) -> str:
    """Prometheus' humanizeDuration for whole seconds of a minute or more."""
    d, h, m, s = seconds // 86400, seconds // 3600 % 24, seconds // 60 % 60, seconds % 60
    if d:
        return f"{d}d {h}h {m}m {s}s"
    if h:
        return f"{h}h {m}m {s}s"
    return f"{m}m {s}s"


def sampled_ages(stop_after: int, minutes: int) -> tuple[list[int], list[int]]:
    """lazarus_probe_round_age_seconds and the MONITORED host count, one sample a virtual
    minute, from a controller whose monitor task is cancelled after `stop_after` minutes."""
    h = Harness(hosts=2, start=False)
    metrics = Metrics(h.store, h.clock.now)
    h.controller.monitor.round_listeners.append(metrics.round_done)
    h.run(h.controller.start())
    h.started = True
    ages: list[int] = []
    hosts: list[int] = []
    try:
        for minute in range(minutes + 1):
            if minute == stop_after:
                monitor = next(t for t in h.controller._tasks if t.get_name() == "monitor")
                monitor.cancel()
            ages.append(int(metrics.registry.get_sample_value(
                "lazarus_probe_round_age_seconds") or 0))
            hosts.append(int(metrics.registry.get_sample_value(
                "lazarus_hosts", {"state": "MONITORED"}) or 0))
            h.advance(60)
    finally:
        h.close()
    return ages, hosts


@needs_promtool
def test_the_blind_alert_fires_when_the_monitor_stops(tmp_path: Path) -> None:
    ages, hosts = sampled_ages(stop_after=2, minutes=8)
    assert max(ages[:2]) < 60 and hosts[1] == 2  # probing: rounds every few seconds
    assert ages[8] >= 5 * 60  # stopped: the age grows with the clock
    firing = {
        "exp_labels": {"severity": "critical", "job": "lazarus"},
        "exp_annotations": {
            "summary": f"Lazarus is blind: no completed probe round for {humanize(ages[8])}",
            "description": "The controller's monitor has stopped probing hosts; "
                           "HA does not detect failures.",
        },
    }
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'lazarus_probe_round_age_seconds{job="lazarus"}',
                 "values": " ".join(map(str, ages))},
                {"series": 'lazarus_hosts{job="lazarus",state="MONITORED"}',
                 "values": " ".join(map(str, hosts))},
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "LazarusHABlind", "exp_alerts": []},
                {"eval_time": "8m", "alertname": "LazarusHABlind", "exp_alerts": [firing]},
            ],
        }],
    }
    path = tmp_path / "blind.test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    assert "SUCCESS" in promtool("test", "rules", str(path), cwd=tmp_path)


def test_the_grafana_dashboard_names_only_metrics_lazarus_exports() -> None:
    import re

    from lazarus.domain.entities import Host

    dash = json.loads((MONITORING / "grafana-lazarus.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\b(lazarus_[a-z_]+)", e)}

    class Store:
        def hosts(self) -> list[Host]:
            return []

        def vms(self, **kw: object) -> list[object]:
            return []

        def vm_short_bodies(self, **kw: object) -> list[str]:
            return []

    exported = Metrics(Store()).exposition().decode()  # type: ignore[arg-type]
    names = set(re.findall(r"^# TYPE (\w+) (\w+)", exported, re.M))
    known = {n for n, _ in names}
    known |= {f"{n}{suffix}" for n, kind in names if kind in ("histogram", "counter")
              for suffix in ("_bucket", "_count", "_sum", "_total")}
    assert used <= known, used - known
