#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite with ctest.
# ctest's `servers` fixture starts RabbitMQ and MariaDB on loopback (ports 5698/3398, data under
# build/var/) before the first test that needs them and stops them after the last.
#   scripts/test.sh [BUILD_DIR] [extra cmake args…]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$root/build}
shift || true
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" "$dir" "$@"
rm -rf "$dir/var"
ctest --test-dir "$dir" --output-on-failure --timeout 600
