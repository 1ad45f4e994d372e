"""Is the torch device a config names there at all? Checked before a model loads, so that a
machine without CUDA hears that, not an error from deep inside the model loader that reads like a
problem with the model."""

from __future__ import annotations

from indexer.errors import ModelError


def device_kind(device: str) -> str:
    """The kind of a torch device as a config names it: ``cuda:1`` -> ``cuda``, ``CPU`` -> ``cpu``."""
    return device.split(":", 1)[0].strip().lower()


def check_device(device: str, setting: str) -> None:
    """Raise ``ModelError`` when ``device`` (e.g. ``cuda:0``, ``mps``) is not available here."""
    kind = device_kind(device)
    if kind not in ("cuda", "mps"):
        return  # cpu, or a device torch itself will explain
    import torch

    if kind == "cuda":
        if torch.cuda.is_available():
            return
        build = "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA GPU or driver found"
        raise ModelError(
            f"{setting} is {device!r}, but CUDA is not available on this machine ({build}, torch "
            f"{torch.__version__}). Set {setting}: cpu, or install a CUDA build of torch on a "
            "machine with an NVIDIA GPU."
        )
    if not torch.backends.mps.is_available():
        raise ModelError(
            f"{setting} is {device!r}, but Apple's MPS is not available on this machine. Set {setting}: cpu."
        )
