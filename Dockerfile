# CPU image of the HTTP service. Build:  docker build -t indexer .
# Run (model and index are volumes, never baked in):
#   docker run --rm -p 127.0.0.1:8000:8000 -e INDEXER_API_KEY=... \
#     -v "$PWD/models:/models:ro" -v "$PWD/storage:/index" -v "$PWD/configs:/config:ro" \
#     indexer serve /config/docker.yaml --host 0.0.0.0 --port 8000

# --- build stage: compile llama-cpp-python and install everything into a venv -----------------
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv $VIRTUAL_ENV
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
WORKDIR /src
# torch first, from the CPU index, so nothing pulls the CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# llama.cpp for a CPU class, never for the build machine: the image runs on other CPUs. The default
# class (AVX2/FMA/F16C, no AMX) runs on any x86-64 CPU since about 2015; pass
# --build-arg INDEXER_LLAMA_CPU=avx512 for AVX-512 hosts, or INDEXER_LLAMA_CMAKE_ARGS=-DGGML_CUDA=on
# in an image with the CUDA toolkit.
ARG INDEXER_LLAMA_CPU=x86-64-v3
ARG INDEXER_LLAMA_CMAKE_ARGS=
COPY tools/llama_cpp_wheel.py ./tools/
RUN INDEXER_WHEEL_CACHE=/tmp/wheels python tools/llama_cpp_wheel.py > /tmp/wheel-dir \
 && pip install --no-index --no-deps "$(tail -n 1 /tmp/wheel-dir)"/*.whl \
 && rm -rf /tmp/wheels
COPY pyproject.toml README.md ./
COPY indexer ./indexer
RUN pip install '.[server]'

# --- runtime stage: the venv only, as a non-root user --------------------------------------------
FROM python:3.11-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 indexer \
 && mkdir -p /models /index /config \
 && chown indexer:indexer /index
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
USER indexer
WORKDIR /home/indexer
VOLUME ["/models", "/index"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
ENTRYPOINT ["indexer"]
CMD ["serve", "/config/config.yaml", "--host", "0.0.0.0", "--port", "8000"]
