# ls-panoptic service image: backend (gunicorn), worker (RQ) and the CLI in one image.
#
# The base is a build argument: any Debian-based image with Python 3.10+ and its venv module.
#   docker build -t ls-panoptic .                                       # python:3.11-slim
#   docker build --build-arg BASE=my-bookworm-python -t ls-panoptic .   # e.g. a debootstrap base
# Behind a TLS-intercepting proxy, hand pip the proxy's CA bundle as a BuildKit secret (mounted
# for the install steps only, stored in no layer):
#   DOCKER_BUILDKIT=1 docker build --secret id=ca_bundle,src=/path/to/ca-bundle.crt -t ls-panoptic .
ARG BASE=python:3.11-slim

# The dependencies, from pyproject.toml alone: rebuilt only when they (or the base) change.
FROM ${BASE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && python3 -m venv /opt/venv \
    && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\\n')" > requirements.txt \
    && pip install -r requirements.txt

# The project's wheel, with the brush RLE walk in C (ls_panoptic/_rlewalk.c; without it the
# numpy walk runs, ~5x slower): gcc, and Python's headers where the base lacks them (Debian's
# python3), live in this stage only (a layer of their own, cached).
FROM runtime AS wheel
RUN headers=$(python -c "import os, sysconfig; print('' if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 'libpython3-dev')") \
    && apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev $headers \
    && rm -rf /var/lib/apt/lists/*
COPY ls_panoptic ls_panoptic
COPY worker worker
COPY backend backend
COPY cli cli
COPY devstack devstack
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && pip wheel --no-deps --wheel-dir /wheels .

# The image: the dependencies and the wheel; the C walk checked from outside the sources.
FROM runtime
COPY --from=wheel /wheels /wheels
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels /src \
    && cd / && python -c "import ls_panoptic._rlewalk" \
    && useradd --create-home --uid 1000 lsp && mkdir /snapshots && chown lsp /snapshots
WORKDIR /home/lsp
USER lsp
ENV LS_PANOPTIC_SNAPSHOT_DIR=/snapshots
EXPOSE 9090
ENTRYPOINT ["ls-panoptic"]
CMD ["serve", "--host", "0.0.0.0", "--port", "9090"]
