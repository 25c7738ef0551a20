#!/usr/bin/env bash
# Installs what ClassOps needs from the system's packages when it is missing (Debian or Ubuntu).
set -euo pipefail

need=()
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  need+=(mosquitto)
fi
if ! command -v mosquitto_sub >/dev/null 2>&1; then
  need+=(mosquitto-clients)
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
# The web console's browser tests drive Debian's Chromium; its screenshots need a Chinese font.
if ! command -v chromium >/dev/null 2>&1; then
  need+=(chromium)
fi
if [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
  need+=(fonts-wqy-microhei)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ClassOps needs: ${need[*]}; install them with your system's package manager." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "Installing from the system's packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
