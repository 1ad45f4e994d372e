"""``/v1/index`` describes the index as it is served: after a ``--rebuild``, the live collection
(the configured name's next generation), not the configured name."""

from __future__ import annotations

import httpx
import pytest

from indexer import Indexer
from tests.support.live_server import live_server


@pytest.mark.slow
def test_index_names_the_live_collection_after_a_rebuild(make_config) -> None:
    from indexer.server import create_app

    indexer = Indexer.from_config(make_config(llm={"provider": "none"}))
    indexer.build()
    indexer.build(rebuild=True)
    with live_server(create_app(indexer)) as url:
        info = httpx.get(f"{url}/v1/index", timeout=60).json()
    assert info["collection"] == "test-g1"
    assert info["manifest"]["collection"] == "test-g1"
