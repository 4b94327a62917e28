#!/usr/bin/env bash
# `devid hub` (the local cloud: Mosquitto 2.0 configured by devid, with
# libdevid-mosquitto.so) against `devid serve`, with mosquitto_pub and
# mosquitto_sub as devices and operator: telemetry reaches the operator;
# certificates from another organization, self-signed and expired ones are
# refused; topics are per device; a revoked or disabled device is refused
# within 10 s; the first connection registers the device; broken state files
# make the plugin refuse everything without crashing the broker; SIGTERM stops
# both, a dead broker stops the hub with an error.
# Usage: hub_test.sh PATH/TO/devid PATH/TO/libdevid-mosquitto.so
set -euo pipefail
DEVID=$(realpath "$1")
PLUGIN=$(realpath "$2")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
enter_scratch_dir
mkdir -m 700 home client
export DEVID_PASSPHRASE=hub-test-passphrase
D=("$DEVID" --home home)

# CAs dated ten days back, so that an honestly issued certificate can already
# have expired (a CA issues nothing that outlives it or predates it). An ASan
# build must accept libfaketime ahead of its runtime.
past() { ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" faketime -f "$@"; }
for org in acme globex; do
  past -10d "${D[@]}" ca init-root --org $org --subject "CN=$org Root" >/dev/null
  past -10d "${D[@]}" ca init-ica --org $org --name devices --subject "CN=$org Devices" >/dev/null
done
newkey() {  # newkey FILE-PREFIX CN: FILE.key and FILE.csr
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -subj "/CN=$2" -out "$1.csr" 2>/dev/null
}
newkey expired dev-old
past -3d "${D[@]}" ca issue --org acme --ca devices --template device --csr expired.csr \
  --days 1 --out expired.pem >/dev/null 2>&1
newkey alien dev-alien
"${D[@]}" ca issue --org globex --ca devices --template device --csr alien.csr --out alien.pem \
  >/dev/null 2>&1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout self.key \
  -subj /CN=dev-self -days 2 -out self.pem 2>/dev/null
echo "admin-password-123" >pw
"${D[@]}" admin bootstrap --user admin --password-file pw >/dev/null
start_serve "$DEVID" "$PWD/home"
[ -n "$PORT" ] || { fail "devid serve starts" "$(cat out.txt log.txt)"; finish; }
CMS=(--url "$URL" --cacert "$PWD/home/tls/ca.pem")
C=("$DEVID" --home client cms "${CMS[@]}")
"${C[@]}" login --user admin --password-file pw >/dev/null
ADMIN_TOKEN=$(sed -n 's/.*"token":"\(devid_[0-9A-F]*\)".*/\1/p' client/cms-session.json)
CURL=(curl -s --max-time 10 --cacert home/tls/ca.pem -H "Authorization: Bearer $ADMIN_TOKEN"
  -H 'Content-Type: application/json')
# The hub runs on an API token of role operator: sessions last 15 minutes.
HUB_TOKEN=$("${C[@]}" token create --org acme --role operator --name hub \
  | sed -n 's/.*"token": "\(devid_[0-9A-F]*\)".*/\1/p')
for n in 1 2 3 4 5; do
  newkey dev-$n dev-$n
  "${C[@]}" cert issue --org acme --ca devices --csr dev-$n.csr --out dev-$n.pem >/dev/null
done
newkey slash 'dev\/1'
"${C[@]}" cert issue --org acme --ca devices --csr slash.csr --out slash.pem >/dev/null 2>&1 || true
"${C[@]}" ca chain --org acme --ca devices >chain.pem

H=("$DEVID" --home client hub)
STATE=client/hub/acme
HUB_START=("${H[@]}" start --org acme --listen 127.0.0.1:0 --plugin "$PLUGIN" "${CMS[@]}"
  --token "$HUB_TOKEN")
start_hub "${HUB_START[@]}"
[ -n "$MQTT" ] && pass "devid hub start prints its port and mosquitto's pid" \
  || { fail "devid hub start prints its port and mosquitto's pid" "$(cat hub.out hub.err)"; finish; }
[ "$(stat -c %a $STATE)" = 700 ] && [ "$(stat -c %a $STATE/server-key.pem)" = 600 ] \
  && pass "the state folder is 0700, the server key 0600" || fail "the state folder is 0700, the server key 0600"
grep -qx 'require_certificate true' $STATE/mosquitto.conf && grep -qx 'allow_anonymous false' $STATE/mosquitto.conf \
  && grep -qx 'use_identity_as_username false' $STATE/mosquitto.conf && grep -qx "crlfile $PWD/$STATE/crl.pem" $STATE/mosquitto.conf \
  && pass "mosquitto.conf: client certificates required, CRL, no anonymous" || fail "mosquitto.conf" "$(cat $STATE/mosquitto.conf)"
openssl x509 -in $STATE/server-cert.pem -noout -ext subjectAltName 2>/dev/null | grep -q 'IP Address:127.0.0.1' \
  && openssl verify -CAfile chain.pem $STATE/server-cert.pem >/dev/null 2>&1 \
  && [ "$(openssl x509 -in $STATE/server-cert.pem -noout -issuer)" = "issuer=CN = acme Devices" ] \
  && pass "the hub's certificate: from the devices' issuing CA, for 127.0.0.1" \
  || fail "the hub's certificate: from the devices' issuing CA, for 127.0.0.1" "$(openssl x509 -in $STATE/server-cert.pem -noout -text)"
rc=0; out=$("${H[@]}" start --org acme --listen 127.0.0.1:0 --plugin "$PLUGIN" "${CMS[@]}" \
  --token "$HUB_TOKEN" 2>&1) || rc=$?
((rc == 1)) && grep -q "another devid hub runs on" <<<"$out" && pass "a second hub on the same folder is refused" \
  || fail "a second hub on the same folder is refused" "$out"

M=(-h 127.0.0.1 -p "$MQTT" --cafile chain.pem)
pub() {  # pub NAME [mosquitto_pub options...]: as device NAME (NAME.pem, NAME.key), client id NAME
  local who=$1
  shift
  timeout 10 mosquitto_pub "${M[@]}" --cert "$who.pem" --key "$who.key" -i "$who" "$@"
}
connects() { pub "$1" -t "devices/$1/telemetry" -m probe >/dev/null 2>&1; }

# No TLS 1.3 session tickets (the broker's openssl.cnf): every connection proves the device key.
out=$( (sleep 1) | timeout 10 openssl s_client -connect "127.0.0.1:$MQTT" -CAfile chain.pem \
  -cert dev-1.pem -key dev-1.key -tls1_3 2>&1) || true
grep -q 'Verify return code: 0' <<<"$out" && ! grep -q 'New Session Ticket' <<<"$out" \
  && grep -qx 'NumTickets = 0' $STATE/openssl.cnf \
  && pass "the hub issues no session tickets (openssl s_client, TLS 1.3)" \
  || fail "the hub issues no session tickets (openssl s_client, TLS 1.3)" "$out"
wait_log() {  # wait_log PATTERN [SECONDS]: until the broker's log holds PATTERN
  for _ in $(seq $((${2:-10} * 10))); do
    grep -q -- "$1" $STATE/mosquitto.log 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# An operator, issued while the hub runs: the plugin learns of it on the hub's next refresh.
out=$("${H[@]}" issue-operator --org acme --name ops-1 --out-dir ops "${CMS[@]}" --token "$HUB_TOKEN" 2>&1) \
  && [ "$(stat -c %a ops/key.pem)" = 600 ] && openssl verify -CAfile ops/ca.pem ops/cert.pem >/dev/null 2>&1 \
  && grep -q " ops-1$" $STATE/operators && pass "issue-operator: key 0600, certificate, chain, listed" \
  || fail "issue-operator: key 0600, certificate, chain, listed" "$out"
wait_log "1 operator(s)" && pass "the plugin reloads with the new operator" \
  || fail "the plugin reloads with the new operator" "$(tail -5 $STATE/mosquitto.log)"
cp ops/cert.pem ops-1.pem
cp ops/key.pem ops-1.key

# Telemetry reaches the operator; another device's topic does not.
timeout 15 mosquitto_sub "${M[@]}" --cert ops-1.pem --key ops-1.key -i ops-1 -t 'devices/#' -v \
  -C 1 -W 10 >sub.out 2>sub.err &
SUB=$!
wait_log "accepted operator 'ops-1'" && sleep 0.5
out=$(pub dev-1 -V mqttv5 -q 1 -t devices/dev-2/telemetry -m forged 2>&1) || true
grep -q "Not authorized" <<<"$out" && pass "a device publishing to another's topic: not authorized (MQTT 5)" \
  || fail "a device publishing to another's topic: not authorized (MQTT 5)" "$out"
out=$(pub dev-1 -V mqttv5 -q 1 -t devices/dev-1/telemetry -m 't=21' 2>&1) \
  && pass "a device publishes its telemetry" || fail "a device publishes its telemetry" "$out"
wait "$SUB" || true
[ "$(cat sub.out)" = "devices/dev-1/telemetry t=21" ] \
  && pass "the operator receives it, and nothing forged" || fail "the operator receives it, and nothing forged" "$(cat sub.out sub.err)"

# Topics per device, wildcards included.
out=$(timeout 10 mosquitto_sub "${M[@]}" --cert dev-2.pem --key dev-2.key -i dev-2 -t 'devices/dev-2/commands/#' -C 1 -W 1 2>&1) || true
grep -q "Timed out" <<<"$out" && pass "a device subscribes to its commands" || fail "a device subscribes to its commands" "$out"
for filter in 'devices/#' 'devices/+/commands/#' 'devices/dev-1/commands/#' '#' 'devices/dev-2/+'; do
  out=$(timeout 10 mosquitto_sub "${M[@]}" --cert dev-2.pem --key dev-2.key -i dev-2 -t "$filter" -C 1 -W 2 2>&1) || true
  grep -q "subscription requests were denied" <<<"$out" && pass "a device may not subscribe to $filter" \
    || fail "a device may not subscribe to $filter" "$out"
done
out=$(pub ops-1 -V mqttv5 -q 1 -t devices/dev-1/telemetry -m forged 2>&1) || true
grep -q "Not authorized" <<<"$out" && pass "an operator may not publish telemetry" \
  || fail "an operator may not publish telemetry" "$out"
# An operator sends a command; the device it is for receives it.
timeout 15 mosquitto_sub "${M[@]}" --cert dev-2.pem --key dev-2.key -i dev-2 -t 'devices/dev-2/commands/#' \
  -v -C 1 -W 10 >cmd.out 2>cmd.err &
CMDSUB=$!
sleep 0.5
out=$(pub ops-1 -V mqttv5 -q 1 -t devices/dev-2/commands/reboot -m now 2>&1) \
  && pass "an operator publishes a command to a device" || fail "an operator publishes a command to a device" "$out"
wait "$CMDSUB" || true
[ "$(cat cmd.out)" = "devices/dev-2/commands/reboot now" ] && pass "the device receives its command" \
  || fail "the device receives its command" "$(cat cmd.out cmd.err)"
# Operators' names are theirs: a device certificate named like one is refused,
# and a device's name cannot become an operator's.
newkey fake-ops ops-1
"${C[@]}" cert issue --org acme --ca devices --csr fake-ops.csr --out fake-ops.pem >/dev/null
rc=0; out=$(pub fake-ops -t devices/ops-1/telemetry -m x 2>&1) || rc=$?
((rc != 0)) && pass "refused: a device certificate with an operator's name" \
  || fail "refused: a device certificate with an operator's name" "$out"
rc=0; out=$("${H[@]}" issue-operator --org acme --name dev-1 --out-dir ops-dev1 "${CMS[@]}" \
  --token "$HUB_TOKEN" 2>&1) || rc=$?
((rc != 0)) && grep -q "is a device in the registry" <<<"$out" \
  && pass "issue-operator refuses a device's name" || fail "issue-operator refuses a device's name" "$out"

# Refused at connection.
for who in alien self expired; do
  rc=0; out=$(pub $who -t devices/dev-x/telemetry -m x 2>&1) || rc=$?
  ((rc != 0)) && pass "refused: $who certificate" || fail "refused: $who certificate" "$out"
done
rc=0; out=$(timeout 10 mosquitto_pub "${M[@]}" -i dev-1 -t devices/dev-1/telemetry -m x 2>&1) || rc=$?
((rc != 0)) && pass "refused: no client certificate" || fail "refused: no client certificate" "$out"
if [ -f slash.pem ]; then
  rc=0; out=$(pub slash -t devices/x/telemetry -m x 2>&1) || rc=$?
  ((rc != 0)) && grep -q "not authorised" <<<"$out" && pass "refused: a CN with '/'" || fail "refused: a CN with '/'" "$out"
fi
rc=0; out=$(pub dev-1 -u dev-2 -t devices/dev-1/telemetry -m x 2>&1) || rc=$?
((rc != 0)) && grep -q "not authorised" <<<"$out" && pass "refused: a user name other than the CN" \
  || fail "refused: a user name other than the CN" "$out"
rc=0; out=$(timeout 10 mosquitto_pub "${M[@]}" --cert dev-1.pem --key dev-1.key -i dev-2 -t devices/dev-1/telemetry -m x 2>&1) || rc=$?
((rc != 0)) && grep -q "not authorised" <<<"$out" && pass "refused: another device's client id" \
  || fail "refused: another device's client id" "$out"
out=$(pub dev-1 -u dev-1 -t devices/dev-1/telemetry -m x 2>&1) && pass "accepted: user name = CN" \
  || fail "accepted: user name = CN" "$out"

# Just-in-time registration: the first connection puts the device in the registry.
seen=""
for _ in $(seq 100); do
  seen=$("${CURL[@]}" "$URL/api/v1/orgs/acme/devices/dev-1" | python3 -c \
    'import json,sys; print(json.load(sys.stdin).get("first_seen") or "")' 2>/dev/null || true)
  [ -n "$seen" ] && break
  sleep 0.1
done
[ -n "$seen" ] && pass "the registry shows dev-1 first seen at $seen" || fail "the registry shows dev-1 first seen"

# Revocation takes effect within 10 s.
connects dev-3 && pass "dev-3 connects" || fail "dev-3 connects"
SERIAL3=$(openssl x509 -in dev-3.pem -noout -serial | cut -d= -f2)
"${C[@]}" cert revoke --org acme --serial "$SERIAL3" --reason keyCompromise >/dev/null
start=$(date +%s%N); refused=""
while (($(date +%s%N) - start < 12000000000)); do
  connects dev-3 || { refused=$(($(date +%s%N) - start)); break; }
  sleep 0.2
done
[ -n "$refused" ] && ((refused <= 10000000000)) \
  && pass "a revoked device is refused after $((refused / 1000000)) ms" || fail "a revoked device is refused within 10 s"
grep -q "revocations changed: 1 revoked" hub.err && pass "the hub reports the new revocation" \
  || fail "the hub reports the new revocation" "$(cat hub.err)"
connects dev-2 && pass "other devices still connect" || fail "other devices still connect"

# A device disabled in the registry is refused within 10 s.
connects dev-4 && pass "dev-4 connects" || fail "dev-4 connects"
for _ in $(seq 100); do
  "${CURL[@]}" -f "$URL/api/v1/orgs/acme/devices/dev-4" >/dev/null 2>&1 && break
  sleep 0.1
done
"${CURL[@]}" -X PATCH -d '{"status":"disabled"}' "$URL/api/v1/orgs/acme/devices/dev-4" >/dev/null
start=$(date +%s%N); refused=""
while (($(date +%s%N) - start < 12000000000)); do
  connects dev-4 || { refused=$(($(date +%s%N) - start)); break; }
  sleep 0.2
done
[ -n "$refused" ] && ((refused <= 10000000000)) \
  && pass "a disabled device is refused after $((refused / 1000000)) ms" || fail "a disabled device is refused within 10 s"
"${CURL[@]}" -X PATCH -d '{"status":"active"}' "$URL/api/v1/orgs/acme/devices/dev-4" >/dev/null
ok_again=""
for _ in $(seq 60); do connects dev-4 && { ok_again=1; break; }; sleep 0.2; done
[ -n "$ok_again" ] && pass "enabled again, it connects again" || fail "enabled again, it connects again"

# A connected device is dropped when it is revoked (SIGHUP makes mosquitto
# check every client with the plugin again).
(for i in $(seq 120); do echo "m$i"; sleep 0.25; done) \
  | timeout 40 mosquitto_pub "${M[@]}" --cert dev-5.pem --key dev-5.key -i dev-5 -t devices/dev-5/telemetry -l \
  >pub5.out 2>&1 &
PUB5=$!
wait_log "accepted device 'dev-5'"
SERIAL5=$(openssl x509 -in dev-5.pem -noout -serial | cut -d= -f2)
"${C[@]}" cert revoke --org acme --serial "$SERIAL5" >/dev/null
wait_log "Client dev-5 disconnected" 12 \
  && pass "a connected device is disconnected within 12 s of its revocation" \
  || fail "a connected device is disconnected within 12 s of its revocation" "$(tail -5 $STATE/mosquitto.log)"
kill $PUB5 2>/dev/null || true
wait $PUB5 2>/dev/null || true

# A new issuing CA: mosquitto reads its cafile only at start, so the hub
# restarts it; the hub's own certificate stays from the CA it had.
"${C[@]}" ca create --org acme --name fleet --subject "CN=acme Fleet" >/dev/null
newkey fleet-1 fleet-1
"${C[@]}" cert issue --org acme --ca fleet --csr fleet-1.csr --out fleet-1.pem >/dev/null
"${C[@]}" ca chain --org acme --ca fleet >>chain.pem
NEW_MOSQ=""
for _ in $(seq 120); do
  NEW_MOSQ=$(sed -n 's/.*restarted mosquitto (pid \([0-9]*\)).*/\1/p' hub.err | tail -1)
  [ -n "$NEW_MOSQ" ] && break
  sleep 0.1
done
[ -n "$NEW_MOSQ" ] && ! kill -0 "$MOSQ" 2>/dev/null && pass "a new issuing CA restarts mosquitto" \
  || fail "a new issuing CA restarts mosquitto" "$(tail -3 hub.err)"
[ -n "$NEW_MOSQ" ] && MOSQ=$NEW_MOSQ && PIDS+=("$MOSQ")
fleet_ok=""
for _ in $(seq 50); do connects fleet-1 && { fleet_ok=1; break; }; sleep 0.2; done
[ -n "$fleet_ok" ] && connects dev-1 && pass "its devices connect, and the others still do" \
  || fail "its devices connect, and the others still do" "$(tail -5 $STATE/mosquitto.log)"
[ "$(openssl x509 -in $STATE/server-cert.pem -noout -issuer)" = "issuer=CN = acme Devices" ] \
  && pass "the hub keeps its certificate from the devices CA" || fail "the hub keeps its certificate from the devices CA"
! connects dev-3 && pass "the revoked device stays refused after the restart" \
  || fail "the revoked device stays refused after the restart"

# Broken state files: a broker of its own on a copy of the state refuses
# everyone after a reload, neither crashes nor needs a restart to recover.
cp -r $STATE bad
rm -f bad/spool bad/mosquitto.log bad/hub.lock
BAD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s|$PWD/$STATE|$PWD/bad|g" -e "s|^listener .*|listener $BAD_PORT 127.0.0.1|" $STATE/mosquitto.conf >bad/mosquitto.conf
cp bad/crl.pem good-crl.pem
cp bad/issuers.pem good-issuers.pem
/usr/sbin/mosquitto -c bad/mosquitto.conf >bad.out 2>&1 &
BAD=$!
PIDS+=("$BAD")
for _ in $(seq 100); do grep -q "running" bad/mosquitto.log 2>/dev/null && break; sleep 0.1; done
bad_connects() { timeout 10 mosquitto_pub -h 127.0.0.1 -p "$BAD_PORT" --cafile chain.pem --cert dev-1.pem \
  --key dev-1.key -i dev-1 -t devices/dev-1/telemetry -m x >/dev/null 2>&1; }
bad_connects && pass "a broker of its own on a copy of the state accepts dev-1" \
  || fail "a broker of its own on a copy of the state accepts dev-1" "$(cat bad.out; tail -5 bad/mosquitto.log)"
reload_bad() {  # reload_bad: SIGHUP, then wait for the plugin's next verdict
  local before
  before=$(grep -c "devid: state loaded\|devid: refusing every client" bad/mosquitto.log || true)
  kill -HUP $BAD
  for _ in $(seq 100); do
    (($(grep -c "devid: state loaded\|devid: refusing every client" bad/mosquitto.log || true) > before)) && return 0
    sleep 0.05
  done
}
check_broken() {  # check_broken DESCRIPTION: the state now in bad/ must refuse everyone
  reload_bad
  if ! bad_connects && kill -0 $BAD 2>/dev/null && tail -1 bad/mosquitto.log | grep -q .; then
    pass "$1: refused, broker alive"
  else
    fail "$1: refused, broker alive" "$(tail -3 bad/mosquitto.log)"
  fi
  cp good-crl.pem bad/crl.pem
  cp good-issuers.pem bad/issuers.pem
  : >bad/operators
  : >bad/devices.disabled
}
head -c 3000 /dev/urandom >bad/crl.pem
check_broken "random bytes as the CRL file"
head -c $(($(stat -c %s good-crl.pem) / 2)) good-crl.pem >bad/crl.pem
check_broken "a truncated CRL file"
cp good-issuers.pem bad/crl.pem
check_broken "certificates instead of CRLs"
cat "$PWD/home/tls/ca.pem" >bad/issuers.pem
check_broken "issuers that did not sign the CRLs"
: >bad/issuers.pem
check_broken "no issuers"
rm bad/crl.pem
check_broken "a missing CRL file"
printf 'zz-not-hex ops\n' >bad/operators
check_broken "a malformed operators file"
printf 'dev-9\ndevices/#\n' >bad/devices.disabled
check_broken "a disabled list with a topic in it"
head -c 100000 /dev/urandom >bad/devices.disabled
check_broken "binary junk as the disabled list"
reload_bad
bad_connects && pass "good files and SIGHUP: it accepts again" || fail "good files and SIGHUP: it accepts again" "$(tail -5 bad/mosquitto.log)"
kill $BAD
wait $BAD 2>/dev/null || true

# SIGTERM stops the hub and its broker; a restart reuses the server certificate.
SERVER_SERIAL=$(openssl x509 -in $STATE/server-cert.pem -noout -serial)
kill -TERM "$HUB"
rc=0; wait "$HUB" || rc=$?
((rc == 0)) && ! kill -0 "$MOSQ" 2>/dev/null && pass "SIGTERM: the hub exits 0, mosquitto is stopped" \
  || fail "SIGTERM: the hub exits 0, mosquitto is stopped" "rc=$rc" "$(tail -5 hub.err)"
start_hub "${HUB_START[@]}"
[ -n "$MQTT" ] && [ "$(openssl x509 -in $STATE/server-cert.pem -noout -serial)" = "$SERVER_SERIAL" ] \
  && pass "restarted, the hub keeps its server certificate" || fail "restarted, the hub keeps its server certificate" "$(tail -5 hub.err)"
M=(-h 127.0.0.1 -p "$MQTT" --cafile chain.pem)
connects dev-1 && pass "devices connect to the restarted hub" || fail "devices connect to the restarted hub"
! connects dev-3 && pass "the revoked device stays refused" || fail "the revoked device stays refused"
# A broker that dies takes the hub down with a clear error.
kill -KILL "$MOSQ"
rc=0
for _ in $(seq 100); do kill -0 "$HUB" 2>/dev/null || break; sleep 0.1; done
wait "$HUB" || rc=$?
((rc == 1)) && grep -q "mosquitto (pid $MOSQ) was killed by signal 9" hub.err \
  && pass "mosquitto killed: the hub exits 1 and says so" || fail "mosquitto killed: the hub exits 1 and says so" "rc=$rc" "$(tail -3 hub.err)"
finish
