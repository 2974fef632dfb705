# Shared by scripts/test and scripts/example: make .venv and install the
# project into it with the given extras, re-installing only when pyproject.toml
# changed since the last install.
VENV="${BASEPLATE_VENV:-$PWD/.venv}"

ensure_venv() {
    local extras="$1"
    local stamp="$VENV/.installed-$extras"
    local log="$VENV/pip-install.log"
    if [ ! -x "$VENV/bin/python" ]; then
        "${PYTHON:-python3}" -m venv "$VENV"
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "==> installing baseplate[$extras] into $VENV"
        if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
                -e ".[$extras]" >"$log" 2>&1; then
            grep -v 'is ignored: it is neither a file nor a directory' "$log" >&2
            echo "pip install failed (full log: $log)" >&2
            return 1
        fi
        touch "$stamp"
    fi
}
