#!/usr/bin/env bash
# Installs everything tandem needs to build, test and benchmark on Debian 12:
# Debian packages (compilers, libraries, redis-server, python3-torchvision for
# the test models, wrk, chromium for the browser test) and, for tests only,
# ONNX Runtime and playwright-core from npm.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    build-essential pkg-config clang libclang-rt-14-dev libomp-14-dev
    protobuf-c-compiler libprotobuf-c-dev libonnx-dev
    libdnnl-dev libhiredis-dev libmicrohttpd-dev libjansson-dev
    libjpeg62-turbo-dev libspng-dev libsodium-dev libcurl4-openssl-dev libssl-dev
    redis-server curl wrk
    python3-torchvision python3-onnx python3-numpy python3-pil python3-yaml python3-kubernetes
    chromium
)
# The machine image ships Node.js with its own npm; Debian's npm would clash with it.
command -v npm >/dev/null || packages+=(nodejs npm)

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
if [ ! -d node_modules/onnxruntime-node ] || [ ! -d node_modules/playwright-core ]; then
    npm install --ignore-scripts --no-audit --no-fund
fi
