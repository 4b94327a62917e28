#!/usr/bin/env bash
# Integration test of the CMS (`devid serve`) on PostgreSQL: two servers on one
# database, issuing concurrently, must behave as one service:
#  1. the set-up through the CLI (roots, issuing CAs, the system admin) on a
#     fresh database of the throwaway cluster the devid_postgres fixture runs;
#  2. two `devid serve` processes; 2 x 4 parallel keep-alive curl loops of CSR
#     issuances plus batches of 20 against both at the same time;
#  3. every issued serial is found through the other server, the certificate
#     count matches the successes, no serial is stored twice, the audit chain
#     verifies and grew by every request;
#  4. a revocation made through one server is what the other's OCSP answers;
#  5. access control holds on this backend too (auditor, another organization).
# Usage: cms_postgres_test.sh PATH/TO/devid URLFILE  (URLFILE: postgresql://... of the cluster)
set -euo pipefail
DEVID=$(realpath "$1")
URLFILE=$2
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
for tool in jq psql curl openssl; do
  command -v "$tool" >/dev/null || { echo "FAIL - $tool is required"; exit 1; }
done
[ -s "$URLFILE" ] || { echo "FAIL - no PostgreSQL URL in $URLFILE (the devid_postgres fixture)"; exit 1; }
BASE_URL=$(head -n 1 "$URLFILE")
export PGCONNECT_TIMEOUT=10
psql_base() { timeout 30 psql -X -q -v ON_ERROR_STOP=1 "$BASE_URL" "$@"; }

enter_scratch_dir
# A database of this run's own, dropped again at exit (after the servers stop:
# they hold connections to it; FORCE ends any that are left).
DB_NAME=devid_cms_pg_$$_$RANDOM
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  psql_base -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
psql_base -c "CREATE DATABASE $DB_NAME" || { echo "FAIL - CREATE DATABASE $DB_NAME on $BASE_URL"; exit 1; }
export DEVID_DB=${BASE_URL%/*}/$DB_NAME
sql() { timeout 30 psql -X -A -t -q -v ON_ERROR_STOP=1 "$DEVID_DB" -c "$1"; }
export DEVID_PASSPHRASE=cms-postgres-test-passphrase
mkdir -m 700 home
echo "# database $DEVID_DB"

# --- 1. set-up with the CLI, on PostgreSQL ------------------------------------
for org in acme globex; do
  Org=${org^}
  ok "CLI on PostgreSQL: root CA of $org" "$DEVID" --home home ca init-root --org "$org" --subject "CN=$Org Root"
  ok "CLI on PostgreSQL: issuing CA devices of $org" "$DEVID" --home home ca init-ica --org "$org" \
    --name devices --subject "CN=$Org Devices"
done
ADMIN_PW=admin-password-0001
echo "$ADMIN_PW" >admin.pw
ok "CLI on PostgreSQL: bootstrap the system admin" "$DEVID" --home home admin bootstrap --user admin \
  --password-file admin.pw
[ "$(sql "SELECT count(*) FROM cas")" = 4 ] && pass "the four CAs are rows in PostgreSQL" \
  || fail "the four CAs are rows in PostgreSQL" "$(sql "SELECT org_id, name FROM cas" 2>&1)"
[ ! -e home/devid.db ] && pass "no SQLite file was made in the home folder" \
  || fail "no SQLite file was made in the home folder"

# --- 2. two servers on the one database ---------------------------------------
# start_server NAME: `devid serve` on a free port, output in NAME.out and NAME.log;
# sets PORT_NAME, URL_NAME and PID_NAME.
start_server() {
  local name=$1 port=""
  "$DEVID" --home home serve --listen 127.0.0.1:0 --threads 4 >"$name.out" 2>"$name.log" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 150); do
    port=$(sed -n 's/.*:\([0-9]*\) (clients.*/\1/p' "$name.out" 2>/dev/null || true)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  printf -v "PID_$name" %s "$pid"
  printf -v "URL_$name" %s "https://127.0.0.1:$port"
  [ -n "$port" ]
}
# The first server makes the TLS identity in home/tls; the second then reads it.
for s in A B; do
  if start_server "$s"; then pass "server $s listens"; else
    fail "server $s listens" "$(cat "$s.out" "$s.log")"; finish
  fi
done
C=(curl -s --max-time 30 --cacert home/tls/ca.pem)
for s in A B; do
  u=URL_$s
  [ "$("${C[@]}" "${!u}/healthz" || true)" = '{"status":"ok"}' ] && pass "server $s answers /healthz" \
    || fail "server $s answers /healthz"
done
[ "$URL_A" != "$URL_B" ] && pass "the two servers are two listeners ($URL_A, $URL_B)" \
  || fail "the two servers are two listeners"

# api URL METHOD PATH TOKEN [BODY]: one request; sets STATUS and RESP.
api() {
  local url=$1 method=$2 path=$3 token=$4 data=${5-}
  local args=(-X "$method" -o resp.body -w '%{http_code}')
  [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
  [ -n "$data" ] && args+=(-H "Content-Type: application/json" --data-binary "$data")
  rm -f resp.body
  LAST="$method $path"
  STATUS=$("${C[@]}" "${args[@]}" "$url/api/v1$path" 2>/dev/null) || STATUS=000
  RESP=$(cat resp.body 2>/dev/null || true)
}
expect() {  # expect DESC STATUS [JQ-FILTER]
  local d=$1 want=$2 filter=${3-}
  if [ "$STATUS" = "$want" ] && { [ -z "$filter" ] || jq -e "$filter" <<<"$RESP" >/dev/null 2>&1; }; then
    pass "$d"
  else
    fail "$d" "$LAST -> $STATUS (want $want${filter:+, $filter})" "${RESP:0:400}"
  fi
}
ERR='(.error.code|type)=="string" and (.error.message|type)=="string"'
login() {  # login URL USER PASSWORD: sets TOKEN
  api "$1" POST /auth/login "" "$(jq -nc --arg u "$2" --arg p "$3" '{username:$u,password:$p}')"
  TOKEN=$(jq -r '.token // empty' <<<"$RESP" 2>/dev/null || true)
}
pem_json() {  # the PEM file as a JSON string (PEM has no quotes or backslashes)
  local p
  p=$(<"$1")
  printf '"%s\\n"' "${p//$'\n'/\\n}"
}

# A session made on A is a session on B: both read the same store.
login "$URL_A" admin "$ADMIN_PW"
expect "login as the system admin on server A" 200 '.token|startswith("devid_")'
ADMIN=$TOKEN
api "$URL_B" GET /orgs "$ADMIN"
expect "server B accepts the session made on server A" 200 '[.organizations[].name]|index("acme")!=null'
api "$URL_A" POST /orgs/acme/tokens "$ADMIN" '{"role":"operator","name":"load A"}'
expect "an operator API token for acme (on A)" 201 '.token|startswith("devid_")'
TOK_A=$(jq -r .token <<<"$RESP")
api "$URL_B" POST /orgs/acme/tokens "$ADMIN" '{"role":"operator","name":"load B"}'
expect "an operator API token for acme (on B)" 201 '.token|startswith("devid_")'
# shellcheck disable=SC2034 # read as ${!tok} by issue_loop and batch_one
TOK_B=$(jq -r .token <<<"$RESP")
api "$URL_A" GET /orgs/acme/cas/devices/chain "$ADMIN"
expect "the chain of acme/devices" 200
echo "$RESP" >chain.pem
api "$URL_A" GET /orgs/acme/cas/devices "$ADMIN"
expect "the certificate of acme/devices" 200 '.certificate|startswith("-----BEGIN CERTIFICATE-----")'
jq -r .certificate <<<"$RESP" >ica.pem

audit_records() {  # the record count `devid audit verify` reports (empty when it fails)
  "$DEVID" --home home audit verify 2>/dev/null | sed -n 's/^audit chain intact: \([0-9]*\) records$/\1/p'
}
AUDIT_BEFORE=$(audit_records)
[ -n "$AUDIT_BEFORE" ] && pass "devid audit verify before the load: $AUDIT_BEFORE records" \
  || fail "devid audit verify before the load" "$("$DEVID" --home home audit verify 2>&1)"
CERTS_BEFORE=$(sql "SELECT count(*) FROM certificates c JOIN organizations o ON o.id=c.org_id WHERE o.name='acme'")

# --- the load: 2 servers x 4 loops x 25 CSR issuances, 2 x 2 batches of 20 ----
LOOPS=4
PER_LOOP=25
BATCHES=2
BATCH_SIZE=20
mkdir csr issue batch
# The CSRs first (one key each), two openssl processes at a time.
gen_csrs() {  # gen_csrs SERVER LOOP
  local i
  for i in $(seq "$PER_LOOP"); do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
      -subj "/CN=dev-$1$2-$i" -out "csr/$1-$2-$i.csr" 2>/dev/null
    printf '{"ca":"devices","template":"device","csr":%s}' "$(pem_json "csr/$1-$2-$i.csr")" \
      >"csr/$1-$2-$i.json"
  done
}
t0=$SECONDS
for s in A B; do
  GEN=()
  for l in $(seq "$LOOPS"); do gen_csrs "$s" "$l" & GEN+=($!); done
  # Not a bare `wait`: that would wait for the servers too.
  for p in "${GEN[@]}"; do wait "$p"; done
done
[ "$(ls csr/*.json | wc -l)" = $((2 * LOOPS * PER_LOOP)) ] && pass "$((2 * LOOPS * PER_LOOP)) CSRs made" \
  || fail "$((2 * LOOPS * PER_LOOP)) CSRs made"
echo "# CSRs made in $((SECONDS - t0)) s"

# issue_loop SERVER LOOP: one curl, PER_LOOP requests on one keep-alive
# connection; each answer in issue/SERVER-LOOP-I.json, its status in the .codes file.
issue_loop() {
  local s=$1 l=$2 url tok i args=()
  url=URL_$s tok=TOK_$s
  for i in $(seq "$PER_LOOP"); do
    ((i > 1)) && args+=(--next)
    args+=(-s --max-time 60 --cacert home/tls/ca.pem -H "Authorization: Bearer ${!tok}"
      -H "Content-Type: application/json" --data-binary "@csr/$s-$l-$i.json"
      -o "issue/$s-$l-$i.json" -w "$s-$l-$i %{http_code} %{num_connects}\n"
      "${!url}/api/v1/orgs/acme/certificates")
  done
  curl "${args[@]}" >"issue/$s-$l.codes" 2>"issue/$s-$l.err" || true
}
batch_one() {  # batch_one SERVER N: one batch of BATCH_SIZE, answer in batch/SERVER-N.json
  local s=$1 n=$2 url tok
  url=URL_$s tok=TOK_$s
  curl -s --max-time 120 --cacert home/tls/ca.pem -H "Authorization: Bearer ${!tok}" \
    -H "Content-Type: application/json" -o "batch/$s-$n.json" -w '%{http_code}' \
    --data-binary "{\"ca\":\"devices\",\"template\":\"device\",\"subject\":\"CN=batch-$s$n-{n}\",\"count\":$BATCH_SIZE,\"format\":\"pkcs12\",\"password\":\"bundle-password-1\"}" \
    "${!url}/api/v1/orgs/acme/batches" >"batch/$s-$n.code" 2>/dev/null || true
}
t0=$SECONDS
LOAD=()
for s in A B; do
  for l in $(seq "$LOOPS"); do issue_loop "$s" "$l" & LOAD+=($!); done
  for n in $(seq "$BATCHES"); do batch_one "$s" "$n" & LOAD+=($!); done
done
for p in "${LOAD[@]}"; do wait "$p" || true; done
LOAD_SECONDS=$((SECONDS - t0))
echo "# load done in $LOAD_SECONDS s"

# The outcome of every request.
cat issue/*.codes >issue.codes 2>/dev/null || true
REQUESTS=$(wc -l <issue.codes)
ISSUED=$(awk '$2==201' issue.codes | wc -l)
[ "$REQUESTS" = $((2 * LOOPS * PER_LOOP)) ] && pass "every CSR request got an answer ($REQUESTS)" \
  || fail "every CSR request got an answer" "$REQUESTS of $((2 * LOOPS * PER_LOOP))" "$(cat issue/*.err | head -5)"
[ "$ISSUED" = "$REQUESTS" ] && pass "every CSR issuance under load: 201 ($ISSUED)" \
  || fail "every CSR issuance under load: 201" "$ISSUED of $REQUESTS" \
    "$(awk '$2!=201' issue.codes | head -5)" \
    "$(for f in $(awk '$2!=201 {print "issue/"$1".json"}' issue.codes | head -3); do head -c 300 "$f"; echo; done)"
# Keep-alive: a loop's requests share a connection or two, not one each.
CONNECTS=$(awk '{n+=$3} END {print n+0}' issue.codes)
((CONNECTS <= 2 * LOOPS * 2)) && pass "the loops reused their connections ($CONNECTS connections for $REQUESTS requests)" \
  || fail "the loops reused their connections" "$CONNECTS connections for $REQUESTS requests"
BATCHED=0
# Every served serial with the server that served it (one jq for all the answers).
: >served.tsv
OK_FILES=$(awk '$2==201 {print "issue/"$1".json"}' issue.codes)
[ -n "$OK_FILES" ] && jq -r '[(input_filename|ltrimstr("issue/")|.[0:1]), .serial]|@tsv' $OK_FILES >>served.tsv
for s in A B; do
  for n in $(seq "$BATCHES"); do
    code=$(cat "batch/$s-$n.code" 2>/dev/null || true)
    if [ "$code" = 201 ] && jq -e ".count==$BATCH_SIZE and (.serials|length)==$BATCH_SIZE" "batch/$s-$n.json" >/dev/null 2>&1; then
      pass "batch $n of $BATCH_SIZE on server $s under load: 201"
      BATCHED=$((BATCHED + BATCH_SIZE))
      jq -r --arg s "$s" '.serials[]|[$s, .]|@tsv' "batch/$s-$n.json" >>served.tsv
    else
      fail "batch $n of $BATCH_SIZE on server $s under load: 201" "$code $(head -c 300 "batch/$s-$n.json" 2>/dev/null)"
    fi
  done
done
cut -f2 served.tsv >served.serials
echo "# $ISSUED CSR issuances, $BATCHED batch certificates"

# --- 3. the store after the load -----------------------------------------------
# Every served serial, asked for through the OTHER server (one keep-alive curl each way).
mkdir found
awk -F'\t' '$1=="A" {print $2 >"ask.B"} $1=="B" {print $2 >"ask.A"}' served.tsv
touch ask.A ask.B
for s in A B; do
  url=URL_$s
  args=()
  while read -r serial; do
    ((${#args[@]} > 0)) && args+=(--next)
    args+=(-s --max-time 30 --cacert home/tls/ca.pem -H "Authorization: Bearer $ADMIN"
      -o "found/$serial.json" "${!url}/api/v1/orgs/acme/certificates?serial=$serial&status=any")
  done <"ask.$s"
  ((${#args[@]} > 0)) && { curl "${args[@]}" || true; }
done
# found/S.json must list exactly S.
: >found.ok
if compgen -G 'found/*.json' >/dev/null; then
  jq -r '[(input_filename|ltrimstr("found/")|rtrimstr(".json")), ([.certificates[]?.serial]|join(","))]|@tsv' \
    found/*.json 2>/dev/null | awk -F'\t' '$1==$2 {print $1}' | sort >found.ok || true
fi
mapfile -t missing < <(comm -23 <(sort served.serials) found.ok)
SERVED=$(wc -l <served.serials)
((${#missing[@]} == 0 && SERVED == ISSUED + BATCHED)) \
  && pass "each of the $SERVED served serials is listed by ?serial= on the other server" \
  || fail "each served serial is listed by ?serial= on the other server" "${#missing[@]} of $SERVED missing" \
    "${missing[@]:0:5}"
[ "$(sort served.serials | uniq -d | wc -l)" = 0 ] && pass "no serial was served twice" \
  || fail "no serial was served twice" "$(sort served.serials | uniq -d | head -5)"

# All of acme's certificates through the API, page by page, on each server.
list_all() {  # list_all URL: every serial of acme, one a line, to stdout
  local after=0 next
  while :; do
    api "$1" GET "/orgs/acme/certificates?status=any&limit=1000&after=$after" "$ADMIN"
    [ "$STATUS" = 200 ] || return 1
    jq -r '.certificates[].serial' <<<"$RESP"
    next=$(jq -r '.next_after // empty' <<<"$RESP")
    [ -n "$next" ] || return 0
    after=$next
  done
}
WANT=$((CERTS_BEFORE + ISSUED + BATCHED))
for s in A B; do
  url=URL_$s
  if list_all "${!url}" >"all.$s"; then
    n=$(wc -l <"all.$s")
    [ "$n" = "$WANT" ] && pass "server $s lists $n certificates of acme: $ISSUED + $BATCHED issued + $CERTS_BEFORE CA certificates" \
      || fail "server $s lists as many certificates as were issued (+ CA certificates)" "$n listed, want $WANT"
  else
    fail "server $s lists acme's certificates" "$STATUS ${RESP:0:300}"
  fi
done
[ -z "$(comm -23 <(sort -u served.serials) <(sort -u all.A))" ] && pass "the full listing holds every served serial" \
  || fail "the full listing holds every served serial" "$(comm -23 <(sort -u served.serials) <(sort -u all.A) | head -5)"
n=$(sql "SELECT count(*) FROM certificates c JOIN organizations o ON o.id=c.org_id WHERE o.name='acme'")
[ "$n" = "$WANT" ] && pass "PostgreSQL holds $n certificates of acme" || fail "PostgreSQL holds $WANT certificates of acme" "$n"
dups=$(sql "SELECT serial_hex, ca_id, count(*) FROM certificates GROUP BY serial_hex, ca_id HAVING count(*) > 1")
[ -z "$dups" ] && pass "no serial is stored twice under one CA (psql)" || fail "no serial is stored twice under one CA" "$dups"
dups=$(sql "SELECT serial_hex, count(*) FROM certificates GROUP BY serial_hex HAVING count(*) > 1")
[ -z "$dups" ] && pass "no serial is stored twice at all (psql)" || fail "no serial is stored twice at all" "$dups"

AUDIT_AFTER=$(audit_records)
if [ -n "$AUDIT_AFTER" ]; then
  pass "devid audit verify after the load (DEVID_DB): $AUDIT_AFTER records"
  # Every issuance and every batch request is a record of its own.
  grew=$((AUDIT_AFTER - ${AUDIT_BEFORE:-0}))
  need=$((REQUESTS + 2 * BATCHES))
  ((grew >= need)) && pass "the audit chain grew by $grew records (>= $need requests)" \
    || fail "the audit chain grew by at least one record a request" "grew by $grew, $need requests"
else
  fail "devid audit verify after the load (DEVID_DB)" "$("$DEVID" --home home audit verify 2>&1)"
fi
api "$URL_B" GET /audit/verify "$ADMIN"
expect "GET /api/v1/audit/verify on server B: ok" 200 '.ok==true'
n=$(sql "SELECT count(*) FROM audit WHERE action='certificate.issue' AND outcome='ok'" 2>/dev/null || echo "?")
[ "$n" = "$ISSUED" ] && pass "the audit has one certificate.issue ok per CSR issuance ($n)" \
  || fail "the audit has one certificate.issue ok per CSR issuance" "$n records, $ISSUED issued"

# --- 4. revoke on A, ask B's OCSP responder ------------------------------------
first=$(awk '$2==201 {print $1; exit}' issue.codes)
if [ -n "$first" ]; then
  R_SERIAL=$(jq -r .serial "issue/$first.json")
  jq -r .certificate "issue/$first.json" >cert.pem
  # ocsp_status URL: cert.pem's status as the responder at URL says it: the
  # answer checked against the request (signature by the CA, nonce), then read
  # for cert.pem's status (and the reason).
  ocsp_status() {
    rm -f ocsp.req ocsp.resp
    openssl ocsp -issuer ica.pem -cert cert.pem -reqout ocsp.req >/dev/null 2>&1
    "${C[@]}" -H 'Content-Type: application/ocsp-request' --data-binary @ocsp.req \
      "$1/ocsp/acme/devices" -o ocsp.resp || true
    openssl ocsp -reqin ocsp.req -respin ocsp.resp -issuer ica.pem -CAfile chain.pem 2>&1 || true
    openssl ocsp -issuer ica.pem -cert cert.pem -respin ocsp.resp -CAfile chain.pem -no_nonce 2>&1 || true
  }
  out=$(ocsp_status "$URL_B")
  grep -q 'cert.pem: good' <<<"$out" && grep -q 'Response verify OK' <<<"$out" && ! grep -qi nonce <<<"$out" \
    && pass "server B's OCSP: $R_SERIAL is good before the revocation" \
    || fail "server B's OCSP: good before the revocation" "$out"
  api "$URL_A" POST "/orgs/acme/certificates/$R_SERIAL/revoke" "$TOK_A" '{"reason":"keyCompromise"}'
  expect "revoke $R_SERIAL on server A" 200 '.status=="revoked"'
  out=$(ocsp_status "$URL_B")
  grep -q 'cert.pem: revoked' <<<"$out" && grep -q 'Response verify OK' <<<"$out" && ! grep -qi nonce <<<"$out" \
    && pass "server B's OCSP says revoked (a signed, verified answer)" \
    || fail "server B's OCSP says revoked" "$out"
  grep -q 'Reason: keyCompromise' <<<"$out" && pass "with reason keyCompromise" \
    || fail "with reason keyCompromise" "$out"
  api "$URL_B" GET "/orgs/acme/certificates?serial=$R_SERIAL&status=revoked" "$ADMIN"
  expect "server B's API lists it as revoked" 200 "[.certificates[].serial]==[\"$R_SERIAL\"]"
  "${C[@]}" "$URL_B/crl/acme/devices.crl" -o devices.crl || true
  openssl crl -inform DER -in devices.crl -noout -text 2>/dev/null | grep -q "Serial Number: $R_SERIAL" \
    && pass "server B's CRL lists it" || fail "server B's CRL lists it" "$(head -c 200 devices.crl | xxd | head -3)"
else
  fail "a certificate to revoke" "no issuance succeeded"
fi

# --- 5. access control on PostgreSQL -------------------------------------------
for u in acme-auditor:acme:auditor globex-operator:globex:operator; do
  IFS=: read -r name org role <<<"$u"
  api "$URL_A" POST "/orgs/$org/users" "$ADMIN" \
    "$(jq -nc --arg u "$name" --arg r "$role" '{username:$u,password:("password-of-"+$u),role:$r}')"
  expect "create user $name ($role)" 201
done
login "$URL_B" acme-auditor password-of-acme-auditor
expect "login as acme-auditor (on B)" 200
AUDITOR=$TOKEN
login "$URL_A" globex-operator password-of-globex-operator
expect "login as globex-operator (on A)" 200
GLOBEX=$TOKEN
COUNT_BEFORE=$(sql "SELECT count(*) FROM certificates")
for s in A B; do
  url=URL_$s
  api "${!url}" POST /orgs/acme/certificates "$AUDITOR" "$(cat csr/A-1-1.json)"
  expect "an auditor issuing on server $s: 403" 403 "$ERR"
  api "${!url}" POST /orgs/acme/batches "$AUDITOR" \
    '{"ca":"devices","template":"device","subject":"CN=x-{n}","count":2,"format":"pkcs12","password":"bundle-password-1"}'
  expect "an auditor issuing a batch on server $s: 403" 403 "$ERR"
  api "${!url}" GET "/orgs/acme/certificates?limit=1" "$AUDITOR"
  expect "the auditor reads acme's certificates on server $s: 200" 200
  api "${!url}" POST /orgs/acme/certificates "$GLOBEX" "$(cat csr/A-1-1.json)"
  expect "a globex operator issuing in acme on server $s: 403" 403 "$ERR"
  api "${!url}" GET /orgs/acme/certificates "$GLOBEX"
  expect "a globex operator reading acme's certificates on server $s: 403" 403 "$ERR"
  api "${!url}" POST "/orgs/acme/certificates/$(sed -n 2p served.serials)/revoke" "$GLOBEX" '{"reason":"superseded"}'
  expect "a globex operator revoking an acme certificate on server $s: 403" 403 "$ERR"
done
[ "$(sql "SELECT count(*) FROM certificates")" = "$COUNT_BEFORE" ] && pass "the denied requests wrote no certificate" \
  || fail "the denied requests wrote no certificate"
n=$(sql "SELECT count(*) FROM revocations")
[ "$n" = 1 ] && pass "the denied revocations wrote nothing (one revocation in all)" \
  || fail "the denied revocations wrote nothing" "$n revocations"
n=$(sql "SELECT count(*) FROM audit WHERE outcome='denied' AND actor IN ('user:acme-auditor','user:globex-operator')" 2>/dev/null || echo "?")
[ "$n" = 10 ] && pass "the 10 denials are in the audit" || fail "the 10 denials are in the audit" "$n"
ok "devid audit verify at the end" "$DEVID" --home home audit verify

for s in A B; do
  url=URL_$s
  [ "$("${C[@]}" "${!url}/healthz" || true)" = '{"status":"ok"}' ] && pass "server $s is up at the end" \
    || fail "server $s is up at the end" "$(tail -5 "$s.log")"
done
for s in A B; do
  pid=PID_$s
  kill -TERM "${!pid}" 2>/dev/null || true
  wait "${!pid}" 2>/dev/null && pass "server $s stops cleanly on SIGTERM" || fail "server $s stops cleanly on SIGTERM" "$(tail -5 "$s.log")"
done
echo "# load: $LOAD_SECONDS s; whole test: $SECONDS s"
finish
