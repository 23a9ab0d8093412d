#!/usr/bin/env bash
# Rebuild three.min.js (three.js + OrbitControls, one minified IIFE defining the global THREE) and refresh
# LICENSE from the npm registry. Needs node and npm; versions are pinned here, change them on purpose.
#
#   services/viewer/vendor/build.sh
set -euo pipefail
THREE_VERSION=0.187.0
ESBUILD_VERSION=0.28.2

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error --save-exact "three@${THREE_VERSION}" "esbuild@${ESBUILD_VERSION}" >/dev/null
cp "$here/three-entry.js" entry.js
{
  printf '/*! three.js %s (https://threejs.org) with OrbitControls | MIT License, see LICENSE | ' \
    "$THREE_VERSION"
  printf 'bundled for Gaitway by services/viewer/vendor/build.sh (esbuild %s) */\n' "$ESBUILD_VERSION"
  npx --no-install esbuild entry.js --bundle --minify --format=iife --global-name=THREE \
    --target=es2020 --legal-comments=none --log-level=warning
} > "$here/three.min.js"
cp node_modules/three/LICENSE "$here/LICENSE"
echo "wrote $here/three.min.js ($(wc -c < "$here/three.min.js") bytes) and LICENSE"
