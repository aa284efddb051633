# selfiebooth on a CUDA machine:
#   docker build -t selfiebooth . && docker run --gpus all -v selfiebooth-data:/data selfiebooth
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    SELFIEBOOTH_DATA_DIR=/data

# Ubuntu's packages are pinned by the base image's release; dlib-bin needs no compiler.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV"

WORKDIR /app
# torch first and pinned (on Linux x86-64 the registry's default build is the CUDA one), so
# the project's range installs nothing more.
RUN pip install "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY engine ./engine
COPY storage ./storage
# The project itself: its dependencies are ranges in pyproject.toml. EXTRAS="[cluster]"
# adds Ray, for the bot and the GPU workers of deploy/compose.yaml.
ARG EXTRAS=""
# hadolint ignore=DL3013
RUN pip install ".${EXTRAS}"

RUN useradd --create-home --uid 10001 selfiebooth \
    && mkdir -p /data \
    && chown selfiebooth:selfiebooth /data
USER 10001
VOLUME ["/data"]

ENTRYPOINT ["selfiebooth"]
CMD ["run"]
