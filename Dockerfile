# ls-panoptic service image: backend (gunicorn), worker (RQ) and the CLI in one image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md LICENSE ./
COPY ls_panoptic ls_panoptic
COPY worker worker
COPY backend backend
COPY cli cli
COPY devstack devstack
# gcc builds the brush RLE walk in C (ls_panoptic/_rlewalk.c; without it the numpy walk runs,
# ~5x slower): installed for the build, checked, and removed in the same layer
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install . && python -c "import ls_panoptic._rlewalk" \
    && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 lsp && mkdir /snapshots && chown lsp /snapshots

USER lsp
ENV LS_PANOPTIC_SNAPSHOT_DIR=/snapshots
EXPOSE 9090
ENTRYPOINT ["ls-panoptic"]
CMD ["serve", "--host", "0.0.0.0", "--port", "9090"]
