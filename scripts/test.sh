#!/usr/bin/env bash
# Sets up .venv (with the dev tools) and runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# The demo's browser test drives Debian's Chromium through Playwright (Playwright's own browser
# download needs the internet). As root with apt, install it; otherwise that test says how.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  echo "test: installing chromium for the demo's browser test (apt-get)"
  (apt-get install -y -q chromium > /dev/null 2>&1 || { apt-get update -q > /dev/null 2>&1 &&
    apt-get install -y -q chromium > /dev/null; })
fi
.venv/bin/python -m pytest -q "$@"
