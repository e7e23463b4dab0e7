# syntax=docker/dockerfile:1
# One image for every component: `promethios operator`, `promethios ingest` and
# `promethios sidecar` (the chart and the operator use it for the sidecar too).
#
# Build with any OCI builder, e.g.
#   docker build -t ghcr.io/promethios/promethios-operator:0.1.0 .
# `make image` builds this file with buildah on a machine with no registry: PYTHON_IMAGE then
# names a local Debian bookworm base (hack/image/base.sh) with python, pip and
# PIP_BREAK_SYSTEM_PACKAGES, which is all the stages below rely on. Only pyproject.toml,
# README.md and operator/ (the promethios-operator distribution) enter the build context;
# the local tooling in localdev/ never does (.dockerignore).
#
# The default base is pinned by tag only: pin it by digest in CI
# (python:3.11-slim@sha256:...) for reproducible builds.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: wheels for the package and all its dependencies -------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# pip wheel builds the package and downloads every dependency as a wheel.
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels .

# ---- final: the runtime only (no compilers, no pip cache, no sources) -------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheels are bind-mounted from the builder, so they never become an image layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels promethios-operator \
    && groupadd --system --gid 65532 promethios \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin promethios
# Numeric user, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# The chart runs it with a read-only root filesystem and an emptyDir on /tmp.
WORKDIR /tmp
# 8443: ingest API (and /metrics); 8080: kopf liveness (/healthz).
EXPOSE 8443 8080
ENTRYPOINT ["promethios"]
CMD ["operator"]
