#!/bin/sh
# Builds policy.wasm; `./build.sh test` runs the rules' tests instead.
# componentize-py comes from PyPI into .venv on the first run; set
# COMPONENTIZE_PY to use one you already have.
set -eu
cd "$(dirname "$0")"
cpy=${COMPONENTIZE_PY:-}
if [ -z "$cpy" ]; then
  if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet componentize-py=={{componentize_py}}
  fi
  cpy=.venv/bin/componentize-py
fi
if [ "${1:-}" = test ]; then
  rm -rf .bindings
  "$cpy" -d wit -w drain-policy bindings .bindings
  PYTHONPATH=.bindings python3 -m unittest test_rules
else
  "$cpy" -d wit -w drain-policy componentize app -o policy.wasm
  echo "wrote policy.wasm"
fi
