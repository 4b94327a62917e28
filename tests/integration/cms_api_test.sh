#!/usr/bin/env bash
# Integration test of the CMS REST API (/api/v1) that `devid serve` serves,
# with curl, jq and openssl as the peers, over real HTTPS on 127.0.0.1:
#  1. the core flows: login/logout, organizations, users, API tokens, CAs,
#     templates, certificate issue/search/revoke/renew/re-key (the issued
#     certificates verified by `openssl verify` against the served chain),
#     devices, the audit chain (over the API and with `devid audit verify`);
#  2. the access matrix: every endpoint x every role (and no / a garbage
#     token) x own organization / another one, from one table; then proof
#     that the cross-organization requests wrote nothing;
#  3. hostile input: malformed and oversized bodies, bad CSRs, wrong types,
#     injection strings, forged tokens, path traversal: a 4xx JSON error each,
#     the server still up and the store unchanged.
# Usage: cms_api_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
command -v jq >/dev/null || { echo "FAIL - jq is required"; exit 1; }
enter_scratch_dir
export DEVID_PASSPHRASE=cms-api-test-passphrase
mkdir -m 700 home

# --- set-up with the CLI: two organizations, each a root and an issuing CA ----
for org in acme globex; do
  Org=${org^}
  ok "CLI: root CA of $org" "$DEVID" --home home ca init-root --org "$org" --subject "CN=$Org Root"
  ok "CLI: issuing CA devices of $org" "$DEVID" --home home ca init-ica --org "$org" --name devices \
    --subject "CN=$Org Devices"
done
ADMIN_PW=admin-password-0001
echo "$ADMIN_PW" >admin.pw
ok "CLI: bootstrap the system admin" "$DEVID" --home home admin bootstrap --user admin --password-file admin.pw
start_serve "$DEVID" "$PWD/home"
[ -n "$PORT" ] && pass "devid serve listens" || { fail "devid serve listens" "$(cat out.txt log.txt)"; finish; }
C=(curl -s --max-time 15 --cacert home/tls/ca.pem)
API=$URL/api/v1

# api METHOD PATH TOKEN [BODY [CURL-ARGS...]]: one request; sets STATUS and RESP.
# TOKEN "" sends no Authorization header; BODY "@file" sends a file; the body's
# type is $CT (application/json unless a check says otherwise).
CT=application/json
RESP_FILE=resp.body
api() {
  local method=$1 path=$2 token=$3 data=${4-}
  local args=(-X "$method" -o "$RESP_FILE" -w '%{http_code}')
  [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
  [ -n "$data" ] && args+=(-H "Content-Type: $CT" --data-binary "$data")
  args+=("${@:5}")
  rm -f "$RESP_FILE"
  LAST="$method $path"
  STATUS=$("${C[@]}" "${args[@]}" "$API$path" 2>/dev/null) || STATUS=000
  RESP=$(cat "$RESP_FILE" 2>/dev/null || true)
}
# expect DESC STATUS [JQ-FILTER]: the last answer had STATUS and (with a filter)
# its body satisfies `jq -e FILTER`.
expect() {
  local d=$1 want=$2 filter=${3-}
  if [ "$STATUS" = "$want" ] && { [ -z "$filter" ] || jq -e "$filter" <<<"$RESP" >/dev/null 2>&1; }; then
    pass "$d"
  else
    fail "$d" "$LAST -> $STATUS (want $want${filter:+, $filter})" "${RESP:0:400}"
  fi
}
# DESIGN §6: every error is {"error":{"code","message"}}.
ERR='(.error.code|type)=="string" and (.error.message|type)=="string"'
csr() {  # csr NAME SUBJECT: NAME.key and NAME.csr (P-256)
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -subj "$2" \
    -out "$1.csr" 2>/dev/null
}
csr_from_key() {  # csr_from_key NAME KEYFILE SUBJECT: a CSR for an existing key
  openssl req -new -key "$2" -subj "$3" -out "$1.csr" 2>/dev/null
}
# The JSON bodies are made without jq where the matrix needs them: a jq
# process costs ~30 ms, and the matrix makes hundreds of bodies.
pem_json() {  # pem_json FILE: the file as a JSON string (PEM: no quotes or backslashes)
  local p
  p=$(<"$1")
  printf '"%s\\n"' "${p//$'\n'/\\n}"
}
issue_body() {  # issue_body CSRFILE [CA [TEMPLATE]]
  printf '{"ca":"%s","template":"%s","csr":%s}' "${2:-devices}" "${3:-device}" "$(pem_json "$1")"
}
template_json() {  # template_json NAME [VALIDITY-DAYS]: CN sensor-NNNN, P-256, clientAuth
  printf '{"name":"%s","key_types":["P-256"],"subject":{"required":["CN"],"allowed":["CN"],%s' "$1" \
    '"patterns":{"CN":"sensor-[0-9]{4}"}},"key_usage":["digitalSignature"],'
  printf '"extended_key_usage":["clientAuth"],"validity_days":%s,"max_validity_days":60}' "${2:-30}"
}
# Is the last answer a JSON error (bash only, for the same reason)?
is_json_error() { [[ $RESP =~ ^\{\"error\":\{\"code\":\"[a-z_]+\",\"message\":\"[^\"]+\"\}\}$ ]]; }
pubkey() { openssl x509 -noout -pubkey -in "$1"; }
login() {  # login USER PASSWORD: sets TOKEN
  api POST /auth/login "" "$(jq -nc --arg u "$1" --arg p "$2" '{username:$u,password:$p}')"
  TOKEN=$(jq -r '.token // empty' <<<"$RESP" 2>/dev/null || true)
}

# ============================================================================
# 1. Core flows
# ============================================================================
login admin "$ADMIN_PW"
expect "login as the system admin: 200 with a token" 200 '.token|startswith("devid_")'
ADMIN=$TOKEN
expect "the login answer names the role system-admin" 200 '.role=="system-admin"'

api POST /orgs "$ADMIN" '{"name":"initech"}'
expect "create organization initech: 201" 201 '.name=="initech"'
api POST /orgs "$ADMIN" '{"name":"initech"}'
expect "create it again: 409 JSON" 409 "$ERR"
api GET /orgs "$ADMIN"
expect "the system admin lists every organization" 200 \
  '[.organizations[].name]|(index("acme") and index("globex") and index("initech"))'

# One user per role in each organization, each logged in once (Argon2id costs).
declare -A TOK
for org in acme globex; do
  for role in org-admin operator auditor enrollment; do
    u="$org-$role"
    api POST "/orgs/$org/users" "$ADMIN" \
      "$(jq -nc --arg u "$u" --arg p "password-of-$u" --arg r "$role" '{username:$u,password:$p,role:$r}')"
    expect "create user $u ($role): 201" 201 ".username==\"$u\" and .role==\"$role\""
    login "$u" "password-of-$u"
    expect "login as $u: 200" 200 '.token|startswith("devid_")'
    TOK[$org/$role]=$TOKEN
  done
done
login acme-operator wrong-password-123
expect "a wrong password: 401 JSON" 401 "$ERR"
login nobody-at-all some-password-12
expect "an unknown user: 401 JSON" 401 "$ERR"
api POST /orgs/acme/users "$ADMIN" '{"username":"short-pw","password":"elevenchars","role":"auditor"}'
expect "a password under 12 characters: 400" 400 "$ERR"
api POST /orgs/acme/users "$ADMIN" "{\"username\":\"long-pw\",\"password\":\"$(head -c 1025 /dev/zero | tr '\0' p)\",\"role\":\"auditor\"}"
expect "a password over 1024 characters: 400" 400 "$ERR"
api POST /orgs/acme/users "$ADMIN" '{"username":"bad-role","password":"password-12345","role":"superuser"}'
expect "an unknown role: 400" 400 "$ERR"
api POST /orgs/acme/users "$ADMIN" '{"username":"acme-operator","password":"another-password","role":"auditor"}'
expect "a user name taken (user names are global): 409" 409 "$ERR"
api POST /orgs/globex/users "$ADMIN" '{"username":"acme-auditor","password":"another-password","role":"auditor"}'
expect "the same user name in another organization: 409" 409 "$ERR"

# An API token (role operator) for acme; used as a column of the matrix below.
api POST /orgs/acme/tokens "$ADMIN" '{"role":"operator","name":"ci pipeline"}'
expect "create an API token (operator) for acme: 201" 201 '.token|startswith("devid_")'
TOK[acme/api-operator]=$(jq -r .token <<<"$RESP")

# Issue from a CSR and verify the certificate with openssl against the served chain.
csr dev1 /CN=dev-0001
api POST /orgs/acme/certificates "${TOK[acme/operator]}" "$(issue_body dev1.csr)"
expect "issue CN=dev-0001 (operator): 201 with serial and PEM" 201 \
  '(.serial|test("^[0-9A-F]+$")) and (.certificate|startswith("-----BEGIN CERTIFICATE-----")) and .status=="valid"'
S1=$(jq -r .serial <<<"$RESP"); jq -r .certificate <<<"$RESP" >dev1.pem
api GET /orgs/acme/cas/devices/chain "${TOK[acme/auditor]}"
expect "GET the chain of devices: 200" 200
echo "$RESP" >acme-chain.pem
[ "$(grep -c 'BEGIN CERTIFICATE' acme-chain.pem)" = 2 ] && pass "the chain holds the ICA and the root" \
  || fail "the chain holds the ICA and the root" "$RESP"
ok "openssl verify accepts the issued certificate with the served chain" \
  openssl verify -CAfile acme-chain.pem dev1.pem
[ "$(openssl x509 -noout -subject -nameopt RFC2253 -in dev1.pem)" = "subject=CN=dev-0001" ] \
  && pass "the certificate names CN=dev-0001" || fail "the certificate names CN=dev-0001"
has_serial() { jq -e --arg s "$1" '[.certificates[].serial]|index($s)!=null' <<<"$RESP" >/dev/null 2>&1; }
search() {  # search STATUS SERIAL: does ?status=STATUS list SERIAL?
  api GET "/orgs/acme/certificates?status=$1&limit=1000" "${TOK[acme/auditor]}"
  [ "$STATUS" = 200 ] && has_serial "$2"
}
search valid "$S1" && pass "?status=valid lists it" || fail "?status=valid lists it" "$RESP"
if search revoked "$S1"; then fail "?status=revoked does not list it" "$RESP"; else pass "?status=revoked does not list it"; fi
api GET "/orgs/acme/certificates/$S1" "${TOK[acme/auditor]}"
expect "GET the certificate by serial" 200 ".serial==\"$S1\" and (.certificate|length>0)"
api GET "/orgs/acme/certificates/00$S1" "${TOK[acme/auditor]}"
expect "leading zero bytes in a serial are ignored" 200 ".serial==\"$S1\""

# Renew keeps the key; re-key needs a new key with the same subject.
api POST "/orgs/acme/certificates/$S1/renew" "${TOK[acme/operator]}"
expect "renew: 201 with a new serial" 201 ".serial!=\"$S1\" and .status==\"valid\""
S2=$(jq -r .serial <<<"$RESP"); jq -r .certificate <<<"$RESP" >dev1-renewed.pem
[ "$(pubkey dev1.pem)" = "$(pubkey dev1-renewed.pem)" ] && pass "the renewed certificate has the same public key" \
  || fail "the renewed certificate has the same public key"
ok "openssl verify accepts the renewed certificate" openssl verify -CAfile acme-chain.pem dev1-renewed.pem
csr dev1b /CN=dev-0001
api POST "/orgs/acme/certificates/$S2/rekey" "${TOK[acme/operator]}" \
  "$(jq -nc --rawfile csr dev1b.csr '{csr:$csr, revoke_old:true}')"
expect "re-key with a new key, revoke_old: 201" 201 ".serial!=\"$S2\""
S3=$(jq -r .serial <<<"$RESP"); jq -r .certificate <<<"$RESP" >dev1-rekeyed.pem
[ "$(pubkey dev1-rekeyed.pem)" = "$(openssl pkey -in dev1b.key -pubout)" ] \
  && pass "the re-keyed certificate carries the new key" || fail "the re-keyed certificate carries the new key"
search revoked "$S2" && pass "re-key with revoke_old revoked the old certificate" \
  || fail "re-key with revoke_old revoked the old certificate" "$RESP"
csr_from_key dev1c dev1b.key /CN=dev-0001
api POST "/orgs/acme/certificates/$S3/rekey" "${TOK[acme/operator]}" "$(jq -nc --rawfile csr dev1c.csr '{csr:$csr}')"
expect "re-key with the same key: 422" 422 "$ERR"
csr other /CN=dev-9999
api POST "/orgs/acme/certificates/$S3/rekey" "${TOK[acme/operator]}" "$(jq -nc --rawfile csr other.csr '{csr:$csr}')"
expect "re-key with another subject: 422" 422 "$ERR"

# Revoke.
api POST "/orgs/acme/certificates/$S1/revoke" "${TOK[acme/operator]}" '{"reason":"keyCompromise"}'
expect "revoke (keyCompromise): 200" 200 '.status=="revoked" and .reason=="keyCompromise"'
search revoked "$S1" && pass "?status=revoked now lists it" || fail "?status=revoked now lists it" "$RESP"
if search valid "$S1"; then fail "?status=valid no longer lists it" "$RESP"; else pass "?status=valid no longer lists it"; fi
api POST "/orgs/acme/certificates/$S1/revoke" "${TOK[acme/operator]}" '{"reason":"keyCompromise"}'
expect "revoke it again: 409 JSON" 409 "$ERR"
api POST "/orgs/acme/certificates/$S1/renew" "${TOK[acme/operator]}"
expect "renew a revoked certificate: 422" 422 "$ERR"
api POST "/orgs/acme/certificates/$S1/revoke" "${TOK[acme/operator]}" '{"reason":"certificateHold"}'
expect "certificateHold is refused (revocations are permanent): 4xx" 400 "$ERR"

# Templates.
api POST /orgs/acme/templates "${TOK[acme/org-admin]}" "$(template_json sensor 30)"
expect "create template sensor (org-admin): 201" 201 '.name=="sensor"'
api POST /orgs/acme/templates "${TOK[acme/org-admin]}" "$(template_json sensor 30)"
expect "create it again: 409" 409 "$ERR"
api POST /orgs/acme/templates "${TOK[acme/org-admin]}" "$(template_json device 30)"
expect "a template named like a built-in: 409" 409 "$ERR"
csr sensor1 /CN=sensor-0001
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body sensor1.csr devices sensor)"
expect "issue CN=sensor-0001 with template sensor (enrollment): 201" 201 '.template=="sensor"'
jq -r .certificate <<<"$RESP" >sensor1.pem
days=$(( ($(date -d "$(openssl x509 -noout -enddate -in sensor1.pem | cut -d= -f2)" +%s) - $(date +%s)) / 86400 ))
((days >= 29 && days <= 30)) && pass "the sensor certificate is valid 30 days" || fail "the sensor certificate is valid 30 days" "$days"
openssl x509 -noout -ext extendedKeyUsage -in sensor1.pem 2>/dev/null | grep -q 'TLS Web Client Authentication' \
  && pass "the sensor certificate has EKU clientAuth" || fail "the sensor certificate has EKU clientAuth"
csr bad /CN=bad
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body bad.csr devices sensor)"
expect "CN=bad against the sensor pattern: 422" 422 "$ERR"
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" \
  "$(issue_body sensor1.csr devices sensor | jq -c '.days=61')"
expect "more days than max_validity_days: 422" 422 "$ERR"
# A CA template through the API would let an enrollment token mint a sub-CA.
for t in ica root; do
  api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body dev1.csr devices "$t")"
  expect "issuing with the CA template $t: refused (422)" 422 "$ERR"
done
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body dev1.csr devices nosuch)"
expect "issuing with an unknown template: 404" 404 "$ERR"
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body dev1.csr nosuch)"
expect "issuing from an unknown CA: 404" 404 "$ERR"
api GET /orgs/acme/templates/sensor "${TOK[acme/auditor]}"
expect "GET template sensor" 200 '.name=="sensor" and .validity_days==30'
api PUT /orgs/acme/templates/sensor "${TOK[acme/org-admin]}" "$(template_json sensor 20)"
expect "PUT template sensor (20 days): 200" 200 '.validity_days==20'
api GET /orgs/acme/templates/sensor "${TOK[acme/auditor]}"
expect "GET shows the update" 200 '.validity_days==20'
api PUT /orgs/acme/templates/sensor "${TOK[acme/org-admin]}" "$(template_json other 20)"
expect "PUT with another name in the body: 400" 400 "$ERR"
api PUT /orgs/acme/templates/other "${TOK[acme/org-admin]}" "$(template_json other 20)"
expect "PUT a template that does not exist: 404" 404 "$ERR"
# Another organization's template is not this one's.
api POST /orgs/globex/templates "$ADMIN" "$(template_json gx-only)"
expect "create template gx-only in globex: 201" 201
csr gx /CN=sensor-0002
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body gx.csr devices gx-only)"
expect "issuing in acme with globex's template: 404" 404 "$ERR"
api GET /orgs/acme/templates "${TOK[acme/auditor]}"
expect "the template list has the built-ins and sensor" 200 \
  '[.templates[]|select(.builtin==false)|.name]==["sensor"] and ([.templates[].name]|index("device")!=null)'
api DELETE /orgs/acme/templates/sensor "${TOK[acme/org-admin]}"
expect "DELETE template sensor: 200" 200
api GET /orgs/acme/templates/sensor "${TOK[acme/auditor]}"
expect "then GET it: 404" 404 "$ERR"
api GET /orgs/globex/templates/sensor "$ADMIN"
expect "another organization never had it: 404" 404 "$ERR"

# Devices.
api POST /orgs/acme/devices "${TOK[acme/operator]}" '{"identifier":"dev-0001"}'
expect "create device dev-0001: 201" 201 '.identifier=="dev-0001" and .status=="active"'
api POST /orgs/acme/devices "${TOK[acme/operator]}" '{"identifier":"dev-0001"}'
expect "create it again: 409" 409 "$ERR"
api GET /orgs/acme/devices/dev-0001 "${TOK[acme/auditor]}"
expect "GET dev-0001 lists its three certificates" 200 \
  "([.certificates[].serial]|sort)==([\"$S1\",\"$S2\",\"$S3\"]|sort)"
CT="application/json; charset=utf-8"
api POST /orgs/acme/devices "${TOK[acme/operator]}" '{"identifier":"dev-0002"}'
expect "a JSON body with a charset parameter is JSON: 201" 201 '.identifier=="dev-0002"'
CT=application/json
api PATCH /orgs/acme/devices/dev-0001 "${TOK[acme/operator]}" '{"status":"disabled"}'
expect "PATCH status disabled: 200" 200 '.status=="disabled"'
api PATCH /orgs/acme/devices/dev-0001 "${TOK[acme/operator]}" '{"status":"stolen"}'
expect "PATCH an unknown status: 400" 400 "$ERR"
api GET /orgs/acme/devices "${TOK[acme/auditor]}"
expect "the device list shows it disabled" 200 '.devices[]|select(.identifier=="dev-0001")|.status=="disabled"'
api GET /orgs/acme/devices/dev-4242 "${TOK[acme/auditor]}"
expect "an unknown device: 404" 404 "$ERR"
api PATCH /orgs/acme/devices/dev-4242 "${TOK[acme/operator]}" '{"status":"disabled"}'
expect "PATCH an unknown device: 404" 404 "$ERR"

# CAs.
api GET /orgs/acme/cas "${TOK[acme/auditor]}"
expect "GET /cas lists root and devices" 200 \
  '([.cas[].name]|sort)==["devices","root"] and (.cas[]|select(.name=="devices")|.parent=="root")'
api GET /orgs/acme/cas/devices "${TOK[acme/auditor]}"
expect "GET /cas/devices: an ICA with its certificate" 200 '.kind=="ica" and (.certificate|length>0)'
api POST /orgs/acme/cas "${TOK[acme/org-admin]}" '{"name":"fleet2","subject":"CN=Acme Fleet 2"}'
expect "create CA fleet2: 201, an ICA under root" 201 '.name=="fleet2" and .kind=="ica" and .parent=="root"'
api POST /orgs/acme/cas "${TOK[acme/org-admin]}" '{"name":"fleet2","subject":"CN=Acme Fleet 2"}'
expect "create it again: 409" 409 "$ERR"
csr fleet /CN=fleet-0001
api POST /orgs/acme/certificates "${TOK[acme/operator]}" "$(issue_body fleet.csr fleet2)"
expect "issue from fleet2: 201" 201 '.ca=="fleet2"'
jq -r .certificate <<<"$RESP" >fleet.pem
api GET /orgs/acme/cas/fleet2/chain "${TOK[acme/auditor]}"
echo "$RESP" >fleet-chain.pem
ok "openssl verify: the fleet2 certificate chains to the acme root" openssl verify -CAfile fleet-chain.pem fleet.pem
api POST /orgs/acme/cas/fleet2/disable "${TOK[acme/org-admin]}"
expect "disable fleet2: 200" 200 '.disabled==true'
api POST /orgs/acme/certificates "${TOK[acme/operator]}" "$(issue_body fleet.csr fleet2)"
expect "issue from the disabled fleet2: 422" 422 "$ERR"
api POST /orgs/acme/cas/nosuch/disable "${TOK[acme/org-admin]}"
expect "disable an unknown CA: 404" 404 "$ERR"

# API tokens: listed, used, deleted, then refused.
api POST /orgs/acme/tokens "${TOK[acme/org-admin]}" '{"role":"enrollment","name":"factory line 1"}'
expect "create an enrollment API token (org-admin): 201" 201 '.role=="enrollment" and (.token|startswith("devid_"))'
ENROLL_TOKEN=$(jq -r .token <<<"$RESP"); ENROLL_ID=$(jq -r .id <<<"$RESP")
csr line1 /CN=line1-0001
api POST /orgs/acme/certificates "$ENROLL_TOKEN" "$(issue_body line1.csr)"
expect "the API token issues a certificate: 201" 201
api GET /orgs/acme/tokens "${TOK[acme/org-admin]}"
expect "the token list shows it, without its secret" 200 \
  ".tokens[]|select(.id==$ENROLL_ID)|(.name==\"factory line 1\" and .revoked==false and has(\"token\")==false)"
api GET /orgs/globex/tokens "$ADMIN"
expect "globex's token list does not show acme's token" 200 "[.tokens[].id]|index($ENROLL_ID)==null"
api DELETE "/orgs/globex/tokens/$ENROLL_ID" "$ADMIN"
expect "DELETE acme's token through globex's URL: 404" 404 "$ERR"
api POST /orgs/acme/certificates "$ENROLL_TOKEN" "$(issue_body line1.csr)"
expect "... and the token still works" 201
api DELETE "/orgs/acme/tokens/$ENROLL_ID" "${TOK[acme/org-admin]}"
expect "DELETE the token: 200" 200 '.revoked==true'
api POST /orgs/acme/certificates "$ENROLL_TOKEN" "$(issue_body line1.csr)"
expect "the deleted token: 401 JSON" 401 "$ERR"
api DELETE "/orgs/acme/tokens/$ENROLL_ID" "${TOK[acme/org-admin]}"
expect "DELETE it again: 404" 404 "$ERR"
api POST /orgs/acme/tokens "${TOK[acme/org-admin]}" '{"role":"system-admin","name":"escalate"}'
expect "an org-admin cannot mint a system-admin token: 400" 400 "$ERR"
api POST /orgs/acme/users "${TOK[acme/org-admin]}" '{"username":"acme-root","password":"password-12345","role":"system-admin"}'
expect "an org-admin cannot create a system admin: 400" 400 "$ERR"

# Logout ends that session only.
login acme-auditor password-of-acme-auditor
SECOND=$TOKEN
api POST /auth/logout "$SECOND"
expect "logout: 200" 200
api GET /orgs/acme "$SECOND"
expect "the ended session: 401" 401 "$ERR"
api GET /orgs/acme "${TOK[acme/auditor]}"
expect "the user's other session still works" 200 '.name=="acme"'
login admin "$ADMIN_PW"
ADMIN2=$TOKEN
api POST /auth/logout "$ADMIN2"
expect "a system admin's logout: 200" 200
api GET /orgs "$ADMIN2"
expect "the system admin's ended session: 401" 401 "$ERR"

# A batch of CSRs (figure 2, keys made on chips): all signed in one transaction, in order.
csr bc1 /CN=batch-chip-1
csr bc2 /CN=batch-chip-2
api GET "/orgs/acme/certificates?status=any&limit=1000" "$ADMIN"
before=$(jq '.certificates|length' <<<"$RESP")
api POST /orgs/acme/batches/csrs "${TOK[acme/operator]}" \
  "{\"ca\":\"devices\",\"template\":\"device\",\"csrs\":[$(pem_json bc1.csr),$(pem_json bc2.csr)]}"
expect "batch of 2 CSRs: 201, in request order" 201 \
  '.count==2 and (.certificates[0].subject|test("batch-chip-1")) and (.certificates[1].subject|test("batch-chip-2"))'
jq -r '.certificates[1].certificate' <<<"$RESP" >bc2.pem
jq -r '.chain' <<<"$RESP" >bc-chain.pem
ok "the batch's second certificate verifies with the chain it came with" \
  openssl verify -partial_chain -CAfile bc-chain.pem bc2.pem
[ "$(openssl x509 -in bc2.pem -noout -pubkey)" = "$(openssl pkey -in bc2.key -pubout)" ] \
  && pass "the batch certificate carries the CSR's key" || fail "the batch certificate carries the CSR's key"
printf -- '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' >broken.csr
api POST /orgs/acme/batches/csrs "${TOK[acme/operator]}" \
  "{\"ca\":\"devices\",\"template\":\"device\",\"csrs\":[$(pem_json bc1.csr),$(pem_json broken.csr)]}"
expect "a batch with one broken CSR: 400 naming it" 400 "$ERR and (.error.message|test(\"csrs\\\\[1\\\\]\"))"
api POST /orgs/acme/batches/csrs "${TOK[acme/operator]}" '{"ca":"devices","template":"device","csrs":[]}'
expect "an empty batch: 400" 400 "$ERR"
api GET "/orgs/acme/certificates?status=any&limit=1000" "$ADMIN"
[ "$(jq '.certificates|length' <<<"$RESP")" = $((before + 2)) ] \
  && pass "the refused batches issued nothing (all or none)" \
  || fail "the refused batches issued nothing (all or none)" "before $before, now $(jq '.certificates|length' <<<"$RESP")"

# What an enrolment credential may obtain: client certificates, for a device
# name not enrolled with another key.
csr enr-srv /CN=hub.example
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body enr-srv.csr devices server)"
expect "an enrolment credential cannot get a server certificate: 422" 422 "$ERR"
csr enr-a /CN=enrolled-dev
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body enr-a.csr)"
expect "an enrolment credential enrols a new device name: 201" 201
csr_from_key enr-a2 enr-a.key /CN=enrolled-dev
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body enr-a2.csr)"
expect "... and the same device again with the same key: 201" 201
csr enr-b /CN=enrolled-dev
api POST /orgs/acme/certificates "${TOK[acme/enrollment]}" "$(issue_body enr-b.csr)"
expect "... but not a device enrolled with another key: 409" 409 "$ERR"' and (.error.message|test("simplereenroll"))'
api POST /orgs/acme/certificates "${TOK[acme/operator]}" "$(issue_body enr-b.csr)"
expect "an operator may still issue for that name (a re-key by hand): 201" 201

# Just-in-time registration (the hub): a connection creates the device and stamps it.
api POST /orgs/acme/devices/jit-dev-1/connections "${TOK[acme/operator]}" '{}'
expect "a first connection registers the device: 200, active, first_seen set" 200 \
  '.identifier=="jit-dev-1" and .status=="active" and .first_seen!=null and .last_seen!=null'
api POST /orgs/acme/devices/jit-dev-1/connections "${TOK[acme/auditor]}" '{}'
expect "an auditor cannot record connections: 403" 403 "$ERR"
api POST "/orgs/acme/devices/bad%20id/connections" "${TOK[acme/operator]}" '{}'
expect "a device id with a space: 400" 400 "$ERR"

api GET /openapi.yaml ""
expect "GET /api/v1/openapi.yaml: 200" 200
grep -q '^openapi:' resp.body && pass "the OpenAPI document is YAML" || fail "the OpenAPI document is YAML" "${RESP:0:200}"

# ============================================================================
# 2. The access matrix
# ============================================================================
echo "# the access matrix starts after ${SECONDS}s"
declare -A SPARE_TOKEN SPARE_SERIAL
# Fixtures each organization's cells may point at: a user, a token, a CA, a
# template, a certificate and a device that denied cells must leave alone.
for org in acme globex; do
  api POST "/orgs/$org/users" "$ADMIN" "{\"username\":\"$org-spare\",\"password\":\"spare-password-1\",\"role\":\"auditor\"}"
  expect "fixture: user $org-spare" 201
  login "$org-spare" spare-password-1
  TOK[$org/spare]=$TOKEN
  api POST "/orgs/$org/tokens" "$ADMIN" '{"role":"auditor","name":"spare"}'
  expect "fixture: an API token of $org" 201
  SPARE_TOKEN[$org]=$(jq -r .id <<<"$RESP")
  api POST "/orgs/$org/cas" "$ADMIN" '{"name":"spare-ca","subject":"CN=Spare"}'
  expect "fixture: CA spare-ca of $org" 201
  api POST "/orgs/$org/templates" "$ADMIN" "$(template_json spare-tpl)"
  expect "fixture: template spare-tpl of $org" 201
  csr "spare-$org" /CN=spare-cert
  api POST "/orgs/$org/certificates" "$ADMIN" "$(issue_body "spare-$org.csr")"
  expect "fixture: a certificate of $org" 201
  SPARE_SERIAL[$org]=$(jq -r .serial <<<"$RESP")
  api POST "/orgs/$org/devices" "$ADMIN" '{"identifier":"spare-dev"}'
  expect "fixture: device spare-dev of $org" 201
done

# The table: METHOD PATH ACTION BODY SUCCESS. ACTION names the permission
# (RoleAllows in src/cms/api.cc); BODY what to send; SUCCESS the status an
# allowed call answers with the valid body sent.
MATRIX='
GET    /orgs                                     org.read    -        200
POST   /orgs                                     org.create  org      201
GET    /orgs/{org}                               org.read    -        200
POST   /orgs/{org}/users                         user        user     201
GET    /orgs/{org}/users                         user        -        200
POST   /orgs/{org}/users/{user}/disable          user        -        200
POST   /orgs/{org}/tokens                        token       token    201
GET    /orgs/{org}/tokens                        token       -        200
DELETE /orgs/{org}/tokens/{token}                token       -        200
GET    /orgs/{org}/cas                           ca.read     -        200
GET    /orgs/{org}/cas/{ca}                      ca.read     -        200
GET    /orgs/{org}/cas/{ca}/chain                ca.read     -        200
POST   /orgs/{org}/cas                           ca.manage   ca       201
POST   /orgs/{org}/cas/{ca}/disable              ca.manage   -        200
GET    /orgs/{org}/templates                     tpl.read    -        200
GET    /orgs/{org}/templates/{tpl}               tpl.read    -        200
POST   /orgs/{org}/templates                     tpl.manage  tpl      201
PUT    /orgs/{org}/templates/{tpl}               tpl.manage  tplput   200
DELETE /orgs/{org}/templates/{tpl}               tpl.manage  -        200
POST   /orgs/{org}/certificates                  cert.issue  issue    201
GET    /orgs/{org}/certificates                  cert.read   -        200
GET    /orgs/{org}/certificates/{serial}         cert.read   -        200
POST   /orgs/{org}/certificates/{serial}/revoke  cert.manage revoke   200
POST   /orgs/{org}/certificates/{serial}/renew   cert.manage -        201
POST   /orgs/{org}/certificates/{serial}/rekey   cert.manage rekey    201
POST   /orgs/{org}/batches/csrs                  cert.manage csrbatch 201
GET    /orgs/{org}/devices                       dev.read    -        200
POST   /orgs/{org}/devices                       dev.manage  device   201
GET    /orgs/{org}/devices/{device}              dev.read    -        200
PATCH  /orgs/{org}/devices/{device}              dev.manage  devpatch 200
POST   /orgs/{org}/devices/{device}/connections  dev.manage  -        200
GET    /orgs/{org}/audit                         audit       -        200
GET    /orgs/{org}/audit/verify                  audit       -        200
GET    /audit                                    audit       -        200
GET    /audit/verify                             audit       -        200
'
ROLES=(system-admin org-admin operator auditor enrollment api-operator none garbage)
TOK[acme/system-admin]=$ADMIN
TOK[acme/none]=""
TOK[acme/garbage]=garbage

role_allows() {  # role_allows ROLE ACTION: RoleAllows of api.cc
  case $1 in
    system-admin) return 0 ;;
    org-admin) [ "$2" != org.create ] ;;
    operator | api-operator) [[ " org.read ca.read tpl.read cert.read cert.issue cert.manage dev.read dev.manage " == *" $2 "* ]] ;;
    auditor) [[ " org.read ca.read tpl.read cert.read dev.read audit " == *" $2 "* ]] ;;
    enrollment) [ "$2" = cert.issue ] ;;
    *) return 1 ;;
  esac
}
verdict() {  # verdict ROLE SCOPE(own|other|none) ACTION: WANT=allowed, 401 or 403
  WANT=403
  case $1 in none | garbage) WANT=401; return ;; esac
  if [ "$1" = system-admin ]; then WANT=allowed; return; fi
  # An organization's caller never acts in another one.
  if [ "$2" = other ]; then return; fi
  # Routes without {org} (the whole audit chain, creating organizations) are
  # the system's; listing organizations is open to readers.
  if [ "$2" = none ] && [ "$3" != org.read ]; then return; fi
  if role_allows "$1" "$3"; then WANT=allowed; fi
}

# cell ROLE ORG METHOD PATH ACTION BODY SUCCESS: one request, one verdict
# (cell number N). An allowed cell gets fresh resources to consume (a
# certificate to revoke, a token to delete...), made by the system admin; a
# denied one points at the fixtures, which must survive it.
cell() {
  local role=$1 org=$2 method=$3 path=$4 action=$5 kind=$6 success=$7
  local scope want token serial body="" cn
  if [[ $path != *"{org}"* ]]; then scope=none
  elif [ "$role" = system-admin ] || [ "$org" = acme ]; then scope=own
  else scope=other; fi
  verdict "$role" "$scope" "$action"
  want=$WANT
  token=${TOK[acme/$role]}
  serial=${SPARE_SERIAL[$org]}
  cn=spare-cert
  if [ "$want" = allowed ] && [[ $path == *"{serial}"* && $method == POST ]]; then
    cn=cell-$N
    csr "cell$N" "/CN=$cn"
    api POST "/orgs/$org/certificates" "$ADMIN" "$(issue_body "cell$N.csr")"
    [[ $RESP =~ \"serial\":\"([0-9A-F]+)\" ]] && serial=${BASH_REMATCH[1]}
  fi
  local tokid=${SPARE_TOKEN[$org]} ca=spare-ca tpl=spare-tpl
  if [ "$want" = allowed ]; then
    case "$method $path" in
      "DELETE "*"{token}")
        api POST "/orgs/$org/tokens" "$ADMIN" '{"role":"auditor","name":"doomed"}'
        [[ $RESP =~ \"id\":([0-9]+) ]] && tokid=${BASH_REMATCH[1]} ;;
      *"{ca}/disable")
        ca=cell-ca-$N
        api POST "/orgs/$org/cas" "$ADMIN" "{\"name\":\"$ca\",\"subject\":\"CN=Cell CA $N\"}" ;;
      "DELETE "*"{tpl}")
        tpl=cell-tpl-$N
        api POST "/orgs/$org/templates" "$ADMIN" "$(template_json "$tpl")" ;;
    esac
  fi
  path=${path//\{org\}/$org}; path=${path//\{serial\}/$serial}; path=${path//\{token\}/$tokid}
  path=${path//\{ca\}/$ca}; path=${path//\{tpl\}/$tpl}; path=${path//\{user\}/$org-spare}
  path=${path//\{device\}/spare-dev}
  case $kind in
    org) body="{\"name\":\"cell-org-$N\"}" ;;
    user) body="{\"username\":\"cell-user-$N\",\"password\":\"cell-password-$N\",\"role\":\"auditor\"}" ;;
    token) body="{\"role\":\"enrollment\",\"name\":\"cell $N\"}" ;;
    ca) body="{\"name\":\"cell-ca-$N\",\"subject\":\"CN=Cell CA $N\"}" ;;
    tpl) body=$(template_json "cell-tpl-$N") ;;
    # A denied cell's body differs from an allowed one's, so its write would show.
    tplput) [ "$want" = allowed ] && body=$(template_json "$tpl" 25) || body=$(template_json "$tpl" 26) ;;
    # Denied cells send a CSR made once: the request is refused before it is read.
    issue) [ "$want" = allowed ] && csr "cell$N" "/CN=cell-$N" || cp dev1.csr "cell$N.csr"
      body=$(issue_body "cell$N.csr") ;;
    csrbatch) [ "$want" = allowed ] && csr "cell$N" "/CN=cell-$N" || cp dev1.csr "cell$N.csr"
      body="{\"ca\":\"devices\",\"template\":\"device\",\"csrs\":[$(pem_json "cell$N.csr")]}" ;;
    revoke) body='{"reason":"superseded"}' ;;
    rekey) [ "$want" = allowed ] && csr "rekey$N" "/CN=$cn" || cp dev1.csr "rekey$N.csr"
      body="{\"csr\":$(pem_json "rekey$N.csr")}" ;;
    device) body="{\"identifier\":\"cell-dev-$N\"}" ;;
    devpatch) [ "$want" = allowed ] && body='{"status":"active"}' || body='{"status":"disabled"}' ;;
  esac
  api "$method" "$path" "$token" "$body"
  local d="matrix: $method $4 as $role in ${org}"; [ "$scope" = none ] && d="matrix: $method $4 as $role"
  case $want in
    allowed)
      if ((STATUS >= 200 && STATUS < 500)) && [ "$STATUS" != 401 ] && [ "$STATUS" != 403 ]; then
        pass "$d: allowed ($STATUS)"
        [ "$STATUS" = "$success" ] || echo "$d: $STATUS, not $success: ${RESP:0:200}" >>wrong-success.txt
      else
        fail "$d: allowed" "$LAST -> $STATUS" "${RESP:0:300}"
      fi ;;
    *)
      if [ "$STATUS" = "$want" ] && is_json_error; then pass "$d: denied ($STATUS)"
      else fail "$d: denied with $want" "$LAST -> $STATUS" "${RESP:0:300}"; fi ;;
  esac
}

# Most of a request's time is spent waiting on the loopback (the server sends
# the headers and the body in two segments without TCP_NODELAY: ~40 ms of
# delayed ACK each), so cells run JOBS at a time, each in a subshell writing
# its verdicts to cell.N.out; `collect` counts them here, in cell order.
JOBS=4
N=0
CELL_PIDS=()
spawn() {  # spawn CELL-ARGS...
  N=$((N + 1))
  if ((${#CELL_PIDS[@]} >= JOBS)); then
    local done_pid
    wait -n -p done_pid "${CELL_PIDS[@]}" || true
    local keep=() p
    for p in "${CELL_PIDS[@]}"; do [ "$p" = "$done_pid" ] || keep+=("$p"); done
    CELL_PIDS=("${keep[@]}")
  fi
  (RESP_FILE=resp.$N; cell "$@" || true) >"cell.$N.out" 2>&1 &
  CELL_PIDS+=($!)
}
collect() {  # collect: wait for every cell; their verdicts join the count
  local p line i
  for p in "${CELL_PIDS[@]}"; do wait "$p" || true; done
  CELL_PIDS=()
  for ((i = COLLECTED + 1; i <= N; i++)); do
    while IFS= read -r line; do
      case $line in
        "ok - "*) CHECKS=$((CHECKS + 1)) ;;
        "FAIL - "*) CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)) ;;
      esac
      echo "$line"
    done <"cell.$i.out"
  done
  COLLECTED=$N
}
COLLECTED=0
: >wrong-success.txt

# What globex holds, as the system admin sees it.
globex_state() {
  local p
  for p in "certificates?status=any&limit=1000" users tokens cas templates devices; do
    api GET "/orgs/globex/$p" "$ADMIN"
    echo "$p $STATUS"
    jq -S -c 'del(.. | .last_seen?, .first_seen?)' <<<"$RESP" 2>/dev/null || echo "$RESP"
  done
}
globex_state >globex.before
# Phase 1: every cross-organization cell (and the anonymous ones) against
# globex, before any allowed write there.
while read -r method path action kind success; do
  if [ -z "$method" ] || [[ $path != *"{org}"* ]]; then continue; fi
  for role in "${ROLES[@]}"; do
    [ "$role" = system-admin ] || spawn "$role" globex "$method" "$path" "$action" "$kind" "$success"
  done
done <<<"$MATRIX"
collect
globex_state >globex.after
echo "# phase 2 of the matrix starts after ${SECONDS}s"
diff globex.before globex.after >globex.diff && pass "zero cross-organization writes: globex unchanged" \
  || fail "zero cross-organization writes: globex unchanged" "$(head -c 2000 globex.diff)"
# Phase 2: the own organization for every role, the system admin in globex,
# and the routes without an organization.
while read -r method path action kind success; do
  if [ -z "$method" ]; then continue; fi
  for role in "${ROLES[@]}"; do
    spawn "$role" acme "$method" "$path" "$action" "$kind" "$success"
  done
  if [[ $path == *"{org}"* ]]; then spawn system-admin globex "$method" "$path" "$action" "$kind" "$success"; fi
done <<<"$MATRIX"
collect
if [ ! -s wrong-success.txt ]; then pass "every allowed matrix cell answered its success status"
else fail "every allowed matrix cell answered its success status" "$(cat wrong-success.txt)"; fi

# The fixtures survived the denied cells in acme (the allowed ones used fresh resources).
api GET "/orgs/acme/certificates/${SPARE_SERIAL[acme]}" "$ADMIN"
expect "denied cells did not revoke acme's fixture certificate" 200 '.status=="valid"'
api GET /orgs/acme/cas/spare-ca "$ADMIN"
expect "denied cells did not disable acme's fixture CA" 200 '.disabled==false'
api GET /orgs/acme/tokens "$ADMIN"
expect "denied cells did not revoke acme's fixture token" 200 ".tokens[]|select(.id==${SPARE_TOKEN[acme]})|.revoked==false"
api GET /orgs/acme/templates/spare-tpl "$ADMIN"
expect "denied cells did not change acme's fixture template" 200 '.validity_days==25'
api GET /orgs/acme/devices/spare-dev "$ADMIN"
expect "denied cells did not disable acme's fixture device" 200 '.status=="active"'
# The matrix disabled acme-spare (and globex-spare): its session ended with it.
api GET /orgs/acme "${TOK[acme/spare]}"
expect "the session of a user disabled meanwhile: 401" 401 "$ERR"
login acme-spare spare-password-1
expect "a disabled user cannot log in: 401" 401 "$ERR"
# Ids and names of another organization's objects through this one's URLs.
api DELETE "/orgs/acme/tokens/${SPARE_TOKEN[globex]}" "$ADMIN"
expect "DELETE a globex token id through acme's URL: 404" 404 "$ERR"
api POST /orgs/acme/users/globex-org-admin/disable "${TOK[acme/org-admin]}"
expect "disable a globex user through acme's URL: 404" 404 "$ERR"
api GET /orgs/globex "${TOK[globex/org-admin]}"
expect "... and that globex user still works" 200 '.name=="globex"'
# Listing organizations shows an organization's caller only its own.
for role in org-admin operator auditor api-operator; do
  api GET /orgs "${TOK[acme/$role]}"
  expect "GET /orgs as acme $role shows only acme" 200 '[.organizations[].name]==["acme"]'
done
# The globex users are just as confined to globex.
for role in org-admin operator; do
  api GET /orgs/acme/certificates "${TOK[globex/$role]}"
  expect "globex $role reading acme's certificates: 403" 403 "$ERR"
  api POST /orgs/acme/certificates "${TOK[globex/$role]}" "$(issue_body dev1.csr)"
  expect "globex $role issuing in acme: 403" 403 "$ERR"
done
api GET "/orgs/acme/certificates/${SPARE_SERIAL[globex]}" "$ADMIN"
expect "a globex serial through acme's URL: 404" 404 "$ERR"
api POST "/orgs/acme/certificates/${SPARE_SERIAL[globex]}/revoke" "${TOK[acme/operator]}" '{"reason":"superseded"}'
expect "revoking a globex serial through acme's URL: 404" 404 "$ERR"
api GET /orgs/nosuchorg/cas "${TOK[acme/org-admin]}"
expect "an unknown organization looks like another one to an org caller: 403" 403 "$ERR"
api GET /orgs/nosuchorg/cas "$ADMIN"
expect "an unknown organization for the system admin: 404" 404 "$ERR"

# ============================================================================
# 3. Hostile input
# ============================================================================
echo "# hostile input starts after ${SECONDS}s"
OP=${TOK[acme/operator]}
OA=${TOK[acme/org-admin]}
acme_state() {
  local p
  api GET /orgs "$ADMIN"; echo "orgs $STATUS $RESP"
  for p in "certificates?status=any&limit=1000" users cas templates devices; do
    api GET "/orgs/acme/$p" "$ADMIN"
    echo "$p $STATUS"
    jq -S -c 'del(.. | .last_seen?, .first_seen?)' <<<"$RESP" 2>/dev/null || echo "$RESP"
  done
}
acme_state >acme.before
api GET "/orgs/acme/certificates?status=any&limit=1000" "$ADMIN"
COUNT_BEFORE=$(jq '.certificates|length' <<<"$RESP")
# bad DESC STATUS METHOD PATH TOKEN BODY [CURL-ARGS]: a 4xx JSON error.
bad() {
  local d=$1 want=$2
  shift 2
  api "$@"
  expect "$d: $want JSON" "$want" "$ERR"
}
bad "malformed JSON" 400 POST /orgs/acme/devices "$OP" '{"identifier":'
bad "a JSON array instead of an object" 400 POST /orgs/acme/devices "$OP" '["identifier","x"]'
bad "a JSON string instead of an object" 400 POST /orgs/acme/certificates "$OP" '"csr"'
bad "an empty body where JSON is required" 400 POST /orgs/acme/devices "$OP" '' -H 'Content-Type: application/json'
CT=text/plain
bad "Content-Type text/plain" 415 POST /orgs/acme/devices "$OP" '{"identifier":"plain-dev"}'
bad "Content-Type text/plain on login" 415 POST /auth/login "" '{"username":"admin","password":"x"}'
CT=application/json
head -c $((1024 * 1024 + 100)) /dev/zero | tr '\0' ' ' >big.json
bad "a body over 1 MiB" 413 POST /orgs/acme/certificates "$OP" @big.json
# Nesting half a million levels deep must not take the parser's stack down.
{ head -c 500000 /dev/zero | tr '\0' '['; head -c 500000 /dev/zero | tr '\0' ']'; } >deep.json
bad "JSON nested 500000 levels deep" 400 POST /orgs/acme/devices "$OP" @deep.json
STATUS=$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/healthz" || echo 000)
[ "$STATUS" = 200 ] && pass "the server is up after the deep JSON" || fail "the server is up after the deep JSON"

# CSRs: garbage, truncated, a broken signature, a key type no template allows.
bad "a garbage CSR" 400 POST /orgs/acme/certificates "$OP" '{"ca":"devices","template":"device","csr":"hello"}'
head -c 200 dev1.csr >trunc.csr
bad "a truncated CSR PEM" 400 POST /orgs/acme/certificates "$OP" "$(issue_body trunc.csr)"
openssl req -in dev1.csr -outform DER -out sig.der 2>/dev/null
flip_byte sig.der $(($(stat -c %s sig.der) - 1))
openssl req -inform DER -in sig.der -out sig.csr 2>/dev/null
bad "a CSR whose signature is broken" 400 POST /orgs/acme/certificates "$OP" "$(issue_body sig.csr)"
grep -qi signature <<<"$RESP" && pass "the error names the signature" || fail "the error names the signature" "$RESP"
openssl req -new -newkey rsa:2048 -nodes -keyout rsa.key -subj /CN=rsa-0001 -out rsa.csr 2>/dev/null
bad "an RSA-2048 CSR against the device template" 422 POST /orgs/acme/certificates "$OP" "$(issue_body rsa.csr)"

# Wrong field types.
bad "a number for ca" 400 POST /orgs/acme/certificates "$OP" \
  "$(issue_body dev1.csr | jq -c '.ca=123')"
bad "an array for csr" 400 POST /orgs/acme/certificates "$OP" \
  "$(issue_body dev1.csr | jq -c '.csr=["x"]')"
bad "a string for days" 400 POST /orgs/acme/certificates "$OP" \
  "$(issue_body dev1.csr | jq -c '.days="30"')"
bad "days out of range" 400 POST /orgs/acme/certificates "$OP" \
  "$(issue_body dev1.csr | jq -c '.days=99999999999')"
bad "an object for username" 400 POST /orgs/acme/users "$OA" '{"username":{"a":1},"password":"password-12345","role":"auditor"}'
bad "a number for the device status" 400 PATCH /orgs/acme/devices/dev-0001 "$OP" '{"status":1}'
bad "a number for the revocation reason" 400 POST "/orgs/acme/certificates/$S3/revoke" "$OP" '{"reason":1}'
bad "a string for renew days" 400 POST "/orgs/acme/certificates/$S3/renew" "$OP" '{"days":"ten"}'
bad "a string for expires_in_days" 400 POST /orgs/acme/tokens "$OA" '{"role":"auditor","name":"t","expires_in_days":"x"}'
bad "a string for key_types in a template" 400 POST /orgs/acme/templates "$OA" \
  "$(template_json typed | jq -c '.key_types="P-256"')"
# Should it have been taken, it goes again: the store check below is about the others.
[ "$STATUS" = 201 ] && api DELETE /orgs/acme/templates/typed "$OA"
bad "a string for validity_days in a template" 400 POST /orgs/acme/templates "$OA" \
  "$(template_json typed | jq -c '.validity_days="30"')"
bad "a number for the login user name" 400 POST /auth/login "" '{"username":7,"password":"x"}'
csr dev1d /CN=dev-0001
bad "a string for revoke_old in a re-key" 400 POST "/orgs/acme/certificates/$S3/rekey" "$OP" \
  "$(jq -nc --rawfile csr dev1d.csr '{csr:$csr, revoke_old:"yes"}')"

# Injection strings in every text field that names something.
LONG=$(head -c 10240 /dev/zero | tr '\0' a)
INJECTIONS=("'; DROP TABLE certificates; --" "../../etc/passwd" "<script>alert(1)</script>" 'x\u0000y' "$LONG" "" " ")
i=0
for s in "${INJECTIONS[@]}"; do
  i=$((i + 1))
  js=$(jq -nc --arg s "$s" '$s')
  # The NUL is sent as the JSON escape \u0000, not as an argument byte.
  [ "$s" = 'x\u0000y' ] && js='"x\u0000y"'
  bad "injection #$i as organization name" 400 POST /orgs "$ADMIN" "{\"name\":$js}"
  bad "injection #$i as user name" 400 POST /orgs/acme/users "$OA" "{\"username\":$js,\"password\":\"password-12345\",\"role\":\"auditor\"}"
  bad "injection #$i as template name" 400 POST /orgs/acme/templates "$OA" "$(template_json x | jq -c --argjson n "$js" '.name=$n')"
  bad "injection #$i as CA name" 400 POST /orgs/acme/cas "$OA" "{\"name\":$js,\"subject\":\"CN=Injected\"}"
  bad "injection #$i as device identifier" 400 POST /orgs/acme/devices "$OP" "{\"identifier\":$js}"
  # An empty reason means "unspecified" and would revoke: skip it there.
  if [ -n "${s// /}" ]; then
    bad "injection #$i as revocation reason" 400 POST "/orgs/acme/certificates/$S3/revoke" "$OP" "{\"reason\":$js}"
  fi
  bad "injection #$i as CA in an issue request" 400 POST /orgs/acme/certificates "$OP" "$(issue_body dev1.csr | jq -c --argjson n "$js" '.ca=$n')"
  # Login names over 128 characters are refused as input (400), others just fail (401).
  if [ -n "$s" ]; then
    want=401; ((${#s} > 128)) && want=400
    bad "injection #$i as the login user name" "$want" POST /auth/login "" "{\"username\":$js,\"password\":\"password-12345\"}"
  fi
done
api GET "/orgs/acme/certificates?subject=%27%20OR%201%3D1%20--&status=any" "$OP"
expect "an injection string in a search filter matches nothing" 200 '.certificates==[]'
api GET "/orgs/acme/certificates?status=%27%20OR%201%3D1" "$OP"
expect "an injection string as the status filter: 400" 400 "$ERR"
api GET "/orgs/acme/certificates?nosuch=1" "$OP"
expect "an unknown query parameter: 400" 400 "$ERR"

# Tokens that are not tokens.
FORGED=devid_$(openssl rand -hex 32)
bad "a forged token (devid_ + 64 random hex)" 401 GET /orgs/acme "$FORGED"
bad "a token of the wrong length" 401 GET /orgs/acme "${TOK[acme/auditor]}00"
bad "a token cut short" 401 GET /orgs/acme "${TOK[acme/auditor]:0:40}"
bad "a token without its prefix" 401 GET /orgs/acme "${TOK[acme/auditor]#devid_}"
bad "an Authorization header without Bearer" 401 GET /orgs/acme "" "" -H "Authorization: ${TOK[acme/auditor]}"
grep -qi '^www-authenticate: Bearer' <("${C[@]}" -D - -o /dev/null -H "Authorization: Basic YWRtaW46eA==" "$API/orgs/acme") \
  && pass "a Basic Authorization header: 401 with WWW-Authenticate: Bearer" \
  || fail "a Basic Authorization header: 401 with WWW-Authenticate: Bearer"
bad "an empty bearer token" 401 GET /orgs/acme "" "" -H "Authorization: Bearer "

# Path traversal in {org} and {serial}: never another organization's data.
for p in "/orgs/..%2Fglobex/cas" "/orgs/%2e%2e/cas" "/orgs/acme%2F..%2Fglobex/cas" "/orgs/acme%00/cas"; do
  api GET "$p" "${TOK[acme/auditor]}"
  expect "GET $p as acme auditor: 403" 403 "$ERR"
  api GET "$p" "$ADMIN"
  expect "GET $p as system admin: 404" 404 "$ERR"
done
for p in "/orgs/acme/certificates/..%2F..%2Fetc%2Fpasswd" "/orgs/acme/certificates/%2e%2e" "/orgs/acme/certificates/$S3%00"; do
  api GET "$p" "${TOK[acme/auditor]}"
  expect "GET $p: 404" 404 "$ERR"
done
STATUS=$("${C[@]}" --path-as-is -o resp.body -w '%{http_code}' -H "Authorization: Bearer ${TOK[acme/auditor]}" \
  "$API/orgs/acme/../globex/cas") || STATUS=000
{ [ "$STATUS" = 404 ] || [ "$STATUS" = 403 ]; } && ! grep -q 'Globex' resp.body \
  && pass "a raw /orgs/acme/../globex/cas: $STATUS, nothing of globex" \
  || fail "a raw /orgs/acme/../globex/cas: 403/404" "$STATUS $(head -c 300 resp.body)"

STATUS=$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/healthz" || echo 000)
[ "$STATUS" = 200 ] && pass "the server is still up after the hostile input" || fail "the server is still up after the hostile input"
acme_state >acme.after
api GET "/orgs/acme/certificates?status=any&limit=1000" "$ADMIN"
[ "$(jq '.certificates|length' <<<"$RESP")" = "$COUNT_BEFORE" ] && pass "no certificate was added by hostile input" \
  || fail "no certificate was added by hostile input" "$COUNT_BEFORE before, $(jq '.certificates|length' <<<"$RESP") after"
diff acme.before acme.after >acme.diff && pass "the store is unchanged after the hostile input (orgs, certificates, users, CAs, templates, devices)" \
  || fail "the store is unchanged after the hostile input" "$(head -c 2000 acme.diff)"

# Names that are dot-segments vanish from URLs (RFC 3986 §5.2.4: clients
# resolve /orgs/../cas to /cas), so an organization, user or device named so
# could not be addressed, and a CRL URL naming such an organization would
# point elsewhere. (Kept apart from the store comparison above.)
dots() {  # dots DESC PATH TOKEN BODY-WITH-@: the body with '..' and with '.' for @: both 400
  local d=$1 got=()
  for name in .. .; do
    api POST "$2" "$3" "${4//@/$name}"
    got+=("'$name' -> $STATUS ${RESP:0:120}")
    [ "$STATUS" = 400 ] && is_json_error || { fail "$d '..' and '.': 400 JSON" "${got[@]}"; return; }
  done
  pass "$d '..' and '.': 400 JSON"
}
dots "organization name" /orgs "$ADMIN" '{"name":"@"}'
dots "device identifier" /orgs/acme/devices "$OP" '{"identifier":"@"}'
dots "user name" /orgs/acme/users "$OA" '{"username":"@","password":"password-12345","role":"auditor"}'

# ============================================================================
# Audit: everything above is in the chain, denials included, and it verifies.
# ============================================================================
audit_all() {  # audit_all PATH TOKEN: every record, page by page, as one array in audit.json
  local after=0 next
  echo '[]' >audit.json
  while :; do
    api GET "$1?limit=1000&after=$after" "$2"
    [ "$STATUS" = 200 ] || return 1
    jq -s '.[0] + .[1].records' audit.json - <<<"$RESP" >audit.tmp && mv audit.tmp audit.json
    next=$(jq -r '.next_after // empty' <<<"$RESP")
    [ -n "$next" ] || return 0
    after=$next
  done
}
api POST /orgs/acme/certificates "${TOK[acme/auditor]}" "$(issue_body dev1.csr)"
expect "an auditor issuing: 403 (to be audited)" 403 "$ERR"
if audit_all /orgs/acme/audit "${TOK[acme/auditor]}"; then pass "GET /orgs/acme/audit (auditor), all pages"
else fail "GET /orgs/acme/audit (auditor), all pages" "$STATUS $RESP"; fi
jq -e 'any(.[]; .action=="certificate.issue" and .outcome=="ok")' audit.json >/dev/null \
  && pass "the audit shows certificate.issue ok" || fail "the audit shows certificate.issue ok"
jq -e 'any(.[]; .action=="certificate.issue" and .outcome=="denied" and .actor=="user:acme-auditor")' audit.json >/dev/null \
  && pass "the audit shows the auditor's denied certificate.issue" || fail "the audit shows the auditor's denied certificate.issue"
jq -e --arg s "$S1" 'any(.[]; .action=="certificate.revoke" and .outcome=="ok" and (.target|contains($s)))' audit.json >/dev/null \
  && pass "the audit shows the revocation of $S1" || fail "the audit shows the revocation of $S1"
jq -e 'any(.[]; .action=="template.create" and .outcome=="ok" and .target=="template:sensor")' audit.json >/dev/null \
  && pass "the audit shows template.create of sensor" || fail "the audit shows template.create of sensor"
jq -e 'all(.[]; (.detail|tostring|contains("password-of-")|not))' audit.json >/dev/null \
  && pass "no password reaches the audit" || fail "no password reaches the audit"
jq -e '[.[].seq] == ([.[].seq]|sort) and ([.[].seq]|unique|length)==length' audit.json >/dev/null \
  && pass "audit records come in sequence order, each once" || fail "audit records come in sequence order, each once"
cp audit.json acme-audit.json
audit_all /orgs/globex/audit "$ADMIN" || true
jq -e --slurpfile a acme-audit.json '([.[].seq] - [$a[0][].seq]) == [.[].seq]' audit.json >/dev/null \
  && pass "globex's audit holds none of acme's records" || fail "globex's audit holds none of acme's records"
jq -e 'any(.[]; .actor|startswith("user:acme-"))|not' audit.json >/dev/null \
  && pass "acme users' denied attempts on globex are not in globex's audit view" \
  || fail "acme users' denied attempts on globex are not in globex's audit view"
api GET /audit/verify "$ADMIN"
expect "GET /api/v1/audit/verify: ok" 200 '.ok==true and .records>100'
api GET /orgs/acme/audit/verify "${TOK[acme/auditor]}"
expect "GET /orgs/acme/audit/verify (auditor): ok" 200 '.ok==true'
api GET "/audit?limit=5" "$ADMIN"
expect "GET /api/v1/audit (system admin): a page of 5" 200 '(.records|length)==5 and (.next_after|type)=="number"'
api GET "/orgs/acme/audit?limit=x" "${TOK[acme/auditor]}"
expect "GET audit with a bad limit: 400" 400 "$ERR"
out=$("$DEVID" --home home audit verify 2>&1) && pass "devid audit verify (while the server runs): exit 0" \
  || fail "devid audit verify (while the server runs): exit 0" "$out"
grep -q 'audit chain intact' <<<"$out" && pass "devid audit verify says intact" || fail "devid audit verify says intact" "$out"
STATUS=$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/healthz" || echo 000)
[ "$STATUS" = 200 ] && pass "the server is up at the end" || fail "the server is up at the end"
kill -TERM "$SERVER"; wait "$SERVER" || true
finish
