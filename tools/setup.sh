#!/usr/bin/env bash
# Set up dynfix on a fresh Debian machine: system simulators, then a virtual environment in
# .venv with dynfix and its test dependencies installed in editable mode. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v iverilog >/dev/null 2>&1 || need+=(iverilog)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[dev]'
echo "dynfix: set up in .venv ($(.venv/bin/python -c 'import dynfix; print(dynfix.__version__)'))"
