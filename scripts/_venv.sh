# Sourced by scripts/serve and scripts/test: make sure .venv exists and holds the project.
# Re-installs only when setup.cfg or pyproject.toml changed since the last install.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
EXTRAS=${1:-}

ensure_venv() {
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "Python 3.11 or newer is required (found: $("$python" --version 2>&1))." >&2
        exit 1
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        echo "Creating $VENV" >&2
        "$python" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed${EXTRAS:+-$EXTRAS}"
    if [ ! -f "$stamp" ] || [ "$ROOT/setup.cfg" -nt "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "Installing the project into $VENV${EXTRAS:+ (with [$EXTRAS])}" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT${EXTRAS:+[$EXTRAS]}" >&2
        touch "$stamp"
    fi
}
ensure_venv
