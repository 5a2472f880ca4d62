#!/usr/bin/env bash
# Checks the systemd units of contrib/ with `systemd-analyze verify` (Debian's systemd package),
# with ExecStart pointing at the binary just built (verify wants an executable there).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: check-units.sh PATH-TO-harvester}"
command -v systemd-analyze >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null && apt-get install -y -qq systemd >/dev/null
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for u in contrib/*.service contrib/*.timer; do
  sed "s#/usr/local/bin/harvester#$bin#" "$u" >"$tmp/$(basename "$u")"
done
out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no ./*.service ./*.timer 2>&1) || {
  echo "$out"; echo "systemd-analyze verify failed"; exit 1; }
# verify prints problems as warnings without failing on some of them: any line is a problem.
if [[ -n "$out" ]]; then echo "$out"; echo "systemd-analyze verify reported problems"; exit 1; fi
echo "units: contrib/*.service and *.timer verified"
