# Sourced by the OpenAPI scripts: a private Python virtualenv under target/ holding the
# pinned PyPI tools they use. Created on first use, reused afterwards.
# shellcheck shell=bash
PY_VENV="${PY_VENV:-target/py-venv}"
PY_TOOLS="openapi-spec-validator==0.9.0 schemathesis==4.32.5"

ensure_python_tools() {
  if [ ! -x "$PY_VENV/bin/python" ]; then
    echo "== creating $PY_VENV"
    python3 -m venv "$PY_VENV"
  fi
  if [ "$(cat "$PY_VENV/.tools" 2>/dev/null)" != "$PY_TOOLS" ]; then
    echo "== installing $PY_TOOLS"
    # shellcheck disable=SC2086
    "$PY_VENV/bin/python" -m pip install -q --disable-pip-version-check $PY_TOOLS
    echo "$PY_TOOLS" > "$PY_VENV/.tools"
  fi
}
