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
# Data Docs' stylesheets and scripts, checked against pinned hashes, so that pages work offline in the cluster
COPY scripts/data_docs_assets.py ./scripts/
RUN python scripts/data_docs_assets.py

COPY expectations ./expectations
COPY infra ./infra
COPY prefect.yaml ./

RUN useradd --create-home --uid 1000 astrolab \
 && install -d -o astrolab -g astrolab /opt/astrolab/numba-cache
USER astrolab
# numba's disk cache, filled now so that a new pod's first void run loads the kernels instead of compiling them
# (~15-30 s); owned by the runtime user, since numba skips a cache directory it cannot write. A node with another
# CPU model than the build host's compiles once more, into the same directory. Entries are per source path: warm both
# the checkout here (what the deployments' working directory imports) and the installed copy (any other directory).
ENV NUMBA_CACHE_DIR=/opt/astrolab/numba-cache
RUN python -m kernels.warmup && cd / && python -m kernels.warmup
