#!/bin/sh
# A Python 3.12 virtual environment made to match the lent GPU machines' image, for rehearsing
# `make gpu-check` on a CPU: the image's torch (PyPI's CUDA 13 wheel, which runs on a CPU too),
# transformers, huggingface-hub, tokenizers, safetensors, accelerate, numpy and sentencepiece
# (tools/gpu-image-packages.txt), grpcio and protobuf at the least genserve accepts (the image's
# are not recorded), and the image's other packages that genserve imports; nothing the bundle
# brings (pydantic, which typer pulls in here, is removed). About 5 GB; here it took 100 s.
#   sh tools/gpu-rehearsal-env.sh /root/.pyenv/versions/3.12.1/bin/python /work/gpu-rehearsal-venv
#   make gpu-check PYTHON3=/work/gpu-rehearsal-venv/bin/python GPU_CHECK_ARGS="--device cpu --scale small"
set -eu
python312=${1:?the path of a Python 3.12}
venv=${2:?where the environment goes}
"$python312" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch==2.11.0 transformers==5.17.0 huggingface-hub==1.33.0 \
  tokenizers==0.23.2 safetensors==0.8.0 accelerate==1.15.0 numpy==2.5.2 sentencepiece==0.2.2 \
  grpcio==1.85.1 protobuf==7.35.1 httpx pillow scipy prometheus-client rich requests regex \
  packaging pyyaml tqdm zipp peft
"$venv/bin/pip" uninstall -q -y pydantic pydantic-core typing-inspection annotated-types
"$venv/bin/python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
