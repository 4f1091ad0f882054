# ls-panoptic service image: backend (gunicorn), worker (RQ) and the CLI in one image.
#
# The base is a build argument: any Debian-based image with Python 3.10+ and its venv module.
#   docker build -t ls-panoptic .                                   # python:3.11-slim
#   docker build --build-arg BASE=my-bookworm-python -t ls-panoptic .   # e.g. a debootstrap base
# Behind a TLS-intercepting proxy, hand pip the proxy's CA bundle as a BuildKit secret (it is
# mounted for the install steps only, never stored in a layer):
#   DOCKER_BUILDKIT=1 docker build --secret id=ca_bundle,src=/path/to/ca-bundle.crt -t ls-panoptic .
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
WORKDIR /src

# The dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml README.md LICENSE ./
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && python3 -m venv /opt/venv \
    && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\\n')" > requirements.txt \
    && pip install -r requirements.txt

COPY ls_panoptic ls_panoptic
COPY worker worker
COPY backend backend
COPY cli cli
COPY devstack devstack
# gcc builds the brush RLE walk in C (ls_panoptic/_rlewalk.c; without it the numpy walk runs,
# ~5x slower): installed for the build with Python's headers where the base lacks them (Debian's
# python3), checked from outside the sources, and removed in the same layer with the sources
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && headers=$(python -c "import os, sysconfig; print('' if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 'libpython3-dev')") \
    && apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev $headers \
    && pip install --no-deps . && cd / && python -c "import ls_panoptic._rlewalk" \
    && apt-get purge -y --auto-remove gcc libc6-dev $headers && rm -rf /var/lib/apt/lists/* /src \
    && useradd --create-home --uid 1000 lsp && mkdir /snapshots && chown lsp /snapshots

WORKDIR /home/lsp
USER lsp
ENV LS_PANOPTIC_SNAPSHOT_DIR=/snapshots
EXPOSE 9090
ENTRYPOINT ["ls-panoptic"]
CMD ["serve", "--host", "0.0.0.0", "--port", "9090"]
