#!/usr/bin/env bash
# Installs Debian's chromium for tests/test_browser.py (Playwright drives it via executable_path; Playwright's
# own browser download is not used). Idempotent, and never fails CI: when chromium cannot be installed
# (no apt, not root, no registry) it prints a warning and exits 0, and the browser test skips saying why.
set -u

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "install-browser: $CHROMIUM already present ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi

warn() {
  echo "install-browser: WARNING: $1; tests/test_browser.py will be skipped" >&2
  exit 0
}

command -v apt-get >/dev/null 2>&1 || warn "apt-get not available, cannot install chromium"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    warn "not root and no passwordless sudo, cannot install chromium"
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# Fonts are only "recommended" by chromium; without them the screenshot shows boxes instead of text.
PACKAGES="chromium fonts-liberation fonts-dejavu-core"
# shellcheck disable=SC2086  # $SUDO and $PACKAGES are intentionally word-split
if ! $SUDO apt-get install -y -q --no-install-recommends $PACKAGES; then
  echo "install-browser: first apt-get install failed; refreshing the package lists and retrying" >&2
  $SUDO apt-get update -q || warn "apt-get update failed"
  $SUDO apt-get install -y -q --no-install-recommends $PACKAGES || warn "apt-get install chromium failed"
fi

if [ -x "$CHROMIUM" ]; then
  echo "install-browser: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
else
  warn "apt-get finished but $CHROMIUM is missing"
fi
exit 0
