#!/usr/bin/env bash
# Chip to cloud, end to end (seed figures 2, 3 and 4), with the real broker:
# chips personalised by `devid factory` enrol zero-touch with `devid agent
# enroll` (an enrolment token, or the factory certificate over TLS with the
# chip's key), connect to `devid hub` (Mosquitto) with mutual TLS through the
# chip and publish; `mosquitto_sub` with an operator certificate receives the
# telemetry. A revoked device is refused at its next connection, a chip in
# tamper state cannot connect, and a running agent renews its short-lived
# certificate (EST simplereenroll) without a gap in its telemetry.
# Usage: agent_test.sh PATH/TO/devid PATH/TO/libdevid-mosquitto.so
set -euo pipefail
DEVID=$(realpath "$1")
PLUGIN=$(realpath "$2")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
enter_scratch_dir
mkdir -m 700 home client
export DEVID_PASSPHRASE=agent-test-passphrase
D=("$DEVID" --home home)
"${D[@]}" ca init-root --org acme --subject "CN=Acme Root,O=Acme" >/dev/null
"${D[@]}" ca init-ica --org acme --name devices --subject "CN=Acme Devices,O=Acme" >/dev/null
echo "admin-password-123" >pw
"${D[@]}" admin bootstrap --user admin --password-file pw >/dev/null
start_serve "$DEVID" "$PWD/home"
[ -n "$PORT" ] || { fail "devid serve starts" "$(cat out.txt log.txt)"; finish; }
CMS_CA=$PWD/home/tls/ca.pem
CMS=(--url "$URL" --cacert "$CMS_CA")
C=("$DEVID" --home client)
"${C[@]}" cms "${CMS[@]}" login --user admin --password-file pw >/dev/null
token() { "${C[@]}" cms token create --org acme --role "$1" --name "$2" | jq -r .token; }
HUB_TOKEN=$(token operator hub)
ENROLL_TOKEN=$(token enrollment line-1)
# Short-lived certificates for the renewal check: one minute, renewed after 40 s.
cat >short.json <<'EOF'
{"name": "short", "key_types": ["P-256"], "subject": {"required": ["CN"], "allowed": ["CN", "O"]},
 "validity_days": 1, "validity_minutes": 1, "key_usage": ["digitalSignature"],
 "extended_key_usage": ["clientAuth"]}
EOF
"${C[@]}" cms template create --org acme --file short.json >/dev/null

# --- figure 2: the factory -------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout site.key -out site.pem \
  -subj "/CN=Production site/O=Acme" -days 30 -addext "keyUsage=critical,keyAgreement" 2>/dev/null
F=("${C[@]}" factory)
"${F[@]}" order --org acme --ca devices --template device --count 4 --subject "CN=dev-{n},O=Acme" \
  --site-cert site.pem --out line.bundle >/dev/null
"${F[@]}" personalize --bundle line.bundle --site-key site.key --site-cert site.pem --out-dir chips \
  >/dev/null
"${F[@]}" order --org acme --ca devices --template short --count 1 --subject "CN=short-{n},O=Acme" \
  --site-cert site.pem --out short.bundle >/dev/null
"${F[@]}" personalize --bundle short.bundle --site-key site.key --site-cert site.pem \
  --out-dir short-chips >/dev/null
[ -s chips/manifest.json ] && [ -s short-chips/manifest.json ] && pass "factory: 5 chips personalised" \
  || fail "factory: 5 chips personalised"
pin() { jq -r --arg id "$2" '.[$id]' "$1/pins.json"; }

# --- the hub and an operator --------------------------------------------------------
H=("$DEVID" --home client hub)
start_hub "${H[@]}" start --org acme --listen 127.0.0.1:0 --plugin "$PLUGIN" "${CMS[@]}" \
  --token "$HUB_TOKEN"
[ -n "$MQTT" ] && pass "devid hub starts" || { fail "devid hub starts" "$(cat hub.out hub.err)"; finish; }
STATE=client/hub/acme
"${H[@]}" issue-operator --org acme --name ops-1 --out-dir ops "${CMS[@]}" --token "$HUB_TOKEN" \
  >/dev/null
for _ in $(seq 100); do grep -q "1 operator(s)" $STATE/mosquitto.log 2>/dev/null && break; sleep 0.1; done
SUB=(mosquitto_sub -h 127.0.0.1 -p "$MQTT" --cafile ops/ca.pem --cert ops/cert.pem --key ops/key.pem)
wait_for() {  # wait_for FILE PATTERN SECONDS
  for _ in $(seq $(($3 * 10))); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# --- figure 4 steps 3-5: zero-touch enrolment ----------------------------------------
A=("$DEVID" agent)
CMSA=(--cms "$URL" --cms-ca "$CMS_CA" --org acme --ca devices)
out=$("${A[@]}" enroll --image chips/dev-1.img --pin "$(pin chips dev-1)" "${CMSA[@]}" \
  --token "$ENROLL_TOKEN" 2>&1) && grep -q "^enrolled dev-1 by EST simpleenroll" <<<"$out" \
  && pass "agent enroll with an enrolment token (EST simpleenroll)" \
  || fail "agent enroll with an enrolment token (EST simpleenroll)" "$out"
out=$("${A[@]}" enroll --image chips/dev-2.img --pin "$(pin chips dev-2)" "${CMSA[@]}" 2>&1) \
  && grep -q "^enrolled dev-2 by EST simplereenroll" <<<"$out" \
  && pass "agent enroll with the factory certificate (TLS with the chip's key)" \
  || fail "agent enroll with the factory certificate (TLS with the chip's key)" "$out"
"${C[@]}" cms "${CMS[@]}" ca chain --org acme --ca devices >chain.pem
awk '/BEGIN CERT/{n++} n==2' chain.pem >root.pem
for n in 1 2; do
  "$DEVID" se file read --image chips/dev-$n.img --id C001 --out c001-$n.pem
  awk '/BEGIN CERT/{n++} n==1' c001-$n.pem >dev-$n.pem
done
ok "the enrolled certificates in the chips verify to the root (openssl)" \
  openssl verify -CAfile root.pem -untrusted chain.pem dev-1.pem dev-2.pem
factory_serial=$(jq -r '.chips[] | select(.device_id=="dev-1") | .certificate_serial' chips/manifest.json)
new_serial=$(openssl x509 -in dev-1.pem -noout -serial | cut -d= -f2)
[ "${new_serial##0}" != "${factory_serial##0}" ] && pass "enrolment replaced the factory certificate in C001" \
  || fail "enrolment replaced the factory certificate in C001" "$factory_serial"
out=$("${A[@]}" enroll --image chips/dev-3.img "${CMSA[@]}" --token garbage-token 2>&1) \
  && fail "a forged enrolment token is refused" "$out" || pass "a forged enrolment token is refused"

# --- figure 3 and 4 steps 6-7: mutual TLS through the chip, telemetry -------------------
"${SUB[@]}" -i ops-1 -t 'devices/#' -v -C 3 -W 20 >sub.out 2>sub.err &
SUBPID=$!
sleep 0.5
out=$(timeout 20 "${A[@]}" run --image chips/dev-1.img --hub "127.0.0.1:$MQTT" --count 3 \
  --interval 0.2 --connect-attempts 3 2>&1) \
  && grep -q "stopped: 3 messages, 1 connections" <<<"$out" \
  && pass "agent run: mutual TLS through the chip, 3 messages acknowledged" \
  || fail "agent run: mutual TLS through the chip, 3 messages acknowledged" "$out"
wait "$SUBPID" || true
[ "$(grep -c '^devices/dev-1/telemetry {"certificate_not_after"' sub.out)" = 3 ] \
  && jq -e -s 'map(.seq) == [1,2,3] and all(.device == "dev-1")' \
    < <(cut -d' ' -f2- sub.out) >/dev/null \
  && pass "mosquitto_sub with the operator certificate receives the 3 messages" \
  || fail "mosquitto_sub with the operator certificate receives the 3 messages" "$(cat sub.out sub.err)"
out=$(timeout 20 "${A[@]}" run --image chips/dev-2.img --hub "127.0.0.1:$MQTT" --count 1 --tls1_2 \
  --connect-attempts 3 2>&1) && pass "agent run over TLS 1.2 (ECDHE-ECDSA)" \
  || fail "agent run over TLS 1.2 (ECDHE-ECDSA)" "$out"
api() { curl -s --max-time 10 --cacert "$CMS_CA" -H "Authorization: Bearer $HUB_TOKEN" "$URL/api/v1$1"; }
for _ in $(seq 50); do
  api /orgs/acme/devices/dev-1 | jq -e '.first_seen != null' >/dev/null 2>&1 && break
  sleep 0.2
done
api /orgs/acme/devices/dev-1 | jq -e '.first_seen != null and .status == "active"' >/dev/null \
  && pass "the hub registered dev-1 in the CMS at its first connection" \
  || fail "the hub registered dev-1 in the CMS at its first connection" "$(api /orgs/acme/devices/dev-1)"

# --- refusals -----------------------------------------------------------------------
# A chip in tamper state: its memory fails the integrity check, it signs nothing.
cp chips/dev-3.img tampered.img
cp chips/dev-3.img.fuse tampered.img.fuse
flip_byte tampered.img 200
rc=0
out=$(timeout 20 "${A[@]}" run --image tampered.img --hub "127.0.0.1:$MQTT" --count 1 \
  --connect-attempts 1 2>&1) || rc=$?
((rc != 0)) && grep -qi "tamper" <<<"$out" && pass "a chip in tamper state cannot connect" \
  || fail "a chip in tamper state cannot connect" "$out"
# A revoked device: refused at its next connection once the hub has the CRL (≤ 10 s).
serial2=$(openssl x509 -in dev-2.pem -noout -serial | cut -d= -f2)
"${C[@]}" cms "${CMS[@]}" cert revoke --org acme --serial "$serial2" --reason keyCompromise >/dev/null
refused=""
start=$SECONDS
while ((SECONDS - start < 12)); do
  if ! timeout 10 "${A[@]}" run --image chips/dev-2.img --hub "127.0.0.1:$MQTT" --count 1 \
    --connect-attempts 1 >revoked.out 2>&1; then
    refused=$((SECONDS - start))
    break
  fi
  sleep 0.5
done
[ -n "$refused" ] && pass "a revoked device is refused at its next connection (after ${refused}s)" \
  || fail "a revoked device is refused at its next connection" "$(cat revoked.out)"
ok "devices not revoked still connect" timeout 20 "${A[@]}" run --image chips/dev-1.img \
  --hub "127.0.0.1:$MQTT" --count 1 --connect-attempts 3

# --- renewal: a running agent, one-minute certificates ---------------------------------
SHORT=short-chips/short-1.img
"${SUB[@]}" -i ops-1 -t 'devices/short-1/telemetry' -F '%U %p' -W 75 >renew-sub.out 2>/dev/null &
SUBPID=$!
sleep 0.5
"${A[@]}" run --image "$SHORT" --pin "$(pin short-chips short-1)" --hub "127.0.0.1:$MQTT" \
  --interval 1 "${CMSA[@]}" >renew.out 2>&1 &
AGENT=$!
PIDS+=("$AGENT")
wait_for renew.out "renewed: serial" 60 && sleep 4
kill -TERM "$AGENT" 2>/dev/null || true
wait "$AGENT" && pass "the agent stops cleanly on SIGTERM" || fail "the agent stops cleanly on SIGTERM" "$(tail -3 renew.out)"
kill "$SUBPID" 2>/dev/null || true
wait "$SUBPID" 2>/dev/null || true
grep -q "renewed: serial" renew.out && pass "the running agent renewed its one-minute certificate" \
  || fail "the running agent renewed its one-minute certificate" "$(tail -5 renew.out)"
"$DEVID" se file read --image "$SHORT" --id C001 --out short-c001.pem
awk '/BEGIN CERT/{n++} n==1' short-c001.pem >short.pem
renewed=$(sed -n 's/.*renewed: serial \([0-9A-F]*\),.*/\1/p' renew.out | tail -1)
[ -n "$renewed" ] && [ "$(openssl x509 -in short.pem -noout -serial | cut -d= -f2 | sed 's/^0*//')" = "$renewed" ] \
  && openssl verify -CAfile root.pem -untrusted chain.pem short.pem >/dev/null 2>&1 \
  && pass "the renewed certificate is in the chip and verifies" \
  || fail "the renewed certificate is in the chip and verifies" "$renewed"
# Telemetry before and after the renewal, no gap longer than the back-off (≤ 2 s at first) plus the interval.
gap=$(awk '{t=$1} NR>1 {d=t-p; if (d>m) m=d} {p=t} END {printf "%.1f", m}' renew-sub.out)
serials=$(cut -d' ' -f2- renew-sub.out | jq -r .certificate_serial | sort -u | wc -l)
((serials >= 2)) && awk -v g="$gap" 'BEGIN {exit !(g < 3.5)}' \
  && pass "telemetry kept flowing across the renewal (largest gap ${gap}s, $serials certificates)" \
  || fail "telemetry kept flowing across the renewal" "gap $gap s, $serials certificates" "$(tail -5 renew.out)"
finish
