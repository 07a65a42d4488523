#!/usr/bin/env bash
# Everything the tests need, on a fresh machine, then the tests.
#   bash scripts/test.sh            the whole suite (what CI runs on pull requests and nightly)
#   bash scripts/test.sh --fast     the fast lane: pytest -m "not slow" (under 3 minutes on 2 CPUs)
# Other arguments go to pytest (e.g. -k faces, -x, tests/test_cli.py).
#
# Set-up happens only when something is missing: Chromium when `chromium` is not on the PATH,
# the requirements and this checkout (editable, with [test]) when the environment's stamp
# does not match requirements.txt + pyproject.toml or `animegan` is not this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then
    args+=(-m "not slow")
  else
    args+=("$arg")
  fi
done

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
  fi
fi

# The stamp lives inside the Python environment (a venv, or the interpreter's prefix), so
# another environment on the same machine gets its own; where that is not writable, in the
# user's cache. It holds a hash of what the install is made from.
want="$(cat requirements.txt pyproject.toml | python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
prefix="$(python3 -c 'import sys; print(sys.prefix)')"
if [ -w "$prefix" ]; then
  stamp="$prefix/.animegan-test-deps"
else
  stamp="${XDG_CACHE_HOME:-$HOME/.cache}/animegan/test-deps-$(printf %s "$prefix" | python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
fi
# Which checkout `import animegan` finds (without running it): an editable install of
# another clone, or none, means installing this one.
# (Asked from / so that the current folder is not what Python finds.)
here="$(cd / && python3 -c 'import importlib.util as u, os; s = u.find_spec("animegan")
print(os.path.dirname(os.path.dirname(os.path.realpath(s.origin))) if s and s.origin else "")' 2>/dev/null || true)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || [ "$here" != "$(pwd -P)" ]; then
  python3 -m pip install -q -r requirements.txt -e ".[test]"
  mkdir -p "$(dirname "$stamp")"
  echo "$want" > "$stamp"
fi

python3 -m ruff check .
lint-imports
python3 -m pytest ${args[@]+"${args[@]}"}
