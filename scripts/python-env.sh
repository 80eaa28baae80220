#!/usr/bin/env bash
# Creates (or updates) the Python virtualenv used by the client tests, outside the repository:
#   ${GREGOR_CACHE:-$HOME/.cache/gregor}/venv
# with confluent-kafka (its wheel bundles librdkafka) and pytest.
# Prints the venv's python path on stdout; progress goes to stderr.
#
#   PY="$(scripts/python-env.sh)" && "$PY" -m pytest tests/...
set -euo pipefail

# Requirements; changing this list makes the next run reinstall.
REQUIREMENTS=(
  "confluent-kafka>=2.6,<3"
  "pytest>=8,<9"
)

cache="${GREGOR_CACHE:-$HOME/.cache/gregor}"
venv="$cache/venv"
py="$venv/bin/python"
stamp="$venv/.gregor-requirements"
want="$(printf '%s\n' "${REQUIREMENTS[@]}")"

log() { echo "python-env: $*" >&2; }

if [[ -x "$py" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
   && "$py" -c 'import confluent_kafka, pytest' 2>/dev/null; then
  log "up to date ($("$py" -c 'import confluent_kafka as c; print("confluent-kafka", c.__version__, "librdkafka", c.libversion()[0])'))"
  echo "$py"
  exit 0
fi

base="${PYTHON:-$(command -v python3 || true)}"
[[ -n "$base" ]] || { log "python3 not found"; exit 1; }

if [[ ! -x "$py" ]] || ! "$py" -c 'import sys' 2>/dev/null; then
  log "creating $venv with $base"
  rm -rf "$venv"
  mkdir -p "$cache"
  if ! "$base" -m venv "$venv" >&2; then
    log "venv creation failed (on Debian: apt-get install python3-venv)"
    rm -rf "$venv"
    exit 1
  fi
fi

log "installing ${REQUIREMENTS[*]}"
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$py" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2
"$py" -c 'import confluent_kafka, pytest' >&2
echo "$want" >"$stamp"
log "ready ($("$py" -c 'import confluent_kafka as c; print("confluent-kafka", c.__version__, "librdkafka", c.libversion()[0])'))"
echo "$py"
