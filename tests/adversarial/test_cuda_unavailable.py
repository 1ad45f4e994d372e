"""Issue 10, item 14: asking for CUDA on a machine without it says so, and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_names_the_device_not_the_model(tmp_path: Path) -> None:
    config = small_config(tmp_path / "cfg", write_docs(tmp_path / "docs"), embedding={"device": "cuda"})
    result = cli("build", str(config))
    assert_one_paragraph_error(result, "CUDA is not available", "embedding.device: cpu")
    assert "Hugging Face id" not in result.stderr  # not the "change the model" advice
