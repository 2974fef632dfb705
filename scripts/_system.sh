# Shared by the scripts: install the Debian packages the test suite needs
# when what the suite uses from them is missing (the suite runs as root on CI
# machines; a developer without root gets sudo's prompt or a clear message).

# ensure_command COMMAND PACKAGE: install PACKAGE unless COMMAND is on PATH.
ensure_command() {
    local command="$1" package="$2"
    command -v "$command" >/dev/null 2>&1 && return 0
    _install_package "$package" "$command"
}

# ensure_file PATH PACKAGE: install PACKAGE unless PATH exists; for what is
# not a command on PATH (ZooKeeper's server is a jar in /usr/share/java).
ensure_file() {
    local path="$1" package="$2"
    [ -e "$path" ] && return 0
    _install_package "$package" "$path"
}

_install_package() {
    local package="$1" wanted="$2"
    echo "==> installing the Debian package $package (for $wanted)"
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
