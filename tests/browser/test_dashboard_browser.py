"""
The dashboard in a real headless Chromium (Debian's C{chromium} driven
through its C{chromedriver} by Selenium; C{make browser}): served by one
node of a three-node cluster of real C{twistd} processes, it shows all
three members alive, then one of them dead after it is killed; the one that
serves the Redis protocol shows its connections and commands.

With C{DISPERSE_SCREENSHOT=path} set, the test also saves the page as it
looks at the end (the picture in the docs comes from here).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from disperse.testing.cluster import NodeProcess, startLoopbackNode
from disperse.testing.resp import RespClient

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Start-up, joins and (with --profile local) failure detection take a few
# seconds each; these are ceilings, not waits.
DEADLINE = 30.0
WIDTH, HEIGHT = 1280, 1700


def start(name: str, *args: str) -> NodeProcess:
    return startLoopbackNode("--profile", "local", "--node-name", name, *args)


def put(node: NodeProcess, key: str, value: str) -> None:
    request = urllib.request.Request(
        f"{node.url}/cache/{key}",
        data=json.dumps({"value": value}).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture
def cluster() -> Iterator[list[NodeProcess]]:
    nodes: list[NodeProcess] = []
    try:
        # node0 alone serves the Redis protocol too.
        nodes.append(start("node0", "--redis-port", "tcp:0:interface=127.0.0.1"))
        nodes[0].waitRedis()
        seed = f"127.0.0.1:{nodes[0].gossipPort}"
        nodes.extend(start(f"node{i}", "--peer", seed) for i in range(1, 3))
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        # Tests run as root in CI, where Chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        options.add_argument(argument)
    # Script errors and policy violations reach the console, not the DOM.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path keeps Selenium from looking for one to fetch.
    driver = webdriver.Chrome(
        service=Service(executable_path=CHROMEDRIVER), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


def waitUntil(
    driver: Any,
    condition: Callable[[], Any],
    what: str,
    shown: Callable[[], Any] | None = None,
) -> Any:
    """
    Poll C{condition} (against the live page) until it is truthy or the
    deadline passes; its last value. Selenium's own wait does the polling.
    On failure, the message includes what C{shown} returns then.
    """
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        driver,
        DEADLINE,
        poll_frequency=0.1,
        # The page redrew an element between finding and reading it.
        ignored_exceptions=(StaleElementReferenceException,),
    )
    try:
        return wait.until(lambda _: condition())
    except TimeoutException:
        seen = "" if shown is None else f"; it showed {shown()!r}"
        raise AssertionError(
            f"the page never showed {what}{seen}; status: "
            + driver.find_element("id", "status").text
        ) from None


def memberStates(driver: Any) -> dict[str, str]:
    """
    Each member row's name and the state it shows as text.
    """
    states = {}
    for row in driver.find_elements("css selector", "#members tbody tr"):
        name = row.get_attribute("data-member")
        state = row.find_element("css selector", ".state").text
        assert state == row.get_attribute("data-state")
        states[name] = state
    return states


def keyCounts(driver: Any) -> list[str]:
    """
    The keys column of the members table, as shown.
    """
    return [
        cell.text
        for cell in driver.find_elements("css selector", "#members tbody .keys")
    ]


def redisConnections(driver: Any) -> dict[str, str]:
    """
    Each member row's name and its Redis connections column, as shown.
    """
    return {
        row.get_attribute("data-member"): row.find_element(
            "css selector", ".redis-connections"
        ).text
        for row in driver.find_elements("css selector", "#members tbody tr")
    }


def eventRows(driver: Any) -> list[list[str]]:
    return [
        [cell.text for cell in row.find_elements("css selector", "td")]
        for row in driver.find_elements("css selector", "#events tbody tr")
    ]


def test_dashboardShowsMembersAndAFailure(
    cluster: list[NodeProcess], browser: Any
) -> None:
    started = time.monotonic()
    for i in range(30):
        put(cluster[i % 3], f"key{i}", f"value {i}")

    browser.get(cluster[0].url + "/")
    assert browser.title.startswith("Disperse cluster")
    alive = {"node0": "alive", "node1": "alive", "node2": "alive"}
    waitUntil(browser, lambda: memberStates(browser) == alive, "three alive members")
    assert browser.find_element("id", "sum-alive").text == "3"
    # Every member's counters arrived through the serving node: each holds
    # a replica of every key.
    waitUntil(
        browser,
        lambda: keyCounts(browser) == ["30"] * 3,
        "30 keys on every member",
        lambda: keyCounts(browser),
    )
    waitUntil(
        browser,
        lambda: len(browser.find_elements("css selector", "#grid .cell.owner-2")) > 0,
        "the partition grid with three owners",
    )

    # Redis figures show next to the HTTP ones: node0's open connection,
    # and a dash for the members that do not serve the protocol.
    with RespClient(cluster[0].redisPort) as client:
        for i in range(20):
            assert client.call(b"SET", b"redis%d" % i, b"v") == b"OK"
        waitUntil(
            browser,
            lambda: (
                redisConnections(browser)
                == {"node0": "1", "node1": "\N{EN DASH}", "node2": "\N{EN DASH}"}
            ),
            "node0's Redis connection",
            lambda: redisConnections(browser),
        )
        assert browser.find_element("id", "sum-redis-connections").text == "1"
        assert browser.find_element("id", "sum-redis-rate").is_displayed()

    # A crash, with no goodbye: the page learns of it from node0's view.
    victim = cluster[2]
    victim.signal(signal.SIGKILL)
    victim.kill()
    killed = time.monotonic()
    waitUntil(
        browser,
        lambda: memberStates(browser).get("node2") == "dead",
        "node2 dead",
    )
    detected = time.monotonic() - killed
    assert memberStates(browser) == {**alive, "node2": "dead"}
    assert browser.find_element("id", "sum-dead").text == "1"
    waitUntil(
        browser,
        lambda: any(
            row[1:4] == ["node2", "failed", "dead"] for row in eventRows(browser)
        ),
        "a failure event for node2",
    )
    assert browser.find_element("id", "status").get_attribute("data-state") == "live"
    # The page ran clean: no script error, no blocked load. (Fetches that
    # node0 answered with an error would be listed too.)
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == [], problems

    path = os.environ.get("DISPERSE_SCREENSHOT")
    if path:
        screenshot(browser, cluster[:2], path)
    print(
        f"dashboard: all alive and node2 dead seen in"
        f" {time.monotonic() - started:.1f} s (death shown {detected:.1f} s after"
        " the kill)"
    )


READER = "browser-reader-0123456789abcdef"


def test_dashboardAsksForAToken(tmp_path: Any, browser: Any) -> None:
    """
    On nodes that take tokens, the page asks for one, then shows the
    members, the other member's counters included (fetched with the same
    token).
    """
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{READER} read\n")
    nodes: list[NodeProcess] = []
    try:
        nodes.append(start("node0", "--auth-tokens", str(tokens)))
        seed = f"127.0.0.1:{nodes[0].gossipPort}"
        nodes.append(start("node1", "--auth-tokens", str(tokens), "--peer", seed))
        browser.get(nodes[0].url + "/")
        form = waitUntil(
            browser,
            lambda: (
                browser.find_element("id", "token-form").is_displayed()
                and browser.find_element("id", "token-form")
            ),
            "the token form",
        )
        assert "needs a token" in browser.find_element("id", "status").text
        browser.find_element("id", "token").send_keys(READER)
        form.find_element("css selector", "button").click()
        alive = {"node0": "alive", "node1": "alive"}
        waitUntil(browser, lambda: memberStates(browser) == alive, "two members")
        waitUntil(
            browser,
            lambda: keyCounts(browser) == ["0", "0"],
            "both members' counters",
        )
        assert not browser.find_element("id", "token-form").is_displayed()
        # Neither serves the Redis protocol: no Redis figures at all.
        assert not browser.find_element("id", "sum-redis-rate").is_displayed()
        assert not browser.find_elements("css selector", ".redis-connections")
        status = browser.find_element("id", "status")
        assert status.get_attribute("data-state") == "live"
    finally:
        for node in nodes:
            node.kill()


def screenshot(driver: Any, nodes: list[NodeProcess], path: str) -> None:
    """
    Save the page with some traffic going, so request rates show.
    """
    stop = threading.Event()

    def traffic() -> None:
        # Bounded in count and time: loopback only, and it stops by itself.
        end = time.monotonic() + 10
        for i in range(2000):
            if stop.is_set() or time.monotonic() > end:
                return
            put(nodes[i % len(nodes)], f"traffic{i % 50}", "x" * (1 + i % 200))

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        waitUntil(
            driver,
            lambda: (
                driver.find_element("id", "sum-rate").text not in ("\N{EN DASH}", "0.0")
            ),
            "a request rate",
        )
        height = driver.execute_script("return document.body.scrollHeight")
        # The whole page and no more: the window's chrome takes some height.
        chrome = driver.execute_script("return window.outerHeight - innerHeight")
        driver.set_window_size(WIDTH, int(height) + int(chrome) + 16)
        driver.save_screenshot(path)
    finally:
        stop.set()
        worker.join(DEADLINE)
