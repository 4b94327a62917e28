#!/usr/bin/env bash
# `devid fleet simulate` (seed fig. 4 at scale) against `devid serve` and a
# plain Mosquitto broker, all on 127.0.0.1: 20 virtual devices, each with a
# chip of its own, enrol over EST with an enrolment token and publish one
# telemetry message over mutual TLS through their chips. The summary says
# 20 ok / 0 failed, the CMS holds 20 new certificates named after the run,
# and a mosquitto_sub subscriber (an operator certificate) receives 20
# messages, one from each device. A hub that is down makes every device fail,
# grouped under one cause, and the command exit non-zero.
# Usage: fleet_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
command -v jq >/dev/null || { echo "FAIL - jq is required"; exit 1; }
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
[ -x "$MOSQUITTO" ] || { echo "FAIL - $MOSQUITTO is required"; exit 1; }
enter_scratch_dir
export DEVID_PASSPHRASE=fleet-test-passphrase
mkdir -m 700 home
D=("$DEVID" --home home)
N=20

# --- the PKI, the broker's and the operator's certificates ---------------------
ok "root CA" "${D[@]}" ca init-root --org acme --subject "CN=Acme Root"
ok "issuing CA devices" "${D[@]}" ca init-ica --org acme --name devices --subject "CN=Acme Devices"
ok "export the chain" "${D[@]}" ca export --org acme --ca devices --chain --out chain.pem
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout hub.key \
  -subj "/CN=hub" -addext "subjectAltName=IP:127.0.0.1" -out hub.csr 2>/dev/null
# The devices check the broker with the issuing CA key in their chips: the
# broker's certificate comes from the same issuing CA.
ok "the broker's certificate" "${D[@]}" ca issue --org acme --ca devices --template server \
  --csr hub.csr --out hub.pem
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout operator.key \
  -subj "/CN=operator" -out operator.csr 2>/dev/null
ok "the operator's certificate" "${D[@]}" ca issue --org acme --ca devices --template device \
  --csr operator.csr --out operator.pem
echo "admin-password-fleet" >admin.pw
ok "bootstrap the system admin" "${D[@]}" admin bootstrap --user admin --password-file admin.pw

# --- devid serve, an enrolment token ------------------------------------------
start_serve "$DEVID" "$PWD/home"
[ -n "$PORT" ] && pass "devid serve listens" || { fail "devid serve listens" "$(cat out.txt log.txt)"; finish; }
C=(curl -s --max-time 15 --cacert home/tls/ca.pem)
ADMIN=$("${C[@]}" -H 'Content-Type: application/json' \
  --data-binary '{"username":"admin","password":"admin-password-fleet"}' \
  "$URL/api/v1/auth/login" | jq -r '.token // empty')
[ -n "$ADMIN" ] && pass "login as the system admin" || { fail "login as the system admin"; finish; }
ENROLL=$("${C[@]}" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  --data-binary '{"role":"enrollment","name":"fleet"}' "$URL/api/v1/orgs/acme/tokens" \
  | jq -r '.token // empty')
[ -n "$ENROLL" ] && pass "an enrolment token" || { fail "an enrolment token"; finish; }
count_fleet_certs() {  # count_fleet_certs RUN-PREFIX: certificates whose subject names it
  "${C[@]}" -H "Authorization: Bearer $ADMIN" "$URL/api/v1/orgs/acme/certificates?limit=1000" \
    | jq --arg p "CN=$1" '[.certificates[] | select(.subject | startswith($p))] | length'
}
BEFORE=$(count_fleet_certs fleet-)

# --- a plain Mosquitto: TLS, client certificates of the org required ----------
MQTT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# As root, mosquitto would become user mosquitto, who cannot read the scratch directory.
cat >mosquitto.conf <<EOF
per_listener_settings false
user $(id -un)
persistence false
log_dest file $PWD/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
listener $MQTT 127.0.0.1
cafile $PWD/chain.pem
certfile $PWD/hub.pem
keyfile $PWD/hub.key
require_certificate true
use_identity_as_username true
allow_anonymous true
set_tcp_nodelay true
EOF
"$MOSQUITTO" -c mosquitto.conf >mosquitto.out 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
  grep -q "Opening ipv4 listen socket on port $MQTT" mosquitto.log 2>/dev/null && break
  sleep 0.1
done
grep -q "Opening ipv4 listen socket on port $MQTT" mosquitto.log 2>/dev/null \
  && pass "mosquitto listens" || { fail "mosquitto listens" "$(cat mosquitto.log mosquitto.out)"; finish; }

SUB=(mosquitto_sub -h 127.0.0.1 -p "$MQTT" --cafile chain.pem --cert operator.pem --key operator.key)
"${SUB[@]}" -t 'devices/+/telemetry' -q 1 -v -C "$N" -W 60 >received.txt 2>sub.err &
SUBSCRIBER=$!
PIDS+=("$SUBSCRIBER")
# The subscription must be in place before the fleet publishes.
for _ in $(seq 50); do
  grep -q "operator" mosquitto.log 2>/dev/null && break
  sleep 0.1
done
sleep 0.3

# --- the fleet ----------------------------------------------------------------
FLEET=("$DEVID" fleet simulate --cms "$URL" --cms-ca home/tls/ca.pem --org acme --ca devices
  --token "$ENROLL" --concurrency 4)
if timeout 120 "${FLEET[@]}" --devices "$N" --hub "127.0.0.1:$MQTT" >fleet.out 2>fleet.err; then
  pass "the fleet exits 0"
else
  fail "the fleet exits 0" "$(cat fleet.out fleet.err)"
fi
grep -Eq "^fleet [0-9a-f]+: $N ok / 0 failed of $N devices" fleet.out \
  && pass "the summary says $N ok / 0 failed" || fail "the summary says $N ok / 0 failed" "$(cat fleet.out)"
for what in "enrol (EST simpleenroll)" "connect+publish"; do
  grep -Eq "^$(sed 's/[()+]/\\&/g' <<<"$what") ms: p50 [0-9.]+, p95 [0-9.]+, p99 [0-9.]+ \($N devices\)" fleet.out \
    && pass "the summary gives $what latencies" || fail "the summary gives $what latencies" "$(cat fleet.out)"
done
RUN=$(sed -n 's/^fleet \([0-9a-f]*\): .*/\1/p' fleet.out)
[ -n "$RUN" ] || RUN=unknown
NEW=$(count_fleet_certs "fleet-$RUN-")
[ "$NEW" = "$N" ] && pass "the CMS holds $N new certificates CN=fleet-$RUN-<i>" \
  || fail "the CMS holds $N new certificates CN=fleet-$RUN-<i>" "found $NEW (before: $BEFORE)"

wait "$SUBSCRIBER" 2>/dev/null || true
GOT=$(grep -c "^devices/fleet-$RUN-[0-9]*/telemetry {" received.txt || true)
[ "$GOT" = "$N" ] && pass "the subscriber received $N messages" \
  || fail "the subscriber received $N messages" "got $GOT" "$(head -5 received.txt)" "$(cat sub.err)"
DISTINCT=$(sed -n 's|^devices/\([^/]*\)/telemetry .*|\1|p' received.txt | sort -u | wc -l)
[ "$DISTINCT" = "$N" ] && pass "one message from each device" || fail "one message from each device" "$DISTINCT distinct"
jq -e --arg r "$RUN" '.fleet_run == $r and (.device | startswith("fleet-"))' \
  < <(head -1 received.txt | cut -d' ' -f2-) >/dev/null \
  && pass "the telemetry is JSON naming the device and the run" \
  || fail "the telemetry is JSON naming the device and the run" "$(head -1 received.txt)"

# --- a hub that is down: every device fails, one cause, exit 1 -----------------
DOWN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
set +e
timeout 60 "${FLEET[@]}" --devices 3 --hub "127.0.0.1:$DOWN" >down.out 2>down.err
RC=$?
set -e
[ "$RC" = 1 ] && pass "a fleet with failures exits 1" || fail "a fleet with failures exits 1" "exit $RC"
grep -Eq "^fleet [0-9a-f]+: 0 ok / 3 failed of 3 devices" down.out \
  && pass "the summary counts the failures" || fail "the summary counts the failures" "$(cat down.out)"
grep -Eq "^failed: 3 x publish: connecting to the hub 127\.0\.0\.1:$DOWN" down.out \
  && pass "failures are grouped by their first error" || fail "failures are grouped by their first error" "$(cat down.out)"
grep -q "^devid: error: 3 of 3 devices failed" down.err \
  && pass "one error line on stderr" || fail "one error line on stderr" "$(cat down.err)"
# A fleet's temporary chip images do not outlive it.
ls -d /dev/shm/devid-fleet-"$RUN" 2>/dev/null && fail "the chip images are removed" || pass "the chip images are removed"

finish
