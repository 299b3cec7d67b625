#!/usr/bin/env bash
# Browser tests need Debian's chromium + chromium-driver; install them where missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
  echo "chromium/chromedriver missing and cannot apt-get install (not root): browser tests will skip" >&2
fi
