#!/usr/bin/env bash
# Crash consistency of the CMS (`devid serve`) on SQLite: batch issuances run
# back to back while the server is killed with SIGKILL at a few different
# moments; after each restart on the same home:
#  - every serial of every complete 201 answer is in the store, and each saved
#    PKCS#12 bundle opens with its password and holds exactly those serials;
#  - each batch is in the store whole (40 certificates) or not at all, and each
#    batch that is there has its audit record (they commit in one transaction);
#  - no serial is stored twice; `devid audit verify` passes; SQLite's
#    integrity_check says ok; the restarted server issues again.
# Usage: cms_crash_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
for tool in jq sqlite3 curl openssl; do
  command -v "$tool" >/dev/null || { echo "FAIL - $tool is required"; exit 1; }
done
enter_scratch_dir
export DEVID_PASSPHRASE=cms-crash-test-passphrase
unset DEVID_DB
mkdir -m 700 home
DB=home/devid.db
BATCH_SIZE=40
BUNDLE_PW=bundle-password-1
# Moments of the kill: a while after the round's first complete answer
# (seconds), then that far into a request (seconds; a batch takes ~0.1 s in the
# release build): early in it, in the middle, later.
KILL_AFTER=(0.3 0.9 1.6)
KILL_INTO=(0.01 0.04 0.07)

ok "CLI: root CA of acme" "$DEVID" --home home ca init-root --org acme --subject "CN=Acme Root"
ok "CLI: issuing CA devices of acme" "$DEVID" --home home ca init-ica --org acme --name devices \
  --subject "CN=Acme Devices"
echo admin-password-0001 >admin.pw
ok "CLI: bootstrap the system admin" "$DEVID" --home home admin bootstrap --user admin --password-file admin.pw
C=(curl -s --max-time 30 --cacert home/tls/ca.pem)

# serve: (re)start the server on the same home; sets SERVER, URL.
serve() {
  start_serve "$DEVID" "$PWD/home"
  [ -n "$PORT" ] && [ "$("${C[@]}" "$URL/healthz" || true)" = '{"status":"ok"}' ]
}
serve && pass "devid serve listens" || { fail "devid serve listens" "$(cat out.txt log.txt)"; finish; }
api() {  # api METHOD PATH TOKEN [BODY]: sets STATUS and RESP
  local args=(-X "$1" -o resp.body -w '%{http_code}')
  [ -n "$3" ] && args+=(-H "Authorization: Bearer $3")
  [ -n "${4-}" ] && args+=(-H "Content-Type: application/json" --data-binary "$4")
  rm -f resp.body
  STATUS=$("${C[@]}" "${args[@]}" "$URL/api/v1$2" 2>/dev/null) || STATUS=000
  RESP=$(cat resp.body 2>/dev/null || true)
}
api POST /auth/login "" '{"username":"admin","password":"admin-password-0001"}'
ADMIN=$(jq -r '.token // empty' <<<"$RESP" 2>/dev/null || true)
[ -n "$ADMIN" ] && pass "login as the system admin" || fail "login as the system admin" "$STATUS $RESP"
# An API token lives in the store, so it outlives the restarts.
api POST /orgs/acme/tokens "$ADMIN" '{"role":"operator","name":"factory"}'
TOKEN=$(jq -r '.token // empty' <<<"$RESP" 2>/dev/null || true)
[ -n "$TOKEN" ] && pass "an operator API token" || fail "an operator API token" "$STATUS $RESP"
CA_CERTS=$(sqlite3 "$DB" 'SELECT count(*) FROM certificates')

# batch_loop ROUND: batches back to back; each complete 201 answer saved as
# saved/ROUND-I.json (a temporary name until curl has it whole); stops at the
# first failure and writes curl's exit code and the status to loop-ROUND.end.
batch_loop() {
  local r=$1 i=0 code rc
  while ((i < 500)); do
    i=$((i + 1))
    rc=0
    echo "$i" >"current-$r"
    code=$(curl -s --max-time 30 --cacert home/tls/ca.pem -H "Authorization: Bearer $TOKEN" \
      -H "Content-Type: application/json" -o "saved/$r-$i.tmp" -w '%{http_code}' \
      --data-binary "{\"ca\":\"devices\",\"template\":\"device\",\"subject\":\"CN=r${r}b$i-{n}\",\"count\":$BATCH_SIZE,\"format\":\"pkcs12\",\"password\":\"$BUNDLE_PW\"}" \
      "$URL/api/v1/orgs/acme/batches" 2>/dev/null) || rc=$?
    if [ "$rc" = 0 ] && [ "$code" = 201 ]; then
      mv "saved/$r-$i.tmp" "saved/$r-$i.json"
    else
      echo "request $i: curl exit $rc, status $code" >"loop-$r.end"
      rm -f "saved/$r-$i.tmp"
      return 0
    fi
  done
  echo "request $i: no kill came" >"loop-$r.end"
}

# all_serials: every serial of acme the API lists (all pages), one a line.
all_serials() {
  local after=0 next
  while :; do
    api GET "/orgs/acme/certificates?status=any&limit=1000&after=$after" "$ADMIN"
    [ "$STATUS" = 200 ] || return 1
    jq -r '.certificates[].serial' <<<"$RESP"
    next=$(jq -r '.next_after // empty' <<<"$RESP")
    [ -n "$next" ] || return 0
    after=$next
  done
}

mkdir saved
: >checked.serials
SAVED_TOTAL=0
IN_FLIGHT=0
round=0
for delay in "${KILL_AFTER[@]}"; do
  round=$((round + 1))
  echo "# round $round: kill -9 ${delay}s after the first complete batch"
  batch_loop "$round" &
  LOOP=$!
  PIDS+=("$LOOP")
  # The kill comes after the first complete answer (however slow the build), then a while later.
  for _ in $(seq 300); do
    compgen -G "saved/$round-*.json" >/dev/null && break
    [ -e "loop-$round.end" ] && break
    sleep 0.1
  done
  sleep "$delay"
  # Aim at a request in flight: once curl is connected (each request has a
  # connection of its own), KILL_INTO later, if that request has no answer yet.
  into=${KILL_INTO[round - 1]}
  for _ in $(seq 100); do
    i=$(cat "current-$round" 2>/dev/null || echo 0)
    [ -n "$(ss -Htn state established "( sport = :$PORT )" 2>/dev/null)" ] || continue
    sleep "$into"
    [ "$(cat "current-$round" 2>/dev/null || echo 0)" = "$i" ] && [ ! -e "saved/$round-$i.json" ] && break
  done
  kill -9 "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  # The loop ends at its first failed request (bounded by curl's --max-time).
  wait "$LOOP" || true
  n=$(compgen -G "saved/$round-*.json" | wc -l || true)
  SAVED_TOTAL=$((SAVED_TOTAL + n))
  ((n > 0)) && pass "round $round: $n batches answered before the kill" \
    || fail "round $round: batches answered before the kill" "$(cat "loop-$round.end" 2>/dev/null)" "$(tail -5 log.txt)"
  echo "# round $round: the loop ended with $(cat "loop-$round.end" 2>/dev/null)"
  # curl exit 7 (connection refused): the kill came between two requests.
  grep -q 'curl exit 7,' "loop-$round.end" 2>/dev/null || IN_FLIGHT=$((IN_FLIGHT + 1))
  compgen -G "saved/*.tmp" >/dev/null && fail "round $round: no partial answer was kept" "$(ls saved/*.tmp)" \
    || pass "round $round: no partial answer was kept"

  # The store, before the server is back: SQLite's own checks (the WAL of the
  # killed process is recovered by this first reader).
  out=$(sqlite3 "$DB" 'PRAGMA integrity_check' 2>&1 || true)
  [ "$out" = ok ] && pass "round $round: PRAGMA integrity_check: ok" \
    || fail "round $round: PRAGMA integrity_check: ok" "$out"
  dups=$(sqlite3 "$DB" 'SELECT serial_hex, ca_id, count(*) FROM certificates GROUP BY serial_hex, ca_id HAVING count(*) > 1' 2>&1 || true)
  [ -z "$dups" ] && pass "round $round: no serial is stored twice (sqlite3)" \
    || fail "round $round: no serial is stored twice (sqlite3)" "$dups"
  # Batch r<R>b<I> made certificates CN=r<R>b<I>-1..40: all of them or none.
  partial=$(sqlite3 "$DB" "SELECT substr(subject, 1, instr(subject, '-') - 1) AS b, count(*) FROM certificates
    WHERE subject LIKE 'CN=r%b%-%' GROUP BY b HAVING count(*) <> $BATCH_SIZE" 2>&1 || true)
  [ -z "$partial" ] && pass "round $round: every batch is in the store whole or not at all" \
    || fail "round $round: every batch is in the store whole or not at all" "$partial"
  in_store=$(sqlite3 "$DB" "SELECT count(*) FROM certificates WHERE subject LIKE 'CN=r%b%-%'")
  audited=$(sqlite3 "$DB" "SELECT count(*) FROM audit WHERE action = 'certificate.batch' AND outcome = 'ok'")
  [ "$((audited * BATCH_SIZE))" = "$in_store" ] \
    && pass "round $round: each stored batch has its audit record ($audited batches, $in_store certificates)" \
    || fail "round $round: each stored batch has its audit record" "$audited audit records, $in_store certificates"
  ((in_store >= SAVED_TOTAL * BATCH_SIZE)) && pass "round $round: the store holds at least the answered batches" \
    || fail "round $round: the store holds at least the answered batches" "$in_store certificates, $SAVED_TOTAL answers"
  out=$("$DEVID" --home home audit verify 2>&1) && pass "round $round: devid audit verify: exit 0" \
    || fail "round $round: devid audit verify: exit 0" "$out"

  # Restart on the same home; every saved answer's serials through the API.
  serve && pass "round $round: the server restarts on the same home" \
    || { fail "round $round: the server restarts on the same home" "$(cat out.txt log.txt)"; finish; }
  if all_serials | sort >listed.serials; then
    pass "round $round: the restarted server lists acme's certificates"
  else
    fail "round $round: the restarted server lists acme's certificates" "$STATUS ${RESP:0:300}"
  fi
  [ "$(wc -l <listed.serials)" = "$((CA_CERTS + in_store))" ] \
    && pass "round $round: the API lists what the store holds ($((CA_CERTS + in_store)))" \
    || fail "round $round: the API lists what the store holds" "$(wc -l <listed.serials) listed, $((CA_CERTS + in_store)) stored"
  missing=0
  bad_bundles=()
  for f in saved/"$round"-*.json; do
    [ -e "$f" ] || continue
    jq -r '.serials[]' "$f" | sort >want.serials
    [ "$(wc -l <want.serials)" = "$BATCH_SIZE" ] || bad_bundles+=("$f: $(wc -l <want.serials) serials in the answer")
    missing=$((missing + $(comm -23 want.serials listed.serials | wc -l)))
    cat want.serials >>checked.serials
    # The bundle: opens with the password; its certificates are the answer's serials.
    jq -r .bundle "$f" | base64 -d >bundle.p12
    # -clcerts: the certificates that come with a key (the chain's CA certificates do not).
    if openssl pkcs12 -in bundle.p12 -passin "pass:$BUNDLE_PW" -nokeys -clcerts -out bundle.pem 2>bundle.err; then
      # Every certificate's serial in one pass (openssl prints 16-byte serials as hex pairs).
      got=$(openssl crl2pkcs7 -nocrl -certfile bundle.pem | openssl pkcs7 -print_certs -text -noout \
        | grep -A1 'Serial Number:' | grep -v 'Serial Number:\|^--' | tr -d ' :' | tr a-f A-F | sort)
      [ "$got" = "$(cat want.serials)" ] || bad_bundles+=("$f: the bundle's serials differ from the answer's")
    else
      bad_bundles+=("$f: openssl pkcs12 could not open it: $(head -c 200 bundle.err)")
    fi
  done
  ((missing == 0)) && pass "round $round: every serial of this round's $n answers is listed by the API" \
    || fail "round $round: every serial of this round's answers is listed by the API" "$missing missing"
  ((${#bad_bundles[@]} == 0)) && pass "round $round: each saved bundle opens and holds exactly its answer's serials" \
    || fail "round $round: each saved bundle opens and holds exactly its answer's serials" "${bad_bundles[@]:0:5}"
  # The earlier rounds' answers are still there after this crash.
  m=$(sort checked.serials | comm -23 - listed.serials | wc -l)
  ((m == 0)) && pass "round $round: all $(wc -l <checked.serials) serials answered so far are still listed" \
    || fail "round $round: all serials answered so far are still listed" "$m missing"
done

((IN_FLIGHT > 0)) && pass "$IN_FLIGHT of ${#KILL_AFTER[@]} kills came while a batch request was in flight" \
  || fail "a kill came while a batch request was in flight" "each loop ended on a refused connection"
[ "$(sort checked.serials | uniq -d | wc -l)" = 0 ] && pass "no serial was answered twice" \
  || fail "no serial was answered twice" "$(sort checked.serials | uniq -d | head -5)"
# The restarted server works: one more batch, then a clean stop.
api POST /orgs/acme/batches "$TOKEN" \
  "{\"ca\":\"devices\",\"template\":\"device\",\"subject\":\"CN=after-{n}\",\"count\":2,\"format\":\"pkcs12\",\"password\":\"$BUNDLE_PW\"}"
[ "$STATUS" = 201 ] && pass "the restarted server issues a batch" || fail "the restarted server issues a batch" "$STATUS ${RESP:0:300}"
kill -TERM "$SERVER"
wait "$SERVER" && pass "the server stops cleanly on SIGTERM" || fail "the server stops cleanly on SIGTERM" "$(tail -5 log.txt)"
out=$("$DEVID" --home home audit verify 2>&1) && pass "devid audit verify at the end: exit 0" \
  || fail "devid audit verify at the end: exit 0" "$out"
[ "$(sqlite3 "$DB" 'PRAGMA integrity_check' 2>&1)" = ok ] && pass "PRAGMA integrity_check at the end: ok" \
  || fail "PRAGMA integrity_check at the end: ok"
echo "# $SAVED_TOTAL batches of $BATCH_SIZE answered over ${#KILL_AFTER[@]} crashes; $SECONDS s"
finish
