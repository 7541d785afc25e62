# syntax=docker/dockerfile:1
# The tuned-whisper service: Ray Serve with the Gradio UI and the OpenAI-compatible API on $PORT (8080).
#
#   docker build -t tuned-whisper .                                # GPU: CUDA torch (Cloud Run's NVIDIA L4)
#   docker build --build-arg VARIANT=cpu -t tuned-whisper:cpu .    # CPU-only torch, a much smaller image
#   docker run --gpus all -p 8080:8080 tuned-whisper
#
# The checkpoint is baked in at build time: a fine-tuned, merged checkpoint in checkpoint/ (or in the
# directory named by --build-arg CHECKPOINT_DIR) is copied as it is; when there is none, the default is
# converted from the packaged Whisper base weights. No weights are downloaded when the container starts.
# The install steps live in deploy/image/install.sh, which CI also runs in a fresh virtualenv.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG VARIANT=gpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=auto
ARG CHECKPOINT_DIR=checkpoint

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# ffmpeg decodes every upload. KubeRay starts Ray through a login shell, whose /etc/profile resets PATH:
# the profile.d line puts the virtualenv back in front (single quotes: $PATH expands at login). Debian's
# security updates replace ffmpeg's exact version, so it is not pinned.
# hadolint ignore=DL3008,SC2016
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && echo 'export PATH=/opt/venv/bin:$PATH' > /etc/profile.d/tuned-whisper-venv.sh \
    && groupadd --gid 10001 whisper \
    && useradd --create-home --uid 10001 --gid 10001 --shell /bin/bash whisper

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt or the recipe changes.
COPY requirements.txt ./
COPY deploy/image/install.sh deploy/image/install.sh
RUN deploy/image/install.sh deps

# Then the code and the checkpoint.
COPY pyproject.toml README.md serve_predictor_script.py ./
COPY tuned_whisper/ tuned_whisper/
COPY finetune/ finetune/
COPY deploy/ deploy/
COPY ${CHECKPOINT_DIR}/ checkpoint/
RUN deploy/image/install.sh app

# Runtime: offline (the weights are in the image), no usage reporting, the checkpoint read-only, logs as
# JSON lines on stdout (Cloud Logging reads their fields; request_id is on every line a request causes).
ENV TW_CHECKPOINT=/app/checkpoint \
    TW_SERVE__LOG_ENCODING=JSON \
    PORT=8080 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    GRADIO_ANALYTICS_ENABLED=False \
    RAY_USAGE_STATS_ENABLED=0

USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8080')}/healthz\", timeout=4)"]
CMD ["python", "serve_predictor_script.py"]
