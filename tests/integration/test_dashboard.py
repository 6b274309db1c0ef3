"""The web dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium), against a real `lazarus serve` with simulated hosts.

The story: log in; node1's network is cut (the overview shows it ERROR without a reload);
its fence agent fails, so the incident page fills in live up to FENCE_FAILED with its
timeline and host_error's log; a forged cross-site POST from another origin is refused; the
operator powers node1 off, confirms the fence on the page (the CLI's question and the host's
name) and retries the execution: the page follows the VMs to RUNNING on node2; log out.
Skipped when chromium or chromedriver is missing. Screenshots for docs/dashboard.md when
$LAZARUS_SCREENSHOTS names a directory.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.daemon import FAST_SETTINGS, Daemon, wait_for
from lazarus.app.demo import HOOKS_FT
from lazarus.ha.examples import ERROR_HOOK

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                       reason="needs Debian's chromium and chromium-driver"),
]
FENCE_ENV = {"FENCE_ATTEMPTS": "1", "FENCE_TIMEOUT": "1", "FENCE_BACKOFF": "0.1",
             "FENCE_TOTAL_TIMEOUT": "4"}
SHOTS = os.environ.get("LAZARUS_SCREENSHOTS", "")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    agents = tmp_path / "agents"
    agents.mkdir()
    broken = agents / "fence_broken"
    broken.write_text("#!/bin/sh\n# a BMC that refuses every request\necho 'login failed' >&2\n"
                      "exit 1\n")
    broken.chmod(0o755)
    d = Daemon(tmp_path / "data", {**FAST_SETTINGS, **FENCE_ENV,
                                   "FENCE_PATH": f"{agents}:{HOOKS_FT}"})
    try:
        d.start()
        yield d
    finally:
        d.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def cli(daemon: Daemon, *args: str, stdin: str | None = None) -> str:
    env = daemon.env()
    done = subprocess.run([sys.executable, "-m", "lazarus", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def running_on(daemon: Daemon, vms: list[int], host: str) -> bool:
    from defusedxml import ElementTree as SafeET

    with daemon.client() as c:
        pool = SafeET.fromstring(c.call("one.vmpool.info", -2, -1, -1, -1))
    seen = {int(v.findtext("ID", "-1")): (v.findtext("LCM_STATE"),
            (v.findall("HISTORY_RECORDS/HISTORY") or [None])[-1]) for v in pool.findall("VM")}
    return all(seen[vm][0] == "3" and seen[vm][1] is not None
               and seen[vm][1].findtext("HOSTNAME") == host for vm in vms)


class Evil(http.server.BaseHTTPRequestHandler):
    """Another origin's page: a form that posts to the dashboard on load."""

    target = ""

    def do_GET(self) -> None:
        body = (f'<html><body><form id="f" method="post" action="{self.target}">'
                '<input name="csrf" value="guess"></form>'
                '<script>document.getElementById("f").submit()</script></body></html>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def shot(browser: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(SHOTS) / f"{name}.png"))


def test_operator_story_in_the_browser(daemon: Daemon, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def until(what: str, check: Callable[[], Any], timeout: float = 40) -> Any:
        try:
            return WebDriverWait(browser, timeout, poll_frequency=0.1).until(lambda _: check())
        except Exception as exc:
            raise AssertionError(f"{what}: not seen; the page:\n{text('body')[:3000]}") from exc

    def text(css: str) -> str:
        from selenium.common.exceptions import StaleElementReferenceException

        try:  # the live update may replace the element while it is read
            found = browser.find_elements(By.CSS_SELECTOR, css)
            return str(found[0].text) if found else ""
        except StaleElementReferenceException:
            return ""

    ui = daemon.dashboard_url
    assert ui.startswith("http://127.0.0.1:") and ui.endswith("/ui/")
    with daemon.client() as c:
        victim = c.call("one.host.allocate", "node1", "sim", "sim", -1)
        c.call("one.host.update", victim, 'FENCE = [ AGENT = "fence_broken", PLUG = "node1" ]', 1)
        vms = [c.call("one.vm.allocate", f'NAME = "web-{i}"\nCPU = 1\nMEMORY = 512')
               for i in range(2)]
        wait_for("the VMs RUNNING on node1", lambda: running_on(daemon, vms, "node1"))
        other = c.call("one.host.allocate", "node2", "sim", "sim", -1)
        c.call("one.host.update", other, 'FENCE = [ AGENT = "fence_sim", PLUG = "node2" ]', 1)
    hook_id = int(cli(daemon, "hook", "create", str(ERROR_HOOK)).split()[-1])
    cli(daemon, "hook", "update", str(hook_id), "--append", "-",
        stdin='ARGUMENTS = "$TEMPLATE -m -p 0"\n')

    # log in
    browser.get(ui)
    until("the login page", lambda: browser.current_url.endswith("/ui/login"))
    shot(browser, "login")
    user, password = daemon.session().split(":", 1)
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login").click()
    until("the overview", lambda: text(f"#host-{victim} .hstate") == "MONITORED")
    cookie = browser.get_cookie("lazarus_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    until("the live stream", lambda: browser.find_element(By.TAG_NAME, "html")
          .get_attribute("data-live") == "open")
    shot(browser, "overview")

    # the host fails: the overview follows without a reload
    with daemon.client() as c:
        c.call("lazarus.sim.network", "node1", "cut")
    until("node1 ERROR on the overview", lambda: text(f"#host-{victim} .hstate") == "ERROR")

    # the incident page fills in live: the fence fails, nothing is touched
    browser.get(f"{ui}incidents/{victim}")
    until("FENCE_FAILED on the incident page", lambda: text("#istate") == "FENCE_FAILED")
    until("host_error's log", lambda: "Fencing error" in text(".stdout"))
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline circle.mark-detected")
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline circle.mark-hook")
    shot(browser, "incident-fence-failed")

    # a forged POST from another origin (the cookie is sent: same site, other port)
    Evil.target = f"{ui}hosts/{other}/disable"
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        until("the refusal", lambda: "cross-site request refused" in browser.page_source
              or "CSRF" in browser.page_source)
    finally:
        evil.shutdown()
        evil.server_close()
    browser.get(ui)
    until("node2 still enabled", lambda: text(f"#host-{other} .hstate") == "MONITORED")

    # the operator powers node1 off and confirms on the page, then retries the execution
    with daemon.client() as c:
        c.call("lazarus.sim.power", "node1", "off")
    browser.get(f"{ui}incidents/{victim}")
    until("the confirm form", lambda: browser.find_elements(By.ID, "confirm-fence"))
    browser.find_element(By.ID, "confirm-fence").click()  # without the questions answered
    until("the refusal", lambda: "refusing without the confirmation" in text("#error"))
    browser.get(f"{ui}incidents/{victim}")
    until("the confirm form", lambda: browser.find_elements(By.ID, "confirm-off"))
    browser.find_element(By.ID, "confirm-off").click()
    browser.find_element(By.ID, "confirm-name").send_keys("node1")
    shot(browser, "incident-confirm")
    browser.find_element(By.ID, "confirm-fence").click()
    until("the confirmation recorded", lambda: "oneadmin" in text("#fence-confirmed"))
    browser.find_element(By.CSS_SELECTOR, f"button[id^='retry-{hook_id}-']").click()
    until("DONE on the incident page", lambda: text("#istate") == "DONE", timeout=60)
    until("both VMs RUNNING in the timeline", lambda: len(browser.find_elements(
        By.CSS_SELECTOR, "#timeline circle.mark-running")) == 2)
    assert running_on(daemon, vms, "node2")
    shot(browser, "incident-done")
    browser.get(f"{ui}hooks")
    until("the executions", lambda: "Fencing confirmed by operator oneadmin" in text("#main"))
    shot(browser, "hooks")
    browser.get(f"{ui}vms?host=node2")
    until("the VM list", lambda: "2 of 2 VMs" in text("#main"))
    shot(browser, "vms")

    # log out: the session is gone
    browser.get(ui)
    until("the overview", lambda: browser.find_elements(By.ID, "logout"))
    browser.find_element(By.ID, "logout").click()
    until("the login page", lambda: browser.current_url.endswith("/ui/login"))
    browser.get(f"{ui}incidents")
    assert browser.current_url.endswith("/ui/login")


def make_read_only_user(client: Any) -> tuple[str, str]:
    """A user of the API's read-only role (group `readonly`, api/roles.py), made through the
    API as an operator would: (name, password)."""
    pool = client.call("one.grouppool.info")
    gid = int(pool.split("<NAME>readonly</NAME>")[0].rsplit("<ID>", 1)[1].split("<")[0])
    client.call("one.user.allocate", "viewer", "viewer-pw", "core", [gid])
    return "viewer", "viewer-pw"


def test_a_read_only_user_sees_but_cannot_act(daemon: Daemon, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with daemon.client() as c:
        host = c.call("one.host.allocate", "node1", "sim", "sim", -1)
        user, password = make_read_only_user(c)
    browser.get(daemon.dashboard_url)
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, 30).until(lambda _: browser.find_elements(By.ID, f"disable-{host}"))
    browser.find_element(By.ID, f"disable-{host}").click()
    WebDriverWait(browser, 30).until(lambda _: browser.title.startswith("Refused"))
    assert "Not authorized" in browser.find_element(By.ID, "error").text  # the API's answer
    with daemon.client() as c:
        assert "<STATE>2</STATE>" in c.call("one.host.info", host)  # still MONITORED
