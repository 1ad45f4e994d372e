"""The web page at ``/``, as a user meets it: `indexer serve` in a subprocess, Debian's Chromium
driven by Selenium. Assertions are about structure (an answer streamed, sources listed, a passage
shown), never about the tiny test model's words, which are noise."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.support.live_server import free_port, wait_for_http

pytestmark = pytest.mark.browser  # Chromium drives the page

QUESTION = "How often should the silica gel desiccant pack in the mast be replaced?"
KEY = "page-test-key"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


def _browser_or_fail() -> tuple[str, str]:
    """Chromium and its driver, or a failed test saying why: a browser test that silently skips
    would let the page break unnoticed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(
            "the web page test needs Debian's chromium and chromium-driver: "
            "`apt-get install -y chromium chromium-driver` (`make setup` does it when it can); "
            f"found chromium={chromium}, chromedriver={driver}"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("the web page test needs selenium: pip install -e '.[browser-test]' (`make setup` does)")
    return chromium, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = _browser_or_fail()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="indexer-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as exc:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail(f"headless chromium did not start: {exc}")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def serving(config: Path, *args: str) -> Iterator[str]:
    """`indexer serve CONFIG` on a free loopback port until the block ends; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer", "serve", str(config), "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_http(
            f"http://127.0.0.1:{port}/health",
            process,
            name="indexer serve",
            timeout=180,
            output=lambda: process.communicate()[1],
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 60, what: str = "") -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except Exception:
        shown = [e.text for e in driver.find_elements("css selector", "#messages .message")]
        pytest.fail(f"timed out waiting for {what or condition}; page messages: {shown}")


def _by(driver: Any, css: str) -> Any:
    return driver.find_element("css selector", css)


def _all(driver: Any, css: str) -> list[Any]:
    return driver.find_elements("css selector", css)


def _ask(driver: Any, question: str) -> Any:
    box = _by(driver, "#question")
    box.clear()
    box.send_keys(question)
    before = len(_all(driver, ".turn"))
    _by(driver, "#ask").click()
    _wait(
        driver,
        lambda d: len(_all(d, ".turn[data-state=done]")) > before or _all(d, "#messages .message"),
        what="the answer",
    )
    messages = [e.text for e in _all(driver, "#messages .message")]
    assert not messages, messages
    return _all(driver, ".turn")[-1]


def _record_requests(driver: Any) -> None:
    """Keep each JSON body the page sends, to check what a follow-up question carries."""
    driver.execute_script(
        """
        window.__sent = [];
        const original = window.fetch;
        window.fetch = (url, init) => {
          if (init && init.body) window.__sent.push({url, body: JSON.parse(init.body)});
          return original(url, init);
        };
        """
    )


def _check_passage_panel(driver: Any, source_button: Any) -> None:
    rank = source_button.get_attribute("data-rank")
    source_button.click()
    panel = _wait(driver, lambda d: _by(d, "#passage").is_displayed() and _by(d, "#passage"), what="passage")
    assert panel.get_attribute("data-rank") == rank
    assert _by(driver, "#passage-file").text.strip()  # the file's path
    assert _by(driver, "#passage-where").text.strip()  # page/section, or "whole file"
    assert len(_all(driver, "#passage-scores tr.score-row")) >= 2  # the fused score and its parts
    assert _by(driver, "#passage-text").text.strip()
    # Every source opens its original file, served from data.input_dir by its path there.
    link = _by(driver, "#passage-original a.original")
    file = _by(driver, "#passage-file").text.strip()
    assert link.get_attribute("href").split("#")[0].endswith("/v1/original/" + file)


@pytest.mark.slow
def test_page_streams_an_answer_with_sources_and_keeps_the_conversation(
    browser: Any, built_sample: Path
) -> None:
    driver = browser
    with serving(built_sample) as url:
        driver.get(url + "/")
        # Everything the page loads comes from the server itself: no CDN, no internet.
        for element in _all(driver, "script[src], link[href]"):
            address = element.get_attribute("src") or element.get_attribute("href")
            assert address.startswith((url, "data:")), address

        # The index panel: the manifest summary from /v1/index.
        _wait(driver, lambda d: _by(d, "#index-chunks").text.isdigit(), what="the index panel")
        assert int(_by(driver, "#index-chunks").text) > 0
        assert int(_by(driver, "#index-files").text) > 0
        assert _by(driver, "#index-embedding").text not in ("", "…", "?")
        assert _by(driver, "#index-built").text not in ("", "…", "?")

        _record_requests(driver)
        turn = _ask(driver, QUESTION)
        answer = turn.find_element("css selector", ".answer")
        assert answer.text.strip()
        # Streamed: the answer arrived as several token events, not one body.
        assert int(answer.get_attribute("data-tokens") or 0) > 1
        sources = turn.find_elements("css selector", "ol.sources button.source")
        assert sources, "no sources listed"
        assert all(s.get_attribute("data-rank") for s in sources)

        # A source entry opens its passage; so does an inline [n], the model's or the one the system
        # added to a sentence that had none: every answer cites a passage.
        _check_passage_panel(driver, sources[-1])
        cites = turn.find_elements("css selector", ".answer button.cite")
        assert cites, "no citation in the answer"
        _check_passage_panel(driver, cites[0])
        # Each sentence is marked up; one that no passage supports says why in its tooltip.
        assert turn.find_elements("css selector", ".answer .sentence")
        for sentence in turn.find_elements("css selector", ".answer .sentence.unsupported"):
            assert sentence.get_attribute("title").startswith("Not supported by the sources: ")

        # Mode and top-k apply; the follow-up carries the conversation so far.
        from selenium.webdriver.support.ui import Select

        Select(_by(driver, "#mode")).select_by_value("bm25")
        _by(driver, "#top-k").send_keys("2")
        second = _ask(driver, "And how is it checked?")
        assert len(second.find_elements("css selector", "ol.sources button.source")) == 2
        sent = driver.execute_script("return window.__sent")
        body = sent[-1]["body"]
        assert sent[-1]["url"] == "/v1/query" and body["stream"] is True
        assert body["mode"] == "bm25" and body["top_k"] == 2
        assert [t["role"] for t in body["history"]] == ["user", "assistant"]
        assert body["history"][0]["content"] == QUESTION

        # A full generation queue is a message, not a blank page. The fault is injected (a real
        # full queue needs a second client holding the model): the server's 503 reply, verbatim.
        driver.execute_script(
            """
            window.fetch = async function fault_queue_full() { return new Response(
              JSON.stringify({error: {message: "the generation queue is full", code: "queue_full"}}),
              {status: 503, headers: {"Retry-After": "7", "Content-Type": "application/json"}}); };
            """
        )
        _by(driver, "#question").send_keys("busy?")
        _by(driver, "#ask").click()
        busy = _wait(driver, lambda d: _all(d, "#messages .message.busy"), what="the busy message")
        assert "7" in busy[0].text

        # New conversation forgets the history.
        _by(driver, "#new-chat").click()
        assert not _all(driver, ".turn")


@pytest.mark.slow
def test_page_asks_for_the_key_once_and_answers_from_sources_without_a_model(
    browser: Any, built_sample: Path, tmp_path: Path
) -> None:
    driver = browser
    config = tmp_path / "keyed.yaml"
    config.write_text(f"extends: {built_sample}\nserver:\n  api_key: {KEY}\nllm:\n  provider: none\n")
    with serving(config) as url:
        driver.get(url + "/")
        driver.execute_script("sessionStorage.clear()")
        driver.get(url + "/")
        # The page loads without the key, then asks for it (the API answered 401).
        _wait(driver, lambda d: _by(d, "#key-form").is_displayed(), what="the key form")
        assert _all(driver, "#messages .message.auth")
        _by(driver, "#api-key").send_keys("wrong-key")
        _by(driver, "#key-save").click()
        _wait(driver, lambda d: _by(d, "#key-form").is_displayed(), what="the key form again")
        _by(driver, "#api-key").send_keys(KEY)
        _by(driver, "#key-save").click()
        _wait(driver, lambda d: _by(d, "#index-chunks").text.isdigit(), what="the index panel")
        assert not _by(driver, "#key-form").is_displayed()
        assert driver.execute_script("return sessionStorage.getItem('indexer-api-key')") == KEY

        # Kept for the tab: a reload does not ask again.
        driver.get(url + "/")
        _wait(driver, lambda d: _by(d, "#index-chunks").text.isdigit(), what="the index panel")
        assert not _by(driver, "#key-form").is_displayed()

        # No model: retrieval only, and the page says so.
        assert _by(driver, "#index-llm").text.startswith("sources only")
        assert _by(driver, "#sources-only").is_selected()
        turn = _ask(driver, QUESTION)
        assert not turn.find_elements("css selector", ".answer")
        sources = turn.find_elements("css selector", "ol.sources button.source")
        assert sources
        _check_passage_panel(driver, sources[0])
        # Each listed source has its "open original" link; the file comes with the tab's key.
        links = turn.find_elements("css selector", "ol.sources a.original")
        assert len(links) == len(sources)
        status = driver.execute_async_script(
            """
            const done = arguments[1];
            const key = sessionStorage.getItem('indexer-api-key');
            fetch(arguments[0], {headers: {Authorization: `Bearer ${key}`}})
              .then((r) => done(r.status), () => done(0));
            """,
            links[0].get_attribute("href").split("#")[0],
        )
        assert status == 200

        # Unticked, the query endpoint answers with the notice and the same kind of sources.
        _by(driver, "#sources-only").click()
        turn = _ask(driver, QUESTION)
        assert turn.find_elements("css selector", ".notice")
        assert turn.find_elements("css selector", "ol.sources button.source")


@pytest.mark.slow
def test_page_and_assets_are_served_without_the_key_and_the_api_still_needs_it(
    built_sample: Path, tmp_path: Path
) -> None:
    import httpx

    config = tmp_path / "keyed.yaml"
    config.write_text(f"extends: {built_sample}\nserver:\n  api_key: {KEY}\nllm:\n  provider: none\n")
    with serving(config) as url:
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("/static/app.js", "/static/style.css"):
            assert httpx.get(url + asset).status_code == 200
        assert httpx.get(url + "/v1/index").status_code == 401
        assert httpx.get(url + "/static/../v1/index").status_code in (401, 404)
        ok = httpx.get(url + "/v1/index", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and json.loads(ok.text)["llm"] is False
