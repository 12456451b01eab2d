# The transcription server, CPU image.
#
#   docker build -t deepspeech-server .
#   docker run --rm -p 8000:8000 -v "$PWD/checkpoints:/models:ro" deepspeech-server model_path=/models/best.pt
#
# Arguments after the image name are Hydra overrides appended to the server command
# (model_path=..., max_batch_size=..., decoder.lm.path=...).
#
# The image is set up the way CI sets up a fresh machine: by running the repository's setup.sh
# (Debian packages, .venv, the pinned CPU torch, this package with its extras). Do not add install
# steps here; change setup.sh instead. tests/test_server.py checks that the RUN step calls setup.sh.
#
# GPU variant: install the CUDA build of torch into .venv first; setup.sh keeps a torch that is
# already installed. The CUDA wheels bring their own CUDA runtime, so this slim base still works;
# the host needs the NVIDIA driver and the NVIDIA container toolkit.
#
#   docker build --build-arg TORCH_INDEX_URL=<the PyTorch wheel index for your CUDA version> -t deepspeech-server:gpu .
#   docker run --rm --gpus all -p 8000:8000 -v "$PWD/checkpoints:/models:ro" deepspeech-server:gpu model_path=/models/best.pt
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1
WORKDIR /app
COPY . .
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        python3 -m venv .venv && .venv/bin/pip install --no-cache-dir torch --index-url "$TORCH_INDEX_URL"; \
    fi \
    && bash setup.sh \
    && rm -rf /root/.cache/pip /var/lib/apt/lists/* \
    && useradd --system --no-create-home deepspeech

USER deepspeech
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD [".venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
ENTRYPOINT [".venv/bin/python", "server.py", "host=0.0.0.0", "port=8000"]
CMD []
