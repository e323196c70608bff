# syntax=docker/dockerfile:1.7
#
# astrobio on a CUDA machine. Two stages:
#   build    CUDA devel image + rustup + uv: compiles the Rust extension (maturin) and, optionally,
#            flash-attn; installs the locked environment (uv.lock) into /opt/venv, non-editable.
#   runtime  CUDA runtime image + the managed Python and /opt/venv copied over; non-root user.
#
#   docker build -t astrobio .                                  # with xformers and flash-attn
#   docker build -t astrobio --build-arg FLASH_ATTN=0 .         # skip the long flash-attn build
#   docker run --rm --gpus all astrobio smoke --require gpu
#   docker run --rm --gpus all -v astrobio-data:/data astrobio train cube-unet --gpus 2
#
# torch comes from uv.lock (PyPI's Linux build, which bundles its CUDA 13 runtime as nvidia-*
# wheels), so the base image's CUDA minor version matters only for nvcc when flash-attn compiles:
# keep its major version equal to torch's (13). See docs/deploy.md. Not built in the session that
# wrote it (no Docker engine there): tests/deploy/test_dockerfile.py checks it by reading.

ARG CUDA_VERSION=13.2.0
ARG UBUNTU=ubuntu24.04

# ---------------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build

ARG PYTHON_VERSION=3.11
# 1: also install the flash-attn extra (compiles CUDA kernels when no prebuilt wheel matches;
# budget an hour and ~16 GB of RAM, or lower MAX_JOBS). 0: xformers only.
ARG FLASH_ATTN=1
ARG MAX_JOBS=4

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl build-essential git pkg-config \
    && rm -rf /var/lib/apt/lists/*

# Rust for the extension (maturin calls cargo), uv for the locked environment.
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:${PATH}
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain stable
COPY --from=ghcr.io/astral-sh/uv:latest /uv /uvx /usr/local/bin/

# A uv-managed Python in /opt/python; the venv in /opt/venv. Both are copied to the runtime
# stage at the same paths, so the venv's interpreter links stay valid.
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    MAX_JOBS=${MAX_JOBS}
RUN uv python install ${PYTHON_VERSION}

WORKDIR /src

# 1. Third-party dependencies only (a cached layer while the sources change). The workspace
#    members' pyproject files are enough for uv to resolve them from the lock.
COPY pyproject.toml uv.lock README.md ./
COPY plugins/models/pyproject.toml plugins/models/
COPY plugins/data_sources/pyproject.toml plugins/data_sources/
COPY plugins/attention/pyproject.toml plugins/attention/
COPY examples/astrobio-example-plugin/pyproject.toml examples/astrobio-example-plugin/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-workspace --extra xformers

# 2. flash-attn builds against the installed torch (no build isolation), so torch and its build
#    tools must be in the venv first; --inexact keeps those tools for the build.
RUN --mount=type=cache,target=/root/.cache/uv \
    if [ "${FLASH_ATTN}" = "1" ]; then \
        uv pip install --python /opt/venv/bin/python setuptools wheel ninja packaging psutil \
        && UV_NO_BUILD_ISOLATION_PACKAGE=flash-attn \
           uv sync --locked --no-dev --no-install-workspace --inexact \
               --extra xformers --extra flash-attn ; \
    fi

# 3. The project: the Rust core and binding crates, the core package and the built-in plugins.
COPY Cargo.toml Cargo.lock ./
COPY rust/ rust/
COPY src/ src/
COPY plugins/ plugins/
COPY examples/ examples/
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=cache,target=/opt/cargo/registry \
    EXTRAS="--extra xformers"; \
    if [ "${FLASH_ATTN}" = "1" ]; then EXTRAS="${EXTRAS} --extra flash-attn"; fi; \
    uv sync --locked --no-dev --no-editable ${EXTRAS} \
    && /opt/venv/bin/astrobio --version \
    && /opt/venv/bin/python -c "import astrobio_cli._native as n; print('native', n.build_profile())"

# ---------------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS runtime

# gcc and libc headers: Triton compiles a small C launcher the first time a kernel runs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin astrobio \
    && mkdir -p /data \
    && chown astrobio:astrobio /data

COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    ASTROBIO_DATA_DIR=/data/data \
    ASTROBIO_CACHE_DIR=/data/cache \
    ASTROBIO_RUNS_DIR=/data/runs \
    TRITON_CACHE_DIR=/data/cache/triton

USER astrobio
WORKDIR /home/astrobio
VOLUME ["/data"]
# `astrobio serve` listens here; pass --host 0.0.0.0 inside the container and publish the port
# on the host's loopback (docker run -p 127.0.0.1:8000:8000 ...): the API has no auth.
EXPOSE 8000

# Cheap enough to run every few minutes: imports torch, asks CUDA, loads every plugin.
HEALTHCHECK --interval=5m --timeout=2m --start-period=2m --retries=3 \
    CMD ["astrobio", "smoke", "--only", "accelerator,imports"]

ENTRYPOINT ["astrobio"]
CMD ["smoke"]
