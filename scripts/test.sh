#!/usr/bin/env bash
# Everything the tests need, on a fresh machine, then the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
  fi
fi
python3 -m pip install -q -r requirements.txt -e ".[test]"
python3 -m ruff check .
lint-imports
python3 -m pytest "$@"
