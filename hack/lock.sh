#!/usr/bin/env bash
# Resolves pyproject.toml's pins and the test extra afresh in a throwaway venv and writes every version into
# constraints.txt, which the dev venv, CI and the images' wheelhouse install from.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check '.[test]'
{
  head -3 constraints.txt  # the file's own header
  "$venv/bin/pip" freeze --disable-pip-version-check --exclude sluice
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pins"
git --no-pager diff --stat -- constraints.txt || true
