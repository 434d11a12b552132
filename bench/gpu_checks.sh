#!/usr/bin/env bash
# The GPU figures issue 12 asks for, in one run on a machine with CUDA and this project installed:
#   bash bench/gpu_checks.sh [IMAGES]
# 1. end-to-end index throughput, ViT-L-14 layer 20 random weights, bf16 and tf32, batch 256 (GPU busy share too);
# 2. kept-pair agreement of tf32 and bf16 with fp32 on the GPU;
# 3. with two or more GPUs, the same index over every GPU (--device cuda:0,1,...).
set -euo pipefail
images="${1:-20000}"
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
for precision in bf16 tf32; do
  python bench/index_end_to_end.py --device cuda --precision "$precision" --batch-size 256 --images "$images"
done
python bench/precision.py --device cuda --images 8
gpus="$(python -c 'import torch; print(torch.cuda.device_count())')"
if [ "$gpus" -ge 2 ]; then
  devices="cuda:$(seq -s, 0 $((gpus - 1)))"
  python bench/index_end_to_end.py --device "$devices" --precision bf16 --batch-size 256 --images "$((images * 2))"
fi
