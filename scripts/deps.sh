#!/usr/bin/env bash
# Installs the Debian 12 packages devid needs to build, test and run.
# Idempotent: when every package is present it only runs dpkg-query.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config ccache clang clang-format libclang-rt-14-dev
  libssl-dev openssl libsqlite3-dev sqlite3 libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  gnutls-bin xxd libp11-kit-dev opensc libboost-dev libargon2-dev postgresql libpq-dev
  curl jq libcurl4-openssl-dev mosquitto mosquitto-clients mosquitto-dev libmosquitto-dev faketime
)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
