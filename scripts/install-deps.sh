#!/usr/bin/env bash
# Installs every Debian package BEDS needs to build, test, run the demo and the benchmark.
# Idempotent; needs root (or sudo).
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git
  librabbitmq-dev libmariadb-dev libtomlplusplus-dev libboost1.81-dev libboost-json1.81-dev
  libspdlog-dev libfmt-dev libcli11-dev libsystemd-dev libssl-dev
  libsqlite3-dev libmongoc-dev libbson-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  rabbitmq-server mariadb-server mariadb-client
  python3 python3-pika python3-mockupdb python3-prometheus-client python3-requests python3-websocket curl openssl wrk
  chromium chromium-driver python3-selenium
  php8.2-cli php8.2-sqlite3 php8.2-mbstring php-mongodb apache2 apache2-utils libapache2-mod-php8.2 phpunit
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The gateway's e2e test validates its OpenAPI document with an npm package (installed by the
# test). Any node with npm will do: a machine with its own (e.g. nodesource's) keeps it, since
# Debian's npm package would fight it.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
[[ ${#missing[@]} -eq 0 ]] && { echo "install-deps: all packages present"; exit 0; }
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The server packages try to start their system services; BEDS runs its own instances instead
# (scripts/servers.sh), so a refused or failed service start is not an error here.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# apache2 is only for the observer, which runs its own Apache (utilities/log_dumper/serve.sh): the
# system service its package just started (on port 80) is not wanted.
if [[ " ${missing[*]} " == *" apache2 "* ]] && command -v systemctl >/dev/null 2>&1 &&
  systemctl is-active --quiet apache2 2>/dev/null; then
  $sudo systemctl disable --now apache2 >/dev/null 2>&1 &&
    echo "install-deps: stopped and disabled the apache2 service its package started (the observer runs its own)"
fi
echo "install-deps: done"
