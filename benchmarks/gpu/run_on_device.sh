#!/usr/bin/env bash
# Run ON THE GPU MACHINE from the repository root, through the device tool with carry [".whl"] (made by
# benchmarks/gpu/fetch_wheels.sh). One stage per call keeps each under the 10-minute limit:
#   bash benchmarks/gpu/run_on_device.sh tests      CUDA variants of the unit tests (+ the CPU ones in those files)
#   bash benchmarks/gpu/run_on_device.sh bench      all three benchmarks, bf16, eager (channels_last, SDPA)
#   bash benchmarks/gpu/run_on_device.sh compile    latent3d with torch.compile, default and reduce-overhead (CUDA graphs)
#   bash benchmarks/gpu/run_on_device.sh fp16       latent3d in float16
#   bash benchmarks/gpu/run_on_device.sh smoke      every benchmark at toy sizes (checks the CUDA code paths run)
#   bash benchmarks/gpu/run_on_device.sh families   the model-family benchmark (sdxl-turbo, flux-schnell) + tests
#   bash benchmarks/gpu/run_on_device.sh live       live mode (issue 18): sd-turbo-live 512^2 frames/s and key-to-frame
#                                                    latency, eager then torch.compile; `live eager` or `live compile`
#                                                    runs one of them (DEVICE=cpu: tiny-live)
# JSON and logs go to $OUT (the device tool's folder) or benchmarks/results/gpu. DEVICE=cpu runs the same
# commands on the CPU (how this script is checked on a machine without a GPU).
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="/tmp/site:$PWD:$PWD/widgets${PYTHONPATH:+:$PYTHONPATH}"
fi
out=${OUT:-benchmarks/results/gpu}
device=${DEVICE:-cuda}
mkdir -p "$out"
{ nvidia-smi 2>/dev/null || echo "no nvidia-smi"; python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } \
  > "$out/machine.txt" 2>&1
bench() { python3 benchmarks/run.py --device "$device" "$@" 2>&1 | tee -a "$out/bench.log"; }
case "${1:-smoke}" in
  tests)
    python3 -m pytest -q -p no:cacheprovider tests/test_motion.py tests/test_coherence.py tests/test_runs.py \
      tests/test_depth.py tests/test_latent.py tests/test_guided.py tests/test_render.py tests/test_losses.py \
      tests/test_cutouts.py tests/test_clip.py 2>&1 | tee "$out/tests.log" ;;
  bench) bench --json "$out/bench-bf16.json" ;;
  compile)
    bench --only latent3d --compile --json "$out/latent3d-compile.json"
    bench --only latent3d --compile --compile-mode reduce-overhead --json "$out/latent3d-compile-cudagraphs.json" ;;
  fp16) bench --only latent3d --dtype float16 --json "$out/latent3d-fp16.json" ;;
  smoke) bench --smoke --json "$out/smoke.json" ;;
  families)  # issue 16: sdxl-turbo 512^2 and flux-schnell 1024^2 (random weights offline), offload off/on
    python3 benchmarks/bench_families.py --device "$device" --dtype bfloat16 --json "$out/families.json" 2>&1 \
      | tee -a "$out/bench.log"
    python3 -m pytest -q -p no:cacheprovider tests/test_family_sdxl.py tests/test_family_sd3.py \
      tests/test_family_flux.py tests/test_families_core.py 2>&1 | tee "$out/families-tests.log" ;;
  live)  # issue 18: the live session, goal >= 30 frames/s and < 100 ms key-to-frame on one H100
    if [ "$device" = cpu ]; then
      python3 benchmarks/bench_live.py --out "$out/live-cpu.json" 2>&1 | tee -a "$out/bench.log"
    else
      for variant in ${2:-eager compile}; do
        case "$variant" in
          eager) flag=--no-compile ;;
          compile) flag=--compile ;;
          *) echo "unknown live variant $variant; one of: eager compile" >&2; exit 2 ;;
        esac
        python3 benchmarks/bench_live.py --gpu "$flag" --out "$out/live-$variant.json" 2>&1 | tee -a "$out/bench.log"
      done
    fi ;;
  *) echo "unknown stage ${1}; one of: tests bench compile fp16 smoke families live" >&2; exit 2 ;;
esac
