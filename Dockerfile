# syntax=docker/dockerfile:1
# imgclf's locked environment as an image; the pipeline (your checkout) is mounted at /work.
#
#   docker build -t imgclf .                      # CPU (the default target: the last stage)
#   docker build --target gpu -t imgclf:gpu .     # TensorFlow with CUDA; run with --gpus all
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD":/work imgclf                   # dvc repro
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD":/work imgclf promote --dry-run # imgclf ...
#
# docs/guide/scaling.md has the whole story; docker/entrypoint.sh says what the arguments do.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builders: a virtual environment in /opt/venv from the lock file -------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV UV_NO_CACHE=1 UV_LINK_MODE=copy PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.lock requirements-gpu.lock ./
# uv at the version the lock pins, like `make install`.
RUN pip install --no-cache-dir "uv==$(sed -n 's/^uv==//p' requirements.lock)"
COPY pyproject.toml README.md ./
COPY src ./src
COPY docker/install.sh docker/check-locked.sh ./docker/

FROM builder AS builder-cpu
RUN docker/install.sh /opt/venv cpu

FROM builder AS builder-gpu
RUN docker/install.sh /opt/venv gpu

# --- runtime: no compilers, no uv, a non-root user ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# git: DVC reads the checkout's history (dvc.lock, experiments); the train stage tags the commit.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --shell /bin/bash imgclf \
    && install -d -o imgclf -g imgclf /work
COPY docker/entrypoint.sh /usr/local/bin/imgclf-entrypoint
# The mount belongs to the host user, not to the image's: let git (and DVC through it) read it.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    GIT_CONFIG_COUNT=1 \
    GIT_CONFIG_KEY_0=safe.directory \
    GIT_CONFIG_VALUE_0=/work
WORKDIR /work
# Numeric, so Kubernetes' runAsNonRoot can check it; `docker run --user` may override it.
USER 1000:1000
ENTRYPOINT ["imgclf-entrypoint"]

FROM runtime AS gpu
COPY --from=builder-gpu /opt/venv /opt/venv

# The default target comes last.
FROM runtime AS cpu
COPY --from=builder-cpu /opt/venv /opt/venv
