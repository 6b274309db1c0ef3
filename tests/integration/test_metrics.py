"""/metrics and /events of a real `lazarus serve` during a simulated host failure.

The demo's story (app/demo.py: three simulated hosts fenced by fence_sim, the shipped
error_hook, six VMs, one host powered off) runs against the daemon while a thread reads the
server-sent event stream; then one scrape of /metrics must count every recovered VM in the
recovery histogram, the incident as done, the fence by its agent, the hook's execution and
the API calls by method. Credentials: HTTP Basic with oneadmin's, as Prometheus sends them.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from helpers.daemon import Daemon, wait_for
from lazarus.app.demo import HOOKS_FT, _story

pytestmark = pytest.mark.slow


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "data")
    d.settings["FENCE_PATH"] = str(HOOKS_FT)
    try:
        d.start()
        yield d
    finally:
        d.close()


def _conn(daemon: Daemon) -> http.client.HTTPConnection:
    url = urlsplit(daemon.url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=30)


def _basic(session: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(session.encode()).decode()}


def scrape(daemon: Daemon, session: str | None = None) -> tuple[int, str]:
    conn = _conn(daemon)
    conn.request("GET", "/metrics", headers=_basic(session or daemon.session()))
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, body


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.fullmatch(r"([a-zA-Z_:]+)(\{(.*)\})? (\S+)", line)
        if m is None or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return 0.0


class Stream(threading.Thread):
    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon=True, name="sse-reader")
        self.conn = _conn(daemon)
        self.conn.request("GET", "/events", headers=_basic(daemon.session()))
        self.response = self.conn.getresponse()
        self.records: list[dict[str, object]] = []

    def run(self) -> None:
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    self.records.append(json.loads(line[6:]))
        except (OSError, ValueError, http.client.HTTPException):
            return

    def close(self) -> None:
        self.conn.close()


def test_metrics_and_events_follow_a_host_failure(daemon: Daemon) -> None:
    status, _ = scrape(daemon, "oneadmin:wrong")
    assert status == 401
    stream = Stream(daemon)
    assert stream.response.status == 200
    assert stream.response.getheader("Content-Type") == "text/event-stream"
    stream.start()
    out: list[str] = []
    env = daemon.env()
    env["LAZARUS_FENCE_PATH"] = str(HOOKS_FT)
    with daemon.client() as client:
        assert _story(client, env, out.append) == 0, "\n".join(out)
    done = next(line.strip() for line in out if line.strip().startswith("All "))
    recovered = int(done.split()[1])
    assert recovered >= 1

    def incident_done() -> bool:
        return any(r.get("type") == "incident" and r.get("state") == "DONE"
                   for r in stream.records)

    wait_for("the incident's DONE step on the event stream", incident_done)

    def hook_ended() -> str:
        status, text = scrape(daemon)
        assert status == 200
        count = sample(text, "lazarus_hook_duration_seconds_count", hook="host_error",
                       result="success")
        return text if count == 1 else ""

    text = wait_for("host_error's end in the hook metrics", hook_ended)
    assert sample(text, "lazarus_vm_recovery_seconds_count") == recovered, text
    assert sample(text, "lazarus_vm_recovery_seconds_bucket", le="+Inf") == recovered
    assert sample(text, "lazarus_incidents_total", outcome="done") == 1
    assert sample(text, "lazarus_fence_duration_seconds_count",
                  agent="fence_sim", result="off") == 1
    assert sample(text, "lazarus_api_call_duration_seconds_count",
                  method="one.vmpool.info") >= 1
    assert sample(text, "lazarus_probe_failures_total") >= 1
    assert sample(text, "lazarus_hosts", state="ERROR") == 1
    assert sample(text, "lazarus_host_fence_configured", host="node1") == 1
    assert sample(text, "lazarus_probe_round_age_seconds") < 60
    stream.close()

    steps = [r["state"] for r in stream.records if r.get("type") == "incident"]
    assert steps[-1] == "DONE" and "FENCED" in steps, steps
    kinds = {(r.get("obj"), r.get("state")) for r in stream.records if r.get("type") == "event"}
    assert ("HOST", "ERROR") in kinds and ("VM", "ACTIVE") in kinds
    assert all("body" not in r for r in stream.records)
    # the same lines in the log file, mode 0600
    log = daemon.data_dir / "events.jsonl"
    assert log.stat().st_mode & 0o777 == 0o600
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["state"] for r in lines if r["type"] == "incident"] == steps
