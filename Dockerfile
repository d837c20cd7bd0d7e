# The image of the astrolab-rke2 work pool (prefect.yaml: registry.lab/astrolab:latest): the repository installed
# at /opt/astrolab, where the rke2 deployments' pull step sets the working directory.
#   docker build -t registry.lab/astrolab:latest . && docker push registry.lab/astrolab:latest
# (or podman/buildah; the cluster pulls it from the lab's registry).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# restic and the PostgreSQL client tools drive the backups; openssh-client the SSH compliance scans
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client postgresql-client restic ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/astrolab
COPY pyproject.toml README.md ./
COPY astrolab ./astrolab
COPY flows ./flows
COPY tasks ./tasks
COPY kernels ./kernels
COPY infra_flows ./infra_flows
RUN pip install . prefect-kubernetes

COPY expectations ./expectations
COPY infra ./infra
COPY prefect.yaml ./

RUN useradd --create-home --uid 1000 astrolab
USER astrolab
# numba caches compiled kernels next to the code unless told otherwise
ENV NUMBA_CACHE_DIR=/tmp/numba-cache
