# The one image every faxfleet service runs from (see compose.yaml).
FROM python:3.11-slim
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
