"""Issue 31, item 3: no silent dead ends. A filter on a key no chunk has, a model path that does
not exist, ``chat`` without an index and a download the offline setting blocked are each one
paragraph and exit 2, never "No matching passages." or sources only with exit 0."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from indexer import Indexer
from indexer.errors import ConfigError
from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs
from tests.support.live_server import live_server

QUESTION = "How often is the desiccant replaced?"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dead-ends")
    config = small_config(root / "cfg", write_docs(root / "docs"))
    Indexer.from_config(config).build()
    return config


def test_unknown_filter_key_names_the_keys_that_exist_in_the_cli(built: Path) -> None:
    result = cli("query", str(built), QUESTION, "--retrieve-only", "--filter", "typ=pdf")
    assert_one_paragraph_error(result, "typ", "'type'", "path", "page", "title", "section")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "No matching passages" not in result.stdout
    # The keys that exist still filter.
    for good in ("type=txt", "path=guides/*", "file_name=mast.txt"):
        ok = cli("query", str(built), QUESTION, "--retrieve-only", "--filter", good)
        assert ok.returncode == 0 and "Sources:" in ok.stdout, (good, ok.stderr)


def test_unknown_filter_key_in_the_python_api_and_the_config(built: Path) -> None:
    ix = Indexer.from_config(built)
    with pytest.raises(ConfigError, match=r"typ.*did you mean 'type'.*title, page"):
        ix.retrieve(QUESTION, filters={"typ": "pdf"})
    configured = Indexer.from_config(built, {"retrieval.filters": {"pgae": 3}})
    with pytest.raises(ConfigError, match=r"pgae.*'page'"):
        configured.retrieve(QUESTION)


def test_unknown_filter_key_over_http_is_a_400_naming_the_keys(built: Path) -> None:
    from indexer.server import create_app

    with live_server(create_app(Indexer.from_config(built))) as url:
        response = httpx.post(f"{url}/v1/retrieve", json={"question": QUESTION, "filters": {"typ": "pdf"}})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "filters" and "'type'" in error["message"] and "page" in error["message"]
