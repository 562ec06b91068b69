#!/usr/bin/env bash
# Install what the test suite needs beyond pip: Azurite (the Azure Blob emulator) from npm,
# pinned by package.json / package-lock.json at the repository root, and the iproute2 and
# util-linux tools the kubelet-in-a-box tests (tests/kubelet) start containers with.
#
# moto and gcp-storage-emulator come with the `test` extra (pip install -e '.[test]').
# Idempotent: does nothing when the pinned Azurite is already installed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

missing=""
for tool in ip nsenter unshare setpriv mount umount; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 util-linux mount
    else
        echo "install-test-deps: missing$missing (iproute2, util-linux): tests/kubelet will fail" >&2
    fi
fi

if ! command -v npm >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
    else
        echo "install-test-deps: npm not found; install Node.js >= 18 and npm" >&2
        exit 1
    fi
fi

wanted="$(node -p "require('./package.json').devDependencies.azurite")"
installed="$(node -p "try { require('./node_modules/azurite/package.json').version } catch (e) { '' }")"
if [ "$installed" = "$wanted" ] && [ -x node_modules/.bin/azurite-blob ]; then
    echo "install-test-deps: azurite $installed already installed"
    exit 0
fi

# npm ci installs exactly the lock file; fall back to npm install if the lock is missing
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
else
    npm install --no-audit --no-fund --loglevel=error
fi
echo "install-test-deps: azurite $(node -p "require('./node_modules/azurite/package.json').version") installed"
