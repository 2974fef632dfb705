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
        echo "==> installing baseplate[$extras] into $VENV (full log: $log)"
        # pip's "Collecting ..." lines show the progress; the rest goes to the log.
        # (The scripts set pipefail, so a failing pip fails the pipeline.)
        if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
                -e ".[$extras]" 2>&1 | tee "$log" | { grep --line-buffered '^Collecting' || true; }; then
            grep -v 'is ignored: it is neither a file nor a directory' "$log" >&2
            echo "pip install failed (full log: $log)" >&2
            return 1
        fi
        touch "$stamp"
    fi
}
