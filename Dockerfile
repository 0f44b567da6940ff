# Wayport: multi-stage build. The builder compiles llama-cpp-python once; the runtime image
# holds only the virtual environment, runs as a non-root user and answers a health check.
#
#   docker build -t wayport:0.1.0 .
#   docker run --rm -p 127.0.0.1:8080:8080 -e WAYPORT_API_KEY=... wayport:0.1.0 serve

FROM python:3.11-slim-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.9.*
WORKDIR /src
# The image runs on other machines than the one that builds it: llama.cpp built portable
# (pyproject.toml says the same to uv; the variable also covers a uv without that setting).
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/wayport \
    CMAKE_ARGS="-DGGML_NATIVE=OFF"
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 wayport \
 && useradd --uid 10001 --gid wayport --no-create-home --shell /usr/sbin/nologin wayport \
 && mkdir -p /var/lib/wayport && chown wayport:wayport /var/lib/wayport
COPY --from=builder /opt/wayport /opt/wayport
ENV PATH=/opt/wayport/bin:$PATH PYTHONUNBUFFERED=1 WAYPORT_PORT=8080
WORKDIR /var/lib/wayport
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"WAYPORT_PORT\", \"8080\")}/healthz', timeout=2)"]
ENTRYPOINT ["wayport"]
CMD ["serve"]
