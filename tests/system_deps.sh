#!/usr/bin/env bash
# System packages the tests need, installed from Debian if missing (the tests run as root on CI).
# - postgresql: a real PostgreSQL server for the MLMD store tests (tests/conftest.py starts it on loopback).
# - chromium: a real headless browser that opens the built documentation site (tests/test_site.py).
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "tests need Debian packages: ${need[*]} — install them (sudo apt-get install ${need[*]}) and re-run" >&2
    exit 1
  fi
  echo "== installing ${need[*]} (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # policy-rc.d keeps the package from starting its own cluster; the tests start their own server.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
