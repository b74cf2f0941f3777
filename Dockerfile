# The images every faxfleet service runs from (see compose.yaml):
#   faxfleet         every service but the renderers (no LibreOffice: smaller, less to patch)
#   faxfleet-render  the renderers: the same plus headless LibreOffice for Office documents
# `docker compose up --build` builds both; alone: docker build --target render .
FROM python:3.11-slim AS faxfleet
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY faxfleet faxfleet
COPY scheduler scheduler
COPY routing routing
COPY workers workers
RUN pip install --no-cache-dir .
USER nobody

FROM faxfleet AS render
USER root
# Headless LibreOffice (no X11 or Java): .docx/.odt/.rtf through Writer, .xlsx/.ods
# through Calc (workers/render/office.py converts them to PDF, one sandboxed run each).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libreoffice-writer-nogui libreoffice-calc-nogui fonts-liberation \
    && rm -rf /var/lib/apt/lists/* \
    && soffice --version
USER nobody
