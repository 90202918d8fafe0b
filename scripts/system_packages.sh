#!/usr/bin/env bash
# Installs (when apt-get is available and they are missing) the Debian packages Modelyard uses:
# bubblewrap (the job sandbox), PostgreSQL (the dual-database tests) and busybox-static (the
# image tests build a one-binary image from it). Called by `make up`/`make test` and .ci/run.
set -euo pipefail
want=()
command -v bwrap >/dev/null 2>&1 || want+=(bubblewrap)
[ -x /bin/busybox ] || want+=(busybox-static)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || want+=(postgresql)
# util-linux gives nsenter (replicas of one job share a network namespace)
command -v nsenter >/dev/null 2>&1 || want+=(util-linux)
[ ${#want[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages (install them): ${want[*]}" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing system packages: ${want[*]}"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${want[@]}" >/dev/null; }; then
  echo "could not install ${want[*]}: without bubblewrap only the admin's own jobs run (unsandboxed)" >&2
fi
