# Shared helpers for hack/*.sh: pinned versions, the cache root and a per-component file lock.
set -euo pipefail
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$HACK_DIR/versions.env"
SLUICE_CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$SLUICE_CACHE"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# with_lock NAME CMD...: run CMD holding $SLUICE_CACHE/NAME.lock, so two provisioning runs never race.
with_lock() {
  local name=$1; shift
  exec {lockfd}>"$SLUICE_CACHE/$name.lock"
  flock "$lockfd"
  "$@"
  local rc=$?
  flock -u "$lockfd"
  exec {lockfd}>&-
  return $rc
}
