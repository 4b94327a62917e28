#!/usr/bin/env bash
# Integration test of `devid serve` (the HTTPS foundation of the CMS) with curl
# and openssl as the peers: its own TLS identity (clients trust
# <home>/tls/ca.pem), /healthz and /metrics, JSON errors with their status
# codes, a body size limit, plain HTTP and slow clients dropped without harm,
# graceful stop on SIGTERM.
# Usage: serve_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
enter_scratch_dir
mkdir -m 700 home

start_serve "$DEVID" "$PWD/home"
[ -n "$PORT" ] && pass "devid serve listens on a free port" || fail "devid serve listens on a free port" "$(cat out.txt log.txt)"
C=(curl -s --max-time 10 --cacert home/tls/ca.pem)

[ -s home/tls/ca.pem ] && [ "$(stat -c %a home/tls/server.key)" = 600 ] && [ "$(stat -c %a home/tls/ca.key)" = 600 ] \
  && pass "the system CA is written for clients; keys are 0600" || fail "the system CA is written for clients; keys are 0600"
grep -q 'verify OK\|OK$' <<<"$(openssl verify -CAfile home/tls/ca.pem <(openssl x509 -in home/tls/server.pem) 2>&1)" \
  && pass "openssl verifies the server certificate against ca.pem" || fail "openssl verifies the server certificate against ca.pem"
[ "$("${C[@]}" "$URL/healthz")" = '{"status":"ok"}' ] && pass "GET /healthz over verified HTTPS" || fail "GET /healthz over verified HTTPS"
[ "$("${C[@]}" "https://localhost:$PORT/healthz")" = '{"status":"ok"}' ] && pass "the certificate names localhost too" || fail "the certificate names localhost too"
check_status() {  # check_status DESC STATUS CODE CURL-ARGS...
  local d=$1 want=$2 code=$3
  shift 3
  local out status
  out=$("${C[@]}" -w '\n%{http_code}' "$@")
  status=$(tail -n 1 <<<"$out")
  if [ "$status" = "$want" ] && grep -q "\"code\":\"$code\"" <<<"$out"; then pass "$d"; else fail "$d" "$out"; fi
}
check_status "unknown path: 404 JSON" 404 not_found "$URL/api/nothing"
check_status "wrong method: 405 JSON" 405 method_not_allowed -X DELETE "$URL/healthz"
head -c 2000000 /dev/zero >big.bin
check_status "oversized body: 413 JSON" 413 body_too_large -X POST --data-binary @big.bin "$URL/healthz"
check_status "malformed query: 400 JSON" 400 bad_request "$URL/healthz?a=%zz"
rc=0; curl -s --max-time 5 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 || rc=$?
((rc != 0)) && pass "plain HTTP gets no answer" || fail "plain HTTP gets no answer"
# A client that connects and sends nothing must not block others.
(exec 3<>/dev/tcp/127.0.0.1/"$PORT"; sleep 3) &
SLOW=$!
sleep 0.2
[ "$("${C[@]}" "$URL/healthz")" = '{"status":"ok"}' ] && pass "a silent client does not block others" || fail "a silent client does not block others"
metrics=$("${C[@]}" "$URL/metrics")
grep -q 'devid_http_requests_total{method="GET",route="/healthz",status="200"}' <<<"$metrics" \
  && grep -q 'devid_http_request_duration_seconds_bucket' <<<"$metrics" \
  && pass "/metrics in Prometheus text format" || fail "/metrics in Prometheus text format" "$metrics"
grep -q '"event":"request","method":"GET","path":"/healthz"' log.txt && pass "one structured log line a request" \
  || fail "one structured log line a request" "$(tail -3 log.txt)"
kill "$SLOW" 2>/dev/null || true
kill -TERM "$SERVER"
rc=0
for _ in $(seq 80); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVER" 2>/dev/null; then fail "SIGTERM stops the server within 8 s"; else
  wait "$SERVER" || rc=$?
  ((rc == 0)) && grep -q 'stopped' out.txt && pass "SIGTERM stops the server cleanly" || fail "SIGTERM stops the server cleanly" "exit $rc"
fi
# A second start reuses its TLS identity.
cp home/tls/ca.pem ca.first
"$DEVID" --home "$PWD/home" serve --listen 127.0.0.1:0 >out2.txt 2>/dev/null &
SECOND=$!
PIDS+=("$SECOND")
sleep 1
kill -TERM "$SECOND"; wait "$SECOND" || true
cmp -s ca.first home/tls/ca.pem && pass "a restart keeps the system CA" || fail "a restart keeps the system CA"
err_out=$("$DEVID" --home "$PWD/home" serve --listen nonsense 2>&1 || true)
grep -q '^devid: error: --listen takes ADDRESS:PORT' <<<"$err_out" && pass "a bad --listen is one clear error" || fail "a bad --listen is one clear error" "$err_out"
finish
