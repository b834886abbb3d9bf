#!/usr/bin/env bash
# Idempotent set-up shared by both README commands and CI: installs what a fresh Debian machine
# lacks (apt: libtorch-dev, libgloo-dev, cmake, ccache, g++, chromium for the plan explorer's browser
# test; npm dependencies) and builds the native addon. Fast when nothing is missing.
# MMOC_SKIP_NATIVE=1 skips the addon (planning works without it); MMOC_SKIP_BROWSER=1 skips chromium
# (the browser test then reports itself skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

# --- system packages (Debian)
apt_pkgs=(libtorch-dev libgloo-dev cmake ccache g++ make)
[[ "${MMOC_SKIP_BROWSER:-0}" == "1" ]] || apt_pkgs+=(chromium fonts-liberation)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    say "missing ${missing[*]} and no apt-get here: install libtorch (CPU) and cmake by hand, or set MMOC_SKIP_NATIVE=1"
    exit 1
  fi
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  say "installing ${missing[*]} (apt)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- npm dependencies (only when package-lock.json changed since the last install)
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# --- native addon (incremental; ccache makes rebuilds of unchanged sources cheap)
if [[ "${MMOC_SKIP_NATIVE:-0}" != "1" ]]; then
  npm run --silent build:native
fi
say "ready"
