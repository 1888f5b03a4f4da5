# Sourced by scripts/serve and scripts/test, which then call `ensure_venv [EXTRAS]`:
# make sure .venv exists and holds the project (with those extras).
# Re-installs only when setup.cfg or pyproject.toml changed since the last install.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"

ensure_venv() {
    local extras=${1:-}
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "Python 3.11 or newer is required (found: $("$python" --version 2>&1))." >&2
        exit 1
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        echo "Creating $VENV" >&2
        "$python" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed${extras:+-$extras}"
    if [ ! -f "$stamp" ] || [ "$ROOT/setup.cfg" -nt "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "Installing the project into $VENV${extras:+ (with [$extras])}" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT${extras:+[$extras]}" >&2
        touch "$stamp"
    fi
}
