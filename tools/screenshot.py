"""Regenerate the web page's screenshot (docs/web-page.png) from the current page.

Builds the config's index if needed, starts ``indexer serve`` on a free loopback port, opens the
page in Debian's headless Chromium through Selenium (the browser the web page's test drives), asks
one question, waits for the streamed answer, opens source [1] and saves the window as a PNG:

    python tools/screenshot.py                       # the sample index, SmolLM2, docs/web-page.png
    python tools/screenshot.py --config CONFIG --question "..." --out /tmp/page.png

Needs the ``server`` and ``browser-test`` extras and ``chromium`` + ``chromium-driver`` from apt
(``make browser``). Nothing leaves the machine: the server binds to 127.0.0.1 and the page loads
only from it.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What does error E-214 mean?"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"indexer serve exited {process.returncode}:\n{process.communicate()[1]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"indexer serve did not answer {url} within {timeout:.0f} s")


def _until(driver: Any, condition: Any, timeout: float, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except Exception as exc:
        raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}") from exc


def capture(url: str, question: str, out: Path, width: int, height: int, timeout: float) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        raise SystemExit("needs Debian's chromium and chromium-driver: `make browser` installs them")
    profile = tempfile.mkdtemp(prefix="indexer-screenshot-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.get(url)
        find = driver.find_element
        _until(
            driver, lambda d: find("css selector", "#index-chunks").text.isdigit(), timeout, "the index panel"
        )
        find("css selector", "#question").send_keys(question)
        find("css selector", "#ask").click()
        _until(
            driver,
            lambda d: d.find_elements("css selector", ".turn[data-state=done]"),
            timeout,
            "the streamed answer",
        )
        sources = driver.find_elements("css selector", ".turn ol.sources button.source")
        if sources:
            sources[0].click()
            _until(driver, lambda d: find("css selector", "#passage").is_displayed(), timeout, "the passage")
        time.sleep(0.5)  # let the panel's transition settle before the picture
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise SystemExit(f"could not write {out}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "sample.yaml")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "web-page.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds for each step (the answer included)"
    )
    parser.add_argument("--no-build", action="store_true", help="serve the index as it is")
    args = parser.parse_args(argv)

    indexer = [sys.executable, "-m", "indexer"]
    if not args.no_build:
        subprocess.run([*indexer, "build", str(args.config)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    port = _free_port()
    server = subprocess.Popen(
        [*indexer, "serve", str(args.config), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", server, args.timeout)
        capture(f"http://127.0.0.1:{port}/", args.question, args.out, args.width, args.height, args.timeout)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
