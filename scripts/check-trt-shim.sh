#!/usr/bin/env bash
# Compile-checks the TensorRT shim (engines/tensorrt/shim/trt_shim.cpp) with
# -Wall -Wextra -Werror against each TensorRT header set given:
#
#   scripts/check-trt-shim.sh /usr/include/aarch64-linux-gnu      # on a Jetson
#   scripts/check-trt-shim.sh ~/trt/8.6.1/include ~/trt/10.3.0/include ~/trt/11.1.0/include
#
# Each INCLUDE_DIR holds NvInferRuntime.h. Where header sets come from:
#   - a Jetson: /usr/include/aarch64-linux-gnu (package libnvinfer-dev; JetPack
#     5 ships TensorRT 8.5, 6.0 8.6, 6.1/6.2 10.3, 7.x 10.x or 11.x);
#   - a TensorRT tarball from developer.nvidia.com: TensorRT-*/include;
#   - github.com/NVIDIA/TensorRT, include/ of a release tag (v10.3.0, v11.1, ...;
#     Apache-2.0 from 10.0).
# TensorRT's headers include cuda_runtime_api.h: CUDA_INCLUDE_DIR (one or more
# directories separated by ':'), else /usr/local/cuda/include. From PyPI:
# nvidia-cuda-runtime-cu12 plus the crt/ headers of nvidia-cuda-nvcc-cu12.
#
# Without arguments, checks $OFFRAMP_TRT_HEADERS (directories separated by
# ':') or the system's own TensorRT headers, and says so when there are none.
# Exits non-zero if any header set fails, naming it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shim=$here/engines/tensorrt/shim/trt_shim.cpp
cxx=${CXX:-c++}

dirs=("$@")
if ((${#dirs[@]} == 0)); then
  if [ -n "${OFFRAMP_TRT_HEADERS:-}" ]; then
    IFS=: read -r -a dirs <<<"$OFFRAMP_TRT_HEADERS"
  else
    for d in /usr/include/aarch64-linux-gnu /usr/include/x86_64-linux-gnu /usr/include /usr/local/tensorrt/include; do
      [ -f "$d/NvInferRuntime.h" ] && dirs+=("$d")
    done
  fi
  if ((${#dirs[@]} == 0)); then
    echo "check-trt-shim: no TensorRT headers on this machine (none in OFFRAMP_TRT_HEADERS or the system's include dirs): the shim was not compile-checked"
    exit 0
  fi
fi

IFS=: read -r -a cuda <<<"${CUDA_INCLUDE_DIR:-/usr/local/cuda/include}"
have_cuda=0
for c in "${cuda[@]}"; do
  [ -f "$c/cuda_runtime_api.h" ] && have_cuda=1
done
if ((!have_cuda)); then
  echo "check-trt-shim: cuda_runtime_api.h is not in ${cuda[*]}: set CUDA_INCLUDE_DIR" >&2
  exit 1
fi
cuda_flags=()
for c in "${cuda[@]}"; do cuda_flags+=(-isystem "$c"); done

version_of() {
  local f=$1/NvInferVersion.h
  [ -f "$f" ] || { echo unknown; return; }
  local v=()
  for part in MAJOR MINOR PATCH; do
    # 10.13+ defines NV_TENSORRT_MAJOR through TRT_MAJOR_ENTERPRISE.
    v+=("$(grep -E "#define (NV_TENSORRT_|TRT_)${part}(_ENTERPRISE)? [0-9]+" "$f" | head -n1 | awk '{print $3}')")
  done
  local IFS=.
  echo "${v[*]}"
}

failed=()
for d in "${dirs[@]}"; do
  if [ ! -f "$d/NvInferRuntime.h" ]; then
    echo "FAIL $d: no NvInferRuntime.h there (not a TensorRT include directory)"
    failed+=("$d")
    continue
  fi
  v=$(version_of "$d")
  # -isystem: TensorRT's own headers warn (deprecated plugin APIs, unused
  # parameters); the shim's code must not.
  if log=$("$cxx" -std=c++17 -Wall -Wextra -Werror -fPIC -c "$shim" -o /dev/null \
    -I "$here/engines/tensorrt/shim" -isystem "$d" "${cuda_flags[@]}" 2>&1); then
    echo "ok   TensorRT $v ($d)"
  else
    echo "FAIL TensorRT $v ($d):"
    echo "$log" | head -n 30
    failed+=("$d")
  fi
done
if ((${#failed[@]})); then
  echo "check-trt-shim: the shim does not compile against: ${failed[*]}" >&2
  exit 1
fi
