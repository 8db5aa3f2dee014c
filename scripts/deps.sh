#!/usr/bin/env bash
# Installs what tandem needs on Debian 12.
#   scripts/deps.sh          to build and run it: compiler, libraries, redis-server
#   scripts/deps.sh --test   that, plus what only the tests and benchmarks use:
#                            clang (fuzzing), torchvision (test models), wrk,
#                            chromium (browser test), python3-kubernetes (manifest
#                            checks), bc and iproute2 (multi-host suite),
#                            python3-fastapi, -uvicorn, -redis (the seed peer of
#                            bench/seed.sh), and from
#                            npm ONNX Runtime, playwright-core, kubernetes-models
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
--test) with_tests=1 ;;
"") with_tests=0 ;;
-h | --help)
    sed -n '2,10p' "$0"
    exit 0
    ;;
*)
    echo "usage: scripts/deps.sh [--test]" >&2
    exit 2
    ;;
esac

packages=(
    build-essential pkg-config
    protobuf-c-compiler libprotobuf-c-dev libonnx-dev
    libdnnl-dev libhiredis-dev libmicrohttpd-dev libjansson-dev
    libjpeg62-turbo-dev libspng-dev libsodium-dev libcurl4-openssl-dev libssl-dev
    redis-server
)
if [ "$with_tests" = 1 ]; then
    packages+=(
        clang libclang-rt-14-dev libomp-14-dev curl wrk bc iproute2 procps
        python3-torchvision python3-onnx python3-numpy python3-pil python3-yaml python3-kubernetes
        python3-fastapi python3-uvicorn python3-redis
        chromium
    )
    # The machine image ships Node.js with its own npm; Debian's npm would clash with it.
    command -v npm >/dev/null || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# onnxruntime-node's install script downloads extra binaries; the npm tarball
# already carries the CPU library we use.
if [ "$with_tests" = 1 ] && ! npm ls --depth=0 >/dev/null 2>&1; then
    npm install --ignore-scripts --no-audit --no-fund
fi
