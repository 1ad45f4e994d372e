"""Forward passes on several single-core streams (``components/cpu_streams.py``): every item once,
in order, each stream on one core; torch's thread settings of every other thread as they were; a
failure reaches the caller; and the vectors are the ones a single stream computes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from indexer.components import embedding
from indexer.components.cpu_streams import map_in_streams
from indexer.config.models import EmbeddingConfig
from tests.test_passage_tokenizer import _texts


@pytest.fixture
def two_torch_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _fresh_thread_torch_threads() -> int:
    import torch

    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_streams_compute_every_item_in_order_on_one_core_each(two_torch_threads) -> None:
    import torch

    fresh_before = _fresh_thread_torch_threads()
    ran_on: dict[int, int] = {}

    def work(n: int) -> int:
        assert torch.is_inference_mode_enabled()
        assert torch.get_num_threads() == 1
        ran_on[n] = threading.get_ident()
        time.sleep(0.005)  # so that one stream cannot take every item before the other starts
        return int(torch.arange(n + 1).sum())

    items = list(range(40))
    assert map_in_streams(work, items, 2) == [n * (n + 1) // 2 for n in items]
    assert len(set(ran_on.values()) - {threading.get_ident()}) == 2  # two streams, not the caller
    assert torch.get_num_threads() == 2  # the caller's own setting
    assert _fresh_thread_torch_threads() == fresh_before  # and the default for threads to come
    # One stream, or one item: the caller's thread computes, as it is set.
    assert map_in_streams(lambda n: (torch.get_num_threads(), threading.get_ident()), [0], 2) == [
        (2, threading.get_ident())
    ]


def test_a_failure_in_a_stream_is_raised_in_the_caller(two_torch_threads) -> None:
    done: list[int] = []

    def work(n: int) -> int:
        if n == 3:
            raise ValueError("item 3 is bad")
        done.append(n)
        return n

    with pytest.raises(ValueError, match="item 3 is bad"):
        map_in_streams(work, list(range(500)), 2)
    assert len(done) < 499  # the streams stopped taking items after the failure


@pytest.mark.slow
def test_vectors_from_streams_equal_one_streams(two_torch_threads, monkeypatch) -> None:
    from indexer.components import cpu_streams

    model = embedding.SentenceTransformerEmbedder(EmbeddingConfig(dtype="float32", batch_size=8))
    tokenizer = model.passage_tokenizer
    assert tokenizer is not None
    ids = tokenizer(_texts())
    streamed = model.embed(ids)
    monkeypatch.setattr(cpu_streams, "cpu_streams", lambda: 1)
    single = model.embed(ids)
    assert streamed.shape == single.shape and streamed.dtype == np.float32
    np.testing.assert_allclose(streamed, single, atol=1e-6)
