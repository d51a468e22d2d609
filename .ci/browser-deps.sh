#!/usr/bin/env bash
# What the studio's browser test (tests/test_studio_browser.py) needs: Debian's Chromium and the
# Python playwright package, which drives that Chromium through executable_path. Playwright's own
# browser download is never used (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1).
# Run it with the project's virtual environment active (pip installs into it).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ! -x /usr/bin/chromium ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 python -m pip install "playwright>=1.45,<2"

/usr/bin/chromium --version
python -c "import playwright; from importlib.metadata import version; print('playwright', version('playwright'))"
