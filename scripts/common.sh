# Shared set-up steps for scripts/cluster and scripts/test: everything a fresh Debian
# machine with rustup needs, installed only when missing so re-runs are quick.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Each step says when it started (seconds since the script began), so a CI log shows where
# the time goes.
log() { printf '\033[1m==> [+%ss] %s\033[0m\n' "$SECONDS" "$*" >&2; }

# Installs Debian packages that are not installed yet.
ensure_apt_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The host toolchain and the C compiler ring and wasmtime's helpers need.
ensure_build_tools() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first (https://rustup.rs)" >&2; exit 1; }
  command -v cc >/dev/null || ensure_apt_packages build-essential
}

# Builds the guests into workloads/dist (installs the wasm targets itself).
build_workloads() {
  log "building guest workloads"
  "$ROOT/workloads/build"
}
