# Shared by the scripts: install the Debian packages the test suite needs
# when their command is missing (the suite runs as root on CI machines; a
# developer without root gets sudo's prompt or a clear message).
ensure_command() {
    local command="$1" package="$2"
    command -v "$command" >/dev/null 2>&1 && return 0
    echo "==> installing the Debian package $package (for $command)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! $sudo apt-get install -y -q "$package" >/dev/null 2>&1; then
        $sudo apt-get update -q >/dev/null 2>&1 || true
        $sudo apt-get install -y -q "$package" >/dev/null || {
            echo "could not install $package: install it and run again" >&2
            return 1
        }
    fi
}
