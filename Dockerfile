# runner-orchestrator daemon image.
#
#   docker build -t runner-orchestrator:local .
#   docker build --build-arg BASE_IMAGE=runner-orchestrator/base-python:bookworm .   # no registry
#
# BASE_IMAGE must be a Debian-like image with python3 >= 3.11 and its venv module
# (python:3.11-slim, or the debootstrap base from scripts/build-base-image.sh). Both
# stages use the same base, so the venv's interpreter path is valid in the final image.
#
# Dependencies come from PyPI by default. Where `docker build` cannot reach PyPI, fill
# ./wheelhouse/ on the host (scripts/build-wheelhouse.sh) and add
# --build-arg PIP_NO_INDEX=1: pip then installs from those wheels only.
#
# Few instructions on purpose: with the classic builder every instruction is a layer
# commit, which costs seconds on slow storage drivers.
ARG BASE_IMAGE=python:3.11-slim

# The dependency list, extracted from pyproject.toml. The build stage copies only the
# result, so editing other parts of pyproject.toml (version, tool settings) keeps the
# cached dependency layer: the classic builder compares copied files by content.
FROM ${BASE_IMAGE} AS requirements
# Marks the helper stages' intermediate images, so a clean-up can find them (they stay
# untagged as build cache once the final image is tagged).
LABEL io.runner-orchestrator.build-stage=true
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' > /requirements.txt

FROM ${BASE_IMAGE} AS build
LABEL io.runner-orchestrator.build-stage=true
ARG PIP_NO_INDEX=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INDEX=${PIP_NO_INDEX} \
    PIP_FIND_LINKS=/src/wheelhouse PYTHONDONTWRITEBYTECODE=1
# 1. Dependencies only: rebuilt when the dependency list (or the wheelhouse) changes,
#    not on every source edit.
COPY --from=requirements /requirements.txt /src/requirements.txt
COPY wheelhouse/ /src/wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install -r /src/requirements.txt
# 2. The project itself (.dockerignore limits the context to what this needs).
COPY . /src/
RUN /opt/venv/bin/pip install --no-deps /src \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/pip /opt/venv/bin/pip*

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="runner-orchestrator" \
      org.opencontainers.image.description="Autoscaler for self-hosted GitLab/GitHub CI runners as Docker containers" \
      org.opencontainers.image.licenses="MIT"
# A fixed unprivileged uid/gid (10001) so the state volume's ownership is predictable.
# Docker access comes only from the socket's group, added at run time (compose:
# group_add: DOCKER_GID). /data is created here so a new named volume inherits 10001.
# openssh-client: ssh:// Docker hosts are reached through the system ssh (the daemon runs
# `ssh HOST docker system dial-stdio`, as the Docker CLI does); its config, key and
# known_hosts are read from /data/.ssh (the user's home), see docs/deployment.md.
RUN groupadd --system --gid 10001 orchestrator \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin orchestrator \
 && install -d -o 10001 -g 10001 -m 0750 /data \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-client \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data HTTP_HOST=0.0.0.0 HTTP_PORT=8080
USER 10001:10001
EXPOSE 8080
# /health is 200 while the reconcile loop runs and 503 when it stalls; urlopen raises on
# a refused connection and on a non-2xx answer, so the exit code says healthy or not.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HTTP_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["runner-orchestrator"]
CMD ["run"]
