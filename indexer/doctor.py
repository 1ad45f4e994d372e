"""`indexer doctor`: what this machine and config will run with, checked before anything is built.

It reads the config, the documents folder, the index, the llama.cpp build, the CPU and the model
file, renders a sample prompt the way llama.cpp will receive it, and lists each problem it finds.
It reads the index's manifest but never changes the index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.config.models import Config
from indexer.cpu import cpu_flags, cpu_model
from indexer.errors import IndexerError

# llama.cpp's feature names (llama_print_system_info) and the /proc/cpuinfo flags that offer them.
_LLAMA_CPU_FEATURES = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX_VNNI": "avx_vnni",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
# Left out on purpose: AMX kernels die with SIGILL where a VM does not let worker threads use AMX.
_NEVER_BUILT = {"AMX_INT8": "AMX is never built in: it crashes under VMs that deny it to threads"}
# A filler passage of common one-token words, to size the sample prompt like real chunks.
_FILLER = "the station crew checks each system and records the result in the log before the shift ends "


@dataclass
class DoctorReport:
    sections: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    prompt: str | None = None
    prompt_tokens: int | None = None

    def add(self, title: str, rows: list[tuple[str, str]]) -> None:
        self.sections.append((title, rows))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sections": {title: dict(rows) for title, rows in self.sections},
            "prompt": self.prompt,
            "prompt_tokens": self.prompt_tokens,
            "warnings": self.warnings,
            "problems": self.problems,
        }


def llama_build_features() -> dict[str, bool]:
    """The CPU features compiled into the installed llama.cpp, from its own system info."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    features: dict[str, bool] = {}
    for part in info.replace("\n", "|").split("|"):
        name, sep, value = part.partition("=")
        name = name.split(":")[-1].strip()
        if sep and name:
            features[name] = value.strip() not in ("0", "")
    return features


def diagnose(config: Config) -> DoctorReport:
    report = DoctorReport()
    _machine(report, config)
    _documents_and_index(report, config)
    _embedding(report, config)
    if config.llm.provider == "llama_cpp":
        _llama_cpp(report, config)
    elif config.llm.provider == "openai_like":
        report.add("LLM", [("provider", f"openai_like at {config.llm.base_url}, model {config.llm.model}")])
    elif config.llm.provider == "llama_index":
        report.add("LLM", [("provider", f"llama_index: {config.llm.class_}")])
    else:
        report.add("LLM", [("provider", "none (retrieval only)")])
    return report


def _machine(report: DoctorReport, config: Config) -> None:
    from indexer.cpu import cpu_count

    cores = cpu_count()
    rows = [("CPU", cpu_model()), ("cores", str(cores))]
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    if load is not None:
        rows.append(("load (1 min)", f"{load:.2f}"))
        if load > cores:
            report.warnings.append(
                f"the CPU is busy: load {load:.1f} on {cores} cores. Other processes share it, so "
                "embedding and generation will run slower than this machine can."
            )
    report.add("Machine", rows)


def _documents_and_index(report: DoctorReport, config: Config) -> None:
    """The documents folder (readable, how many files) and the index (there, made with this
    config's embedder and chunking, in step with the folder), as ``indexer status`` sees them."""
    from indexer.index.index import Index
    from indexer.ingestion.sources import discover
    from indexer.ingestion.status import index_status

    folder = config.data.input_dir
    try:
        discovery = discover(config.data)
    except IndexerError as exc:  # missing, not a folder, unreadable, or nothing to index
        report.add("Documents", [("folder", str(folder)), ("files", "none readable")])
        report.problems.append(str(exc))
        discovery = None
    if discovery is not None:
        files = f"{len(discovery.sources)} to index"
        others = [
            (len(discovery.unsupported), "of a type indexer cannot read"),
            (len(discovery.refused), "refused (links, size or other limits)"),
            (len(discovery.unreadable), "unreadable"),
        ]
        files += "".join(f", {n} {what}" for n, what in others if n)
        report.add("Documents", [("folder", f"{folder} (readable)"), ("files", files)])
        for item in discovery.unreadable:
            report.warnings.append(f"cannot read {item.doc_id} in {folder}: {item.reason}")

    index = Index(config.vector_store)
    rows = [("location", index.location)]
    try:
        manifest = index.current()
    except IndexerError as exc:  # a Chroma server that does not answer, an unreadable manifest
        report.add("Index", rows)
        report.problems.append(str(exc))
        return
    if manifest is None:
        rows.append(("state", "not built yet"))
        report.add("Index", rows)
        report.warnings.append(f"no index yet at {index.location}: `indexer build CONFIG` makes it")
        return
    rows.append(("built", f"{len(manifest.files)} documents, {manifest.chunk_count} chunks"))
    if discovery is None:
        report.add("Index", rows)
        return
    try:
        status = index_status(config, index)
    except IndexerError as exc:
        report.add("Index", rows)
        report.problems.append(str(exc))
        return
    for problem in status.problems:
        report.problems.append(f"the index does not match the config: {problem} (indexer build --rebuild)")
    if status.store_missing:
        report.problems.append(
            f"the vectors of the index at {index.location} are gone: `indexer build CONFIG` indexes "
            "every file again"
        )
    rows.append(("matches the config", "no" if status.problems else "yes"))
    if status.up_to_date:
        rows.append(("current", f"yes, {status.unchanged} file(s) unchanged since the last build"))
    else:
        behind = (
            f"{len(status.new)} new, {len(status.changed)} changed, {len(status.deleted)} deleted "
            "since the last build"
        )
        rows.append(("current", f"no: {behind}"))
        report.warnings.append(f"the index is behind its folder ({behind}): run `indexer build CONFIG`")
    report.add("Index", rows)


def _embedding(report: DoctorReport, config: Config) -> None:
    from indexer.components.cpu_streams import cpu_streams
    from indexer.components.devices import device_kind
    from indexer.components.embedding import resolve_dtype
    from indexer.components.openmp_env import set_wait_policy_before_torch
    from indexer.ingestion.encoders import resolve_encoder_process, resolve_tokenize_in_workers

    set_wait_policy_before_torch()
    import torch

    embedding = config.embedding
    device = embedding.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        report.problems.append(
            f"embedding.device is {device!r} but CUDA is not available here: set embedding.device: cpu"
        )
    dtype, reason = resolve_dtype(embedding)
    rows = [
        ("model", embedding.model),
        ("backend", f"{embedding.backend} (questions: {embedding.query_backend})"),
        ("torch", f"{torch.__version__}, device {device}"),
        ("dtype", f"{dtype} (embedding.dtype {embedding.dtype}: {reason})"),
        ("torch threads", str(torch.get_num_threads())),
    ]
    if device_kind(device) == "cpu":  # components/cpu_streams.py
        passes = f"{cpu_streams()} at once, on one core each"
        if embedding.backend == "onnx":
            passes = "one at a time, on onnxruntime's own threads"
        rows.append(("build forward passes", passes))
    rows.append(("embedding route", _embedding_route(config)))
    if config.build.engine == "local":
        apart, why = resolve_encoder_process(config)
        where = "a process of its own" if apart else "the build process"
        rows.append(("builds embed in", f"{where} ({why})"))
        tokenize, why = resolve_tokenize_in_workers(config)
        rows.append(
            ("chunks tokenized by", f"{'the chunking workers' if tokenize else 'the encoder'} ({why})")
        )
    report.add("Embedding", rows)
    slow = _slow_dtype_on_cpu(dtype, device)
    if slow:
        report.warnings.append(slow)


def _embedding_route(config: Config) -> str:
    """Which route questions and small builds take (``components/onnx_direct.py``), found without
    loading the model: the torch-free route needs the recipe a build or a query writes once."""
    from indexer.components.embedding import query_config
    from indexer.components.onnx_direct import load_direct
    from indexer.ingestion.encoders import direct_route, onnx_max_chunks

    if config.embedding.provider == "llama_index":
        return f"questions and passages: LlamaIndex {config.embedding.class_}"
    wanted = query_config(config.embedding)
    if wanted.backend != "onnx":
        questions = "questions: torch"
    elif load_direct(wanted) is not None:
        questions = "questions: onnxruntime + tokenizers, torch not imported"
    else:
        questions = "questions: torch + onnxruntime until the next build or query writes the ONNX recipe"
    if config.build.engine != "local" or not onnx_max_chunks(config):
        return questions
    if direct_route(config, torch_loaded=False) is None:  # as a new `indexer build` process
        return f"{questions}; builds: torch"
    return f"{questions}; builds of up to {onnx_max_chunks(config)} chunks: ONNX, larger: torch"


def _slow_dtype_on_cpu(dtype: str, device: str) -> str | None:
    """A reduced format the CPU has no instructions for is emulated, slower than float32."""
    if not device.startswith("cpu"):
        return None
    flags = cpu_flags()
    if dtype == "bfloat16" and not flags & {"amx_bf16", "avx512_bf16"}:
        lacking = "AMX or AVX512-BF16"
    elif dtype == "float16" and not flags & {"amx_fp16", "avx512_fp16"}:
        lacking = "AMX-FP16 or AVX512-FP16"
    else:
        return None
    return (
        f"embedding.dtype {dtype} on a CPU without {lacking} is emulated and slower than float32: "
        "set embedding.dtype: auto"
    )


def _llama_cpp(report: DoctorReport, config: Config) -> None:
    from indexer.cpu import cpu_count

    llm = config.llm
    features = llama_build_features()
    flags = cpu_flags()
    built = sorted(name for name, on in features.items() if on and name in _LLAMA_CPU_FEATURES)
    without = sorted(
        name for name, flag in _LLAMA_CPU_FEATURES.items() if flag in flags and not features.get(name, False)
    )
    rows = [
        ("built with", " ".join(built) or "no x86 extensions"),
        ("CPU has, build lacks", " ".join(without) or "nothing"),
        ("other", " ".join(n for n, on in features.items() if on and n not in _LLAMA_CPU_FEATURES)),
        ("threads", str(llm.n_threads or cpu_count())),
    ]
    for name in without:
        if name in _NEVER_BUILT:
            rows.append((name, _NEVER_BUILT[name]))
    report.add("llama.cpp", rows)
    _model(report, config)


def _model(report: DoctorReport, config: Config) -> None:
    from indexer.components.chat_templates import FROM_GGUF, missing_markers
    from indexer.components.llm import ChatLlamaCPP
    from indexer.components.llm_loader import load_llm

    llm_config = config.llm
    try:
        # Loaded as a query loads it, except that a missing model is a problem here, not a notice.
        llm, _ = load_llm(llm_config.model_copy(update={"required": True}))
    except IndexerError as exc:
        report.problems.append(str(exc))
        return
    assert isinstance(llm, ChatLlamaCPP)  # only called for llm.provider llama_cpp
    path = Path(llm.llama.model_path)  # the GGUF the loader resolved (bundled, local or downloaded)
    choice = llm.template
    template_name = FROM_GGUF if choice.reason == FROM_GGUF else f"{choice.template.name} ({choice.reason})"
    bos = llm.llama.token_bos()
    bos_text = llm.token_text(bos) if bos != -1 else "none"
    eog = ", ".join(f"{llm.token_text(t)} ({t})" for t in llm.eog_tokens)
    report.add(
        "Model",
        [
            ("file", str(path)),
            ("size", f"{path.stat().st_size / 1e6:.0f} MB"),
            ("architecture", llm.architecture),
            ("context", f"llm.n_ctx {llm_config.n_ctx} (trained on {llm.n_ctx_train})"),
            ("chat template", template_name),
            ("BOS", f"{bos_text}, {'added' if llm.wants_bos else 'not added'} (add_bos_token)"),
            ("end of generation", eog or "none"),
            ("stop strings", ", ".join(repr(s) for s in llm.render([]).stop) or "none"),
        ],
    )
    if choice.picked:
        report.warnings.append(
            f"the GGUF has no chat template; {choice.template.name!r} was picked ({choice.reason}). "
            "Set llm.chat_template to choose another."
        )
    missing = missing_markers(choice.template, llm.is_single_token)
    if missing:
        report.problems.append(
            f"chat template {choice.template.name!r}: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not a single token of this model's vocabulary, so "
            "the model will not recognise its turns (llm.chat_template)"
        )
    if llm_config.n_ctx > llm.n_ctx_train:
        report.warnings.append(
            f"llm.n_ctx {llm_config.n_ctx} is above the {llm.n_ctx_train} tokens the model was trained on"
        )
    _sample_prompt(report, config, llm)
    _prompt_eval_time(report, config, llm)


def _sample_prompt(report: DoctorReport, config: Config, llm: Any) -> None:
    """A prompt of top_k chunk-sized passages, rendered and counted as llama.cpp receives it."""
    from indexer.query.engine import Source, prompt_messages

    words = _FILLER.split()
    passage = " ".join(words[i % len(words)] for i in range(config.chunking.chunk_size))
    sources = [
        Source(rank=n, score=0.0, file=f"example-{n}.md", doc_id=f"example-{n}.md", text=passage)
        for n in range(1, config.query.top_k + 1)
    ]
    messages = prompt_messages(config.query, "What does the log record?", sources)
    rendered = llm.render(messages)
    report.prompt = llm.llama.detokenize(rendered.tokens, special=True).decode("utf-8", "replace")
    report.prompt_tokens = len(rendered.tokens)
    needed = len(rendered.tokens) + config.llm.max_new_tokens
    if needed > config.llm.n_ctx:
        report.problems.append(
            f"llm.n_ctx ({config.llm.n_ctx}) is too small for query.top_k {config.query.top_k} chunks of "
            f"{config.chunking.chunk_size} tokens: the prompt takes about {len(rendered.tokens)} tokens "
            f"and llm.max_new_tokens {config.llm.max_new_tokens} more. Raise llm.n_ctx, or lower "
            "query.top_k or chunking.chunk_size"
        )


# Tokens evaluated to time the model's prompt processing: enough for a steady rate, little enough
# that doctor stays quick with a large model.
_PROMPT_EVAL_SAMPLE = 128


def _prompt_eval_time(report: DoctorReport, config: Config, llm: Any) -> None:
    """What a cold answer waits for besides loading: llama.cpp evaluating the prompt of
    ``query.top_k`` chunk-sized passages, timed here on a sample of it and scaled to its length."""
    import time

    if not report.prompt_tokens:
        return
    words = _FILLER.split()
    text = " ".join(words[i % len(words)] for i in range(4 * _PROMPT_EVAL_SAMPLE))
    tokens = llm.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)[:_PROMPT_EVAL_SAMPLE]
    llm.llama.reset()
    llm.llama.eval(tokens[:8])  # the first evaluation also sets up llama.cpp's buffers
    llm.llama.reset()
    started = time.perf_counter()
    llm.llama.eval(tokens)
    seconds = time.perf_counter() - started
    llm.llama.reset()
    rate = len(tokens) / max(seconds, 1e-6)
    estimate = report.prompt_tokens / rate
    row = (
        "prompt eval (est.)",
        f"{estimate:.2f} s for the {report.prompt_tokens}-token prompt of query.top_k "
        f"{config.query.top_k} chunks ({rate:.0f} tokens/s, measured now): what a cold answer's "
        "first token waits for after start-up",
    )
    for title, rows in report.sections:
        if title == "Model":
            rows.append(row)
