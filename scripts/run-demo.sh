#!/usr/bin/env bash
# `make run`: the whole system on embedded defaults (seed figures 2, 3 and 4).
#   1. the CMS (`devid serve`, SQLite) with an organization, its root and issuing CA;
#   2. the factory: identities sealed for a production site, personalised into chips;
#   3. the hub (`devid hub`, Mosquitto with mutual TLS, CRL, per-device topics);
#   4. each chip enrols zero-touch (`devid agent enroll`) and sends telemetry
#      through mutual TLS done by its chip (`devid agent run`).
# It prints the CMS URL and admin credentials and how to watch the telemetry,
# then runs until Ctrl-C, which stops everything it started. State is kept in
# ./var: a re-run reuses the organization and makes a fresh batch of chips.
# DEMO_SECONDS=N stops the demo by itself after N seconds (for scripted runs).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVID=$(realpath "${DEVID:-build/src/devid}")
PLUGIN=$(realpath "${PLUGIN:-build/src/libdevid-mosquitto.so}")
VAR=$(mkdir -p "${VAR:-var}" && realpath "${VAR:-var}")
chmod 700 "$VAR"
HOME_DIR=$VAR/devid
RUN=$VAR/demo/run-$(date +%Y%m%d-%H%M%S)
ORG=demo
DEVICES=${DEMO_DEVICES:-3}
CMS_PORT=${DEMO_CMS_PORT:-8443}
HUB_PORT=${DEMO_HUB_PORT:-8883}
mkdir -p "$RUN"

PIDS=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "== stopping the demo"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# CA keys are encrypted with a passphrase. For the demo only, one is made up
# and kept in var/passphrase (0600); a real deployment supplies its own
# through DEVID_PASSPHRASE or --passphrase-file and keeps it away from the keys.
PASSFILE=$VAR/passphrase
[ -s "$PASSFILE" ] || (umask 077 && openssl rand -base64 24 >"$PASSFILE")
export DEVID_PASSPHRASE
DEVID_PASSPHRASE=$(head -n1 "$PASSFILE")
devid() { "$DEVID" --home "$HOME_DIR" "$@"; }
wait_line() {  # wait_line FILE SED-EXPRESSION PID: the first match, once the file has it
  local got=""
  for _ in $(seq 300); do
    got=$(sed -n "$2" "$1" 2>/dev/null | head -n1)
    [ -n "$got" ] && { echo "$got"; return 0; }
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

echo "== 1. the CMS: organization '$ORG' in $HOME_DIR"
if ! devid ca list --org "$ORG" >/dev/null 2>&1; then
  devid ca init-root --org "$ORG" --subject "CN=Demo Root CA,O=Demo Devices" >/dev/null
  devid ca init-ica --org "$ORG" --name devices --subject "CN=Demo Device ICA,O=Demo Devices" >/dev/null
  echo "   root and issuing CA 'devices' created"
else
  echo "   (root and issuing CA already exist; reusing them)"
fi
ADMIN_PW_FILE=$VAR/admin-password
if [ ! -s "$ADMIN_PW_FILE" ]; then
  (umask 077 && openssl rand -base64 18 >"$ADMIN_PW_FILE")
  devid admin bootstrap --user admin --password-file "$ADMIN_PW_FILE" >/dev/null
fi
"$DEVID" --home "$HOME_DIR" serve --listen "127.0.0.1:$CMS_PORT" >"$RUN/serve.out" 2>"$RUN/serve.log" &
PIDS+=($!)
if ! wait_line "$RUN/serve.out" 's/^devid serve: listening on \(https:[^ ]*\).*/\1/p' "${PIDS[-1]}" >/dev/null; then
  echo "devid serve did not start (is port $CMS_PORT free? DEMO_CMS_PORT=... picks another):"
  cat "$RUN/serve.out" "$RUN/serve.log"
  exit 1
fi
URL=https://127.0.0.1:$CMS_PORT
CMS_CA=$HOME_DIR/tls/ca.pem
devid cms --url "$URL" --cacert "$CMS_CA" login --user admin --password-file "$ADMIN_PW_FILE" >/dev/null
token() { devid cms token create --org "$ORG" --role "$1" --name "$2" | jq -r .token; }
HUB_TOKEN=$(token operator "demo hub")
ENROLL_TOKEN=$(token enrollment "demo line")
echo "   CMS at $URL"

echo "== 2. the factory (figure 2): $DEVICES identities sealed for the site, personalised into chips"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$RUN/site.key" \
  -out "$RUN/site.pem" -subj "/CN=Demo production site/O=Demo Devices" -days 30 \
  -addext "keyUsage=critical,keyAgreement" 2>/dev/null
START=$(($(devid cms cert list --org "$ORG" --ca devices --status any | grep -c '"serial"' || true) + 1))
devid factory order --org "$ORG" --ca devices --template device --count "$DEVICES" --start "$START" \
  --subject "CN=sensor-{n},O=Demo Devices" --site-cert "$RUN/site.pem" --out "$RUN/order.bundle" \
  | sed 's/^/   /'
devid factory personalize --bundle "$RUN/order.bundle" --site-key "$RUN/site.key" \
  --site-cert "$RUN/site.pem" --out-dir "$RUN/chips" | sed 's/^/   /'

echo "== 3. the hub (figure 4 steps 6-7): Mosquitto with mutual TLS on 127.0.0.1:$HUB_PORT"
"$DEVID" --home "$HOME_DIR" hub start --org "$ORG" --listen "127.0.0.1:$HUB_PORT" --plugin "$PLUGIN" --url "$URL" \
  --cacert "$CMS_CA" --token "$HUB_TOKEN" >"$RUN/hub.out" 2>"$RUN/hub.log" &
PIDS+=($!)
if ! wait_line "$RUN/hub.out" 's/^\(hub ready on .*\)/\1/p' "${PIDS[-1]}" >/dev/null; then
  echo "the hub did not start (is port $HUB_PORT free? DEMO_HUB_PORT=... picks another):"
  cat "$RUN/hub.out" "$RUN/hub.log"
  exit 1
fi
rm -rf "$VAR/demo/operator"
devid hub issue-operator --org "$ORG" --name demo-operator --out-dir "$VAR/demo/operator" \
  --url "$URL" --cacert "$CMS_CA" --token "$HUB_TOKEN" >/dev/null

echo "== 4. zero-touch (figure 4 steps 3-7): each chip enrols, then publishes through its chip"
for img in "$RUN"/chips/*.img; do
  id=$(basename "$img" .img)
  pin=$(jq -r --arg id "$id" '.[$id]' "$RUN/chips/pins.json")
  "$DEVID" agent enroll --image "$img" --pin "$pin" --cms "$URL" --cms-ca "$CMS_CA" --org "$ORG" \
    --ca devices --token "$ENROLL_TOKEN" | sed 's/^/   /'
  "$DEVID" agent run --image "$img" --pin "$pin" --hub "127.0.0.1:$HUB_PORT" --interval 2 \
    --cms "$URL" --cms-ca "$CMS_CA" --org "$ORG" --ca devices >"$RUN/agent-$id.log" 2>&1 &
  PIDS+=($!)
done

cat <<TXT

The demo is running. Everything is under $VAR.

  CMS (REST API, EST, CRL, OCSP)   $URL   (trust $CMS_CA)
  admin user                       admin, password in $ADMIN_PW_FILE
  API documentation                $URL/api/v1/openapi.yaml
  hub (MQTT over mutual TLS)       127.0.0.1:$HUB_PORT
  chips and their manifest         $RUN/chips/   (manifest.json)
  agents' logs                     $RUN/agent-*.log

Watch the telemetry as the operator:
  mosquitto_sub -h 127.0.0.1 -p $HUB_PORT --cafile $VAR/demo/operator/ca.pem \\
    --cert $VAR/demo/operator/cert.pem --key $VAR/demo/operator/key.pem -i demo-operator -t 'devices/#' -v

Look around in the CMS:
  $DEVID --home $HOME_DIR cms cert list --org $ORG --ca devices
  curl --cacert $CMS_CA -u admin:\$(cat $ADMIN_PW_FILE) $URL/api/v1/orgs/$ORG/devices

Ctrl-C stops everything.
TXT
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  while :; do sleep 3600; done
fi
