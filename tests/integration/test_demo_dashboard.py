"""`lazarus demo` (simulated): it prints the dashboard's URL and keeps the controller and the
dashboard up until Enter (`wait`), and not at all with --no-wait or without a terminal."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from lazarus.app.demo import run_sim_demo

pytestmark = pytest.mark.slow


def test_the_demo_keeps_the_dashboard_up_until_enter() -> None:
    lines: list[str] = []
    seen: list[int] = []

    def enter() -> None:  # stands for the Enter key: the dashboard answers meanwhile
        url = next(line.split()[1] for line in lines if line.strip().startswith("dashboard:"))
        with urllib.request.urlopen(url + "login", timeout=10) as response:
            seen.append(response.status)

    assert run_sim_demo(lines.append, wait=enter) == 0, "\n".join(lines)
    assert seen == [200]
    assert any("press Enter to stop" in line for line in lines)


def test_without_a_terminal_the_demo_does_not_wait() -> None:
    done = subprocess.run([sys.executable, "-m", "lazarus", "demo", "--sim"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dashboard: http://127.0.0.1:" in done.stdout
    assert "press Enter" not in done.stdout
