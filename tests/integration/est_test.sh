#!/usr/bin/env bash
# Integration test of EST (RFC 7030) under /.well-known/est/{org}/{ca}/ as
# `devid serve` serves it, with curl, openssl and base64 as the peers, over
# real HTTPS on 127.0.0.1:
#  1. cacerts: the certs-only PKCS#7 holds the issuing CA and the root;
#  2. simpleenroll with HTTP basic and with a bearer token: the certificate is
#     the CSR's subject and key, chains to cacerts, and is in the store; every
#     refusal (credentials, role, organization, media type, body, signature,
#     CA) has its status and issues nothing;
#  3. simplereenroll authenticated by the TLS client certificate being renewed,
#     and refused for no / a foreign / a self-signed / a revoked certificate;
#  4. csrattrs and serverkeygen (multipart/mixed: PKCS#8 key, then PKCS#7);
#  5. the audit chain holds the EST operations, denials included, and verifies.
# Usage: est_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
command -v jq >/dev/null || { echo "FAIL - jq is required"; exit 1; }
enter_scratch_dir
export DEVID_PASSPHRASE=est-test-passphrase
mkdir -m 700 home

# --- set-up with the CLI: two organizations, each a root and an issuing CA ----
for org in acme globex; do
  Org=${org^}
  ok "CLI: root CA of $org" "$DEVID" --home home ca init-root --org "$org" --subject "CN=$Org Root"
  ok "CLI: issuing CA devices of $org" "$DEVID" --home home ca init-ica --org "$org" --name devices \
    --subject "CN=$Org Devices"
done
# A second issuing CA in acme: its endpoint must not take the first one's certificates.
ok "CLI: issuing CA gateways of acme" "$DEVID" --home home ca init-ica --org acme --name gateways \
  --subject "CN=Acme Gateways"
ADMIN_PW=admin-password-0001
echo "$ADMIN_PW" >admin.pw
ok "CLI: bootstrap the system admin" "$DEVID" --home home admin bootstrap --user admin --password-file admin.pw
start_serve "$DEVID" "$PWD/home"
[ -n "$PORT" ] && pass "devid serve listens" || { fail "devid serve listens" "$(cat out.txt log.txt)"; finish; }
C=(curl -s --max-time 15 --cacert home/tls/ca.pem)
API=$URL/api/v1

# --- the REST API, for set-up and for looking at the store --------------------
RESP_FILE=resp.body
api() {  # api METHOD PATH TOKEN [JSON]: sets STATUS and RESP
  local args=(-X "$1" -o "$RESP_FILE" -w '%{http_code}')
  [ -n "$3" ] && args+=(-H "Authorization: Bearer $3")
  [ -n "${4-}" ] && args+=(-H "Content-Type: application/json" --data-binary "$4")
  rm -f "$RESP_FILE"
  STATUS=$("${C[@]}" "${args[@]}" "$API$2" 2>/dev/null) || STATUS=000
  RESP=$(cat "$RESP_FILE" 2>/dev/null || true)
}
login() {  # login USER PASSWORD: sets TOKEN
  api POST /auth/login "" "$(jq -nc --arg u "$1" --arg p "$2" '{username:$u,password:$p}')"
  TOKEN=$(jq -r '.token // empty' <<<"$RESP" 2>/dev/null || true)
}
login admin "$ADMIN_PW"
[ -n "$TOKEN" ] && pass "login as the system admin" || { fail "login as the system admin" "$STATUS $RESP"; finish; }
ADMIN=$TOKEN
# Users: password-of-NAME each.
for u in acme:acme-enroll:enrollment acme:acme-auditor:auditor globex:globex-enroll:enrollment; do
  IFS=: read -r org name role <<<"$u"
  api POST "/orgs/$org/users" "$ADMIN" \
    "$(jq -nc --arg u "$name" --arg p "password-of-$name" --arg r "$role" '{username:$u,password:$p,role:$r}')"
  [ "$STATUS" = 201 ] && pass "create user $name ($role in $org)" || fail "create user $name ($role in $org)" "$STATUS $RESP"
done
api POST /orgs/acme/tokens "$ADMIN" '{"role":"enrollment","name":"est factory line"}'
ENROLL_TOKEN=$(jq -r '.token // empty' <<<"$RESP" 2>/dev/null || true)
[ "$STATUS" = 201 ] && [ -n "$ENROLL_TOKEN" ] && pass "create an API token (enrollment) for acme" \
  || fail "create an API token (enrollment) for acme" "$STATUS $RESP"
cert_count() {  # cert_count ORG: how many certificates the store holds for ORG
  api GET "/orgs/$1/certificates?status=any&limit=1000" "$ADMIN"
  jq '.certificates|length' <<<"$RESP" 2>/dev/null || echo "?"
}

# --- EST requests --------------------------------------------------------------
EST=$URL/.well-known/est
# est METHOD ORG/CA/OPERATION [CURL-ARGS...]: one EST request; sets STATUS and
# CTYPE; the body is in est.body, the headers in est.hdr.
est() {
  local method=$1 path=$2
  shift 2
  rm -f est.body est.hdr
  STATUS=$("${C[@]}" -X "$method" -D est.hdr -o est.body -w '%{http_code}' "$@" "$EST/$path" \
    2>/dev/null) || STATUS=000
  CTYPE=$(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' est.hdr 2>/dev/null | tr -d '\r' | tail -1)
}
# enroll OP ORG/CA CSR-NAME [CURL-ARGS...]: POST the CSR as RFC 7030 §4.2.1 wants it.
enroll() {
  local op=$1 path=$2 name=$3
  shift 3
  est POST "$path/$op" -H "Content-Type: application/pkcs10" --data-binary "@$name.b64" "$@"
}
# expect DESC STATUS: the last EST answer had STATUS.
expect() {
  if [ "$STATUS" = "$2" ]; then pass "$1"; else fail "$1" "-> $STATUS (want $2)" "$(head -c 400 est.body 2>/dev/null)"; fi
}
csr() {  # csr NAME SUBJECT [KEY]: NAME.key (new P-256 unless KEY), NAME.csr, NAME.der, NAME.b64
  if [ -n "${3-}" ]; then
    cp "$3" "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  else
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -subj "$2" \
      -out "$1.csr" 2>/dev/null
  fi
  openssl req -in "$1.csr" -outform DER -out "$1.der"
  base64 "$1.der" >"$1.b64"
}
# p7_certs IN OUT: the certificates of a base64 certs-only PKCS#7, as PEM.
p7_certs() { base64 -d "$1" 2>/dev/null | openssl pkcs7 -inform DER -print_certs -out "$2" 2>/dev/null; }
ncerts() { grep -c 'BEGIN CERTIFICATE' "$1" 2>/dev/null || true; }
pubkey() { openssl x509 -noout -pubkey -in "$1" 2>/dev/null; }
keypub() { openssl pkey -in "$1" -pubout 2>/dev/null; }
subject_of() { openssl x509 -noout -subject -nameopt RFC2253 -in "$1" 2>/dev/null | sed 's/^subject=//'; }
csr_subject() { openssl req -noout -subject -nameopt RFC2253 -in "$1" 2>/dev/null | sed 's/^subject=//'; }
serial_of() { openssl x509 -noout -serial -in "$1" 2>/dev/null | sed 's/^serial=//'; }
# issued DESC CSR-NAME OUT: the last answer is 200 certs-only with one certificate
# (into OUT) for the CSR's subject and key, verifying against chain.pem.
issued() {
  local d=$1 name=$2 out=$3
  if [ "$STATUS" != 200 ]; then
    fail "$d: 200" "-> $STATUS" "$(head -c 400 est.body 2>/dev/null)"
    return
  fi
  pass "$d: 200"
  [[ $CTYPE == application/pkcs7-mime* ]] && grep -qi 'smime-type=certs-only' <<<"$CTYPE" \
    && pass "$d: Content-Type application/pkcs7-mime; smime-type=certs-only" \
    || fail "$d: Content-Type application/pkcs7-mime; smime-type=certs-only" "$CTYPE"
  p7_certs est.body "$out" && [ "$(ncerts "$out")" = 1 ] && pass "$d: a PKCS#7 with one certificate" \
    || fail "$d: a PKCS#7 with one certificate" "$(head -c 400 est.body)"
  [ "$(subject_of "$out")" = "$(csr_subject "$name.csr")" ] && pass "$d: the CSR's subject" \
    || fail "$d: the CSR's subject" "$(subject_of "$out") vs $(csr_subject "$name.csr")"
  [ -n "$(pubkey "$out")" ] && [ "$(pubkey "$out")" = "$(keypub "$name.key")" ] \
    && pass "$d: the CSR's public key" || fail "$d: the CSR's public key" "$(pubkey "$out")" "$(keypub "$name.key")"
  ok "$d: openssl verify accepts it with the cacerts chain" openssl verify -CAfile "$CHAIN" "$out"
}

# ============================================================================
# 1. cacerts (RFC 7030 §4.1): no authentication
# ============================================================================
for org in acme globex; do
  Org=${org^}
  est GET "$org/devices/cacerts"
  [ "$STATUS" = 200 ] && pass "cacerts of $org: 200" || fail "cacerts of $org: 200" "$STATUS $(head -c 300 est.body)"
  [[ $CTYPE == application/pkcs7-mime* ]] && pass "cacerts of $org: Content-Type application/pkcs7-mime" \
    || fail "cacerts of $org: Content-Type application/pkcs7-mime" "$CTYPE"
  grep -qi 'smime-type=certs-only' <<<"$CTYPE" && pass "cacerts of $org: smime-type=certs-only" \
    || fail "cacerts of $org: smime-type=certs-only" "$CTYPE"
  # RFC 7030 §4.1.3: base64 of the DER (the body is all base64 characters).
  ! grep -q '[^A-Za-z0-9+/=]' est.body && pass "cacerts of $org: the body is base64" \
    || fail "cacerts of $org: the body is base64" "$(head -c 300 est.body)"
  p7_certs est.body "$org-chain.pem" || true
  subjects=$(openssl crl2pkcs7 -nocrl -certfile "$org-chain.pem" 2>/dev/null \
    | openssl pkcs7 -print_certs -noout 2>/dev/null | sed -n 's/^subject=//p' | sed 's/ = /=/g' | sort | tr '\n' ';')
  [ "$(ncerts "$org-chain.pem")" = 2 ] && [ "$subjects" = "CN=$Org Devices;CN=$Org Root;" ] \
    && pass "cacerts of $org: openssl pkcs7 -print_certs gives the ICA and the root" \
    || fail "cacerts of $org: openssl pkcs7 -print_certs gives the ICA and the root" "$subjects"
done
CHAIN=acme-chain.pem
est GET acme/nosuch/cacerts
expect "cacerts of an unknown CA: 404" 404
est GET nosuchorg/devices/cacerts
expect "cacerts of an unknown organization: 404" 404

# ============================================================================
# 2. simpleenroll (RFC 7030 §4.2.1)
# ============================================================================
csr e1 /CN=est-0001
enroll simpleenroll acme/devices e1 -u acme-enroll:password-of-acme-enroll
issued "simpleenroll with HTTP basic (enrollment user)" e1 e1.pem
csr e2 "/CN=est-0002/O=Acme"
enroll simpleenroll acme/devices e2 -H "Authorization: Bearer $ENROLL_TOKEN"
issued "simpleenroll with a bearer API token (enrollment)" e2 e2.pem
# Clients that wrap base64 in CRLF lines (RFC 7030 §4: line breaks are allowed).
csr e3 /CN=est-0003
sed 's/$/\r/' e3.b64 >e3.crlf && mv e3.crlf e3.b64
enroll simpleenroll acme/devices e3 -u acme-enroll:password-of-acme-enroll
issued "simpleenroll with the base64 body in CRLF lines" e3 e3.pem
# A P-384 key is in the device template too.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout e4.key -subj /CN=est-0004 \
  -out e4.csr 2>/dev/null
openssl req -in e4.csr -outform DER | base64 >e4.b64
enroll simpleenroll acme/devices e4 -u acme-enroll:password-of-acme-enroll
issued "simpleenroll with a P-384 key" e4 e4.pem
for n in e1 e2; do
  s=$(serial_of $n.pem)
  api GET "/orgs/acme/certificates?serial=$s&status=any" "$ADMIN"
  jq -e --arg s "$s" '[.certificates[].serial]==[$s]' <<<"$RESP" >/dev/null 2>&1 \
    && pass "the $n certificate (serial $s) is in GET /orgs/acme/certificates?serial=" \
    || fail "the $n certificate (serial $s) is in GET /orgs/acme/certificates?serial=" "$STATUS $RESP"
done
[ "$(openssl x509 -noout -issuer -nameopt RFC2253 -in e1.pem)" = "issuer=CN=Acme Devices" ] \
  && pass "the enrolled certificate is issued by the ICA devices" || fail "the enrolled certificate is issued by the ICA devices" "$(openssl x509 -noout -issuer -in e1.pem)"

# Refusals: each with its status, and nothing issued.
COUNT_BEFORE=$(cert_count acme)
csr r1 /CN=est-0100
enroll simpleenroll acme/devices r1
expect "simpleenroll without credentials: 401" 401
grep -qi '^www-authenticate:.*basic' est.hdr && pass "the 401 offers Basic in WWW-Authenticate (RFC 7030 §3.2.3)" \
  || fail "the 401 offers Basic in WWW-Authenticate (RFC 7030 §3.2.3)" "$(cat est.hdr)"
enroll simpleenroll acme/devices r1 -u acme-enroll:wrong-password-0001
expect "simpleenroll with a wrong password: 401" 401
enroll simpleenroll acme/devices r1 -u nobody-at-all:password-of-nobody
expect "simpleenroll as an unknown user: 401" 401
enroll simpleenroll acme/devices r1 -H "Authorization: Bearer devid_$(openssl rand -hex 32)"
expect "simpleenroll with a forged bearer token: 401" 401
enroll simpleenroll acme/devices r1 -u acme-auditor:password-of-acme-auditor
expect "simpleenroll as an auditor: 403" 403
enroll simpleenroll acme/devices r1 -u globex-enroll:password-of-globex-enroll
expect "simpleenroll into acme as a globex enrollment user: 403" 403
AUTH=(-u acme-enroll:password-of-acme-enroll)
est POST acme/devices/simpleenroll -H "Content-Type: text/plain" --data-binary @r1.b64 "${AUTH[@]}"
expect "simpleenroll with Content-Type text/plain: 415" 415
est POST acme/devices/simpleenroll -H "Content-Type: application/pkcs10" --data-binary '***not base64!***' "${AUTH[@]}"
expect "simpleenroll with a body that is not base64: 400" 400
est POST acme/devices/simpleenroll -H "Content-Type: application/pkcs10" \
  --data-binary "$(printf 'this is no certification request at all' | base64)" "${AUTH[@]}"
expect "simpleenroll with base64 of garbage: 400" 400
est POST acme/devices/simpleenroll -H "Content-Type: application/pkcs10" --data-binary '' "${AUTH[@]}"
expect "simpleenroll with an empty body: 400" 400
# The last byte of the DER is inside the signature BIT STRING.
cp r1.der sig.der
flip_byte sig.der $(($(stat -c %s sig.der) - 1))
base64 sig.der >sig.b64
# (openssl 3.0 `req -verify` exits 0 either way: its words tell.)
if openssl req -inform DER -in sig.der -noout 2>/dev/null \
  && ! openssl req -inform DER -in sig.der -verify -noout 2>&1 | grep -q 'verify OK'; then
  pass "the tampered CSR parses but its signature does not verify (openssl)"
else
  fail "the tampered CSR parses but its signature does not verify (openssl)" "$(openssl req -inform DER -in sig.der -verify -noout 2>&1)"
fi
enroll simpleenroll acme/devices sig "${AUTH[@]}"
expect "simpleenroll with a CSR whose signature is broken: 400" 400
grep -qi signature est.body && pass "the error names the signature" || fail "the error names the signature" "$(cat est.body)"
# The PEM instead of base64 DER is not what §4.2.1 asks for.
est POST acme/devices/simpleenroll -H "Content-Type: application/pkcs10" --data-binary @r1.csr "${AUTH[@]}"
expect "simpleenroll with a PEM body (armour lines are not base64): 400" 400
openssl req -new -newkey rsa:2048 -nodes -keyout rsa.key -subj /CN=est-0101 -out rsa.csr 2>/dev/null
openssl req -in rsa.csr -outform DER | base64 >rsa.b64
enroll simpleenroll acme/devices rsa "${AUTH[@]}"
expect "simpleenroll with an RSA-2048 key the device template does not allow: 422" 422
csr st "/CN=est-0102/ST=Nowhere"
enroll simpleenroll acme/devices st "${AUTH[@]}"
expect "simpleenroll with a subject attribute (ST) the device template does not allow: 422" 422
enroll simpleenroll acme/nosuch r1 "${AUTH[@]}"
expect "simpleenroll to an unknown CA: 404" 404
enroll simpleenroll nosuchorg/devices r1 -u admin:"$ADMIN_PW"
expect "simpleenroll to an unknown organization (system admin): 404" 404
enroll simpleenroll nosuchorg/devices r1 "${AUTH[@]}"
expect "simpleenroll to an unknown organization (acme user): 403, like another organization" 403
enroll simpleenroll acme/devices r1 -u admin:"$ADMIN_PW"
STATUS_ADMIN=$STATUS
COUNT_AFTER=$(cert_count acme)
[ "$STATUS_ADMIN" = 200 ] && COUNT_BEFORE=$((COUNT_BEFORE + 1))
[ "$STATUS_ADMIN" = 200 ] && pass "simpleenroll as the system admin (HTTP basic): 200" \
  || fail "simpleenroll as the system admin (HTTP basic): 200" "$STATUS_ADMIN $(head -c 300 est.body)"
[ "$COUNT_AFTER" = "$COUNT_BEFORE" ] && pass "no certificate was issued by a refused simpleenroll" \
  || fail "no certificate was issued by a refused simpleenroll" "$COUNT_BEFORE expected, $COUNT_AFTER found"

# ============================================================================
# 3. simplereenroll (RFC 7030 §4.2.2): the TLS client certificate is the proof
# ============================================================================
csr e1n /CN=est-0001
enroll simplereenroll acme/devices e1n --cert e1.pem --key e1.key
issued "simplereenroll with the current certificate and a new key" e1n e1n.pem
[ "$(pubkey e1n.pem)" != "$(pubkey e1.pem)" ] && pass "the re-enrolled certificate carries the new key, not the old" \
  || fail "the re-enrolled certificate carries the new key, not the old" "$(pubkey e1n.pem)"
[ "$(serial_of e1n.pem)" != "$(serial_of e1.pem)" ] && pass "the re-enrolled certificate has a new serial" \
  || fail "the re-enrolled certificate has a new serial" "$(serial_of e1n.pem)"
s=$(serial_of e1n.pem)
api GET "/orgs/acme/certificates?serial=$s&status=any" "$ADMIN"
jq -e --arg s "$s" '[.certificates[].serial]==[$s]' <<<"$RESP" >/dev/null 2>&1 \
  && pass "the re-enrolled certificate is in the store" || fail "the re-enrolled certificate is in the store" "$RESP"

COUNT_BEFORE=$(cert_count acme)
csr e2n "/CN=est-0002/O=Acme"
enroll simplereenroll acme/devices e2n
expect "simplereenroll without a client certificate: 401" 401
enroll simplereenroll acme/devices e2n -u acme-enroll:password-of-acme-enroll
expect "simplereenroll with HTTP basic but no client certificate: 401" 401
# A certificate of globex's CA, used at acme's endpoint.
csr g1 "/CN=est-0002/O=Acme"
enroll simpleenroll globex/devices g1 -u globex-enroll:password-of-globex-enroll
[ "$STATUS" = 200 ] && p7_certs est.body g1.pem && pass "simpleenroll in globex (a foreign certificate): 200" \
  || fail "simpleenroll in globex (a foreign certificate): 200" "$STATUS $(head -c 300 est.body)"
enroll simplereenroll acme/devices e2n --cert g1.pem --key g1.key
expect "simplereenroll at acme with a certificate of globex's CA: 401" 401
enroll simplereenroll globex/devices g1 --cert e2.pem --key e2.key
expect "simplereenroll at globex with a certificate of acme's CA: 401" 401
# A self-signed certificate with the same subject.
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout self.key -out self.pem \
  -subj "/CN=est-0002/O=Acme" -days 30 2>/dev/null
enroll simplereenroll acme/gateways e2n --cert e2.pem --key e2.key
expect "simplereenroll at acme's CA gateways with a certificate of acme's CA devices: 401" 401
enroll simplereenroll acme/devices e2n --cert self.pem --key self.key
expect "simplereenroll with a self-signed certificate: 401" 401
# A forgery: the real certificate's serial and subject, signed by another key.
openssl x509 -in e2.pem -signkey self.key -out forged.pem 2>/dev/null
enroll simplereenroll acme/devices e2n --cert forged.pem --key self.key
expect "simplereenroll with a certificate copying a real one's serial, self-signed: 401" 401
csr other /CN=est-9999
enroll simplereenroll acme/devices other --cert e2.pem --key e2.key
expect "simplereenroll with a CSR for another subject: 422" 422
est POST acme/devices/simplereenroll -H "Content-Type: text/plain" --data-binary @e2n.b64 --cert e2.pem --key e2.key
expect "simplereenroll with Content-Type text/plain: 415" 415
est POST acme/devices/simplereenroll -H "Content-Type: application/pkcs10" --data-binary '***not base64!***' \
  --cert e2.pem --key e2.key
expect "simplereenroll with a body that is not base64: 400" 400
cp e2n.der sig2.der
flip_byte sig2.der $(($(stat -c %s sig2.der) - 1))
base64 sig2.der >sig2.b64
enroll simplereenroll acme/devices sig2 --cert e2.pem --key e2.key
expect "simplereenroll with a CSR (same subject) whose signature is broken: 400" 400
enroll simplereenroll acme/nosuch e2n --cert e2.pem --key e2.key
expect "simplereenroll to an unknown CA: 404" 404
# Revoke e2 through the API, then it no longer authenticates.
api POST "/orgs/acme/certificates/$(serial_of e2.pem)/revoke" "$ADMIN" '{"reason":"keyCompromise"}'
[ "$STATUS" = 200 ] && pass "revoke the e2 certificate through the API: 200" \
  || fail "revoke the e2 certificate through the API: 200" "$STATUS $RESP"
enroll simplereenroll acme/devices e2n --cert e2.pem --key e2.key
expect "simplereenroll with a revoked client certificate: 401" 401
COUNT_AFTER=$(cert_count acme)
[ "$COUNT_AFTER" = "$COUNT_BEFORE" ] && pass "no certificate was issued by a refused simplereenroll" \
  || fail "no certificate was issued by a refused simplereenroll" "$COUNT_BEFORE expected, $COUNT_AFTER found"
# The renewed certificate in turn renews (a chain of re-enrolments).
csr e1m /CN=est-0001
enroll simplereenroll acme/devices e1m --cert e1n.pem --key e1n.key
issued "simplereenroll with the re-enrolled certificate" e1m e1m.pem

# The client certificate file may carry the chain too (curl sends it all).
cat e1m.pem acme-chain.pem >e1m-chain.pem
csr e1o /CN=est-0001
enroll simplereenroll acme/devices e1o --cert e1m-chain.pem --key e1m.key
issued "simplereenroll with the client certificate sent with its chain" e1o e1o.pem
# RFC 7030 §4.2.2: re-enrolment may keep the key (renew) as well as change it (re-key).
csr e1p /CN=est-0001 e1o.key
enroll simplereenroll acme/devices e1p --cert e1o.pem --key e1o.key
issued "simplereenroll keeping the key (renewal)" e1p e1p.pem
# RFC 7030 §4.2.2: "The request Subject field and SubjectAltName extension MUST
# be identical to the corresponding fields in the certificate being renewed".
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout san.key -subj /CN=est-0001 \
  -addext "subjectAltName=URI:urn:devid:someone-else,DNS:victim.example" -out san.csr 2>/dev/null
openssl req -in san.csr -outform DER | base64 >san.b64
COUNT_BEFORE=$(cert_count acme)
enroll simplereenroll acme/devices san --cert e1p.pem --key e1o.key
expect "simplereenroll adding a subjectAltName the renewed certificate lacks: 422" 422
[ "$STATUS" = 200 ] && p7_certs est.body san.pem && echo "#   issued: $(openssl x509 -noout -ext subjectAltName -in san.pem 2>/dev/null | tr '\n' ' ')"
[ "$(cert_count acme)" = "$COUNT_BEFORE" ] && pass "no certificate was issued for the changed subjectAltName" \
  || fail "no certificate was issued for the changed subjectAltName" "$COUNT_BEFORE before, $(cert_count acme) after"

# ============================================================================
# 4. csrattrs (RFC 7030 §4.5) and serverkeygen (§4.4)
# ============================================================================
est GET acme/devices/csrattrs
expect "csrattrs: 200" 200
[[ $CTYPE == application/csrattrs* ]] && pass "csrattrs: Content-Type application/csrattrs" \
  || fail "csrattrs: Content-Type application/csrattrs" "$CTYPE"
base64 -d est.body >csrattrs.der 2>/dev/null || true
openssl asn1parse -inform DER -in csrattrs.der >csrattrs.txt 2>&1 || true
head -1 csrattrs.txt | grep -q 'cons: SEQUENCE' && pass "csrattrs: the DER is a SEQUENCE" \
  || fail "csrattrs: the DER is a SEQUENCE" "$(cat csrattrs.txt)"
grep -q 'ecdsa-with-SHA256' csrattrs.txt && pass "csrattrs: names ecdsa-with-SHA256" \
  || fail "csrattrs: names ecdsa-with-SHA256" "$(cat csrattrs.txt)"
grep -q 'prime256v1' csrattrs.txt && pass "csrattrs: names prime256v1" || fail "csrattrs: names prime256v1" "$(cat csrattrs.txt)"

csr k1 "/CN=est-0300/O=Acme"
COUNT_BEFORE=$(cert_count acme)
enroll serverkeygen acme/devices k1 "${AUTH[@]}"
expect "serverkeygen: 200" 200
[[ $CTYPE == multipart/mixed* ]] && pass "serverkeygen: Content-Type multipart/mixed" \
  || fail "serverkeygen: Content-Type multipart/mixed" "$CTYPE"
BOUNDARY=$(sed -n 's/.*boundary="\{0,1\}\([^";]*\)"\{0,1\}.*/\1/p' <<<"$CTYPE")
[ -n "$BOUNDARY" ] && pass "serverkeygen: the Content-Type names the boundary" \
  || fail "serverkeygen: the Content-Type names the boundary" "$CTYPE"
# RFC 2046 §5.1.1: parts between --BOUNDARY lines; each part's headers end at
# the first empty line. Writes part1.hdr/part1.b64, part2.hdr/part2.b64.
tr -d '\r' <est.body | awk -v b="--$BOUNDARY" '
  $0 == b || $0 == b "--" { n++; inhdr = 1; next }
  n == 0 { next }
  inhdr && $0 == "" { inhdr = 0; next }
  inhdr { print > ("part" n ".hdr"); next }
  { print > ("part" n ".b64") }'
grep -qi '^content-type: *application/pkcs8' part1.hdr 2>/dev/null && pass "serverkeygen: part 1 is application/pkcs8" \
  || fail "serverkeygen: part 1 is application/pkcs8" "$(cat part1.hdr 2>/dev/null)"
grep -qi '^content-type: *application/pkcs7-mime' part2.hdr 2>/dev/null \
  && pass "serverkeygen: part 2 is application/pkcs7-mime" \
  || fail "serverkeygen: part 2 is application/pkcs7-mime" "$(cat part2.hdr 2>/dev/null)"
base64 -d part1.b64 2>/dev/null | openssl pkey -inform DER -out k1-server.key 2>/dev/null \
  && pass "serverkeygen: the key part decodes with openssl pkey -inform DER" \
  || fail "serverkeygen: the key part decodes with openssl pkey -inform DER" "$(head -c 300 part1.b64 2>/dev/null)"
openssl pkey -in k1-server.key -noout -text 2>/dev/null | grep -q 'prime256v1' \
  && pass "serverkeygen: the key is P-256 (the CSR's key type)" || fail "serverkeygen: the key is P-256 (the CSR's key type)" "$(openssl pkey -in k1-server.key -noout -text 2>&1 | tail -3)"
p7_certs part2.b64 k1.pem && [ "$(ncerts k1.pem)" = 1 ] && pass "serverkeygen: the certificate part is a PKCS#7 with one certificate" \
  || fail "serverkeygen: the certificate part is a PKCS#7 with one certificate" "$(head -c 300 part2.b64 2>/dev/null)"
[ -n "$(pubkey k1.pem)" ] && [ "$(pubkey k1.pem)" = "$(keypub k1-server.key)" ] \
  && pass "serverkeygen: the certificate's public key is the returned private key's" \
  || fail "serverkeygen: the certificate's public key is the returned private key's" "$(pubkey k1.pem)" "$(keypub k1-server.key)"
[ "$(pubkey k1.pem)" != "$(keypub k1.key)" ] && pass "serverkeygen: the key is new (not the CSR's)" \
  || fail "serverkeygen: the key is new (not the CSR's)" "$(pubkey k1.pem)"
[ "$(subject_of k1.pem)" = "$(csr_subject k1.csr)" ] && pass "serverkeygen: the certificate has the CSR's subject" \
  || fail "serverkeygen: the certificate has the CSR's subject" "$(subject_of k1.pem)"
ok "serverkeygen: openssl verify accepts the certificate with the cacerts chain" openssl verify -CAfile "$CHAIN" k1.pem
COUNT_AFTER=$(cert_count acme)
[ "$COUNT_AFTER" = $((COUNT_BEFORE + 1)) ] && pass "serverkeygen: one certificate was added to the store" \
  || fail "serverkeygen: one certificate was added to the store" "$COUNT_BEFORE before, $COUNT_AFTER after"
# The server's key is the CSR's key type (RFC 7030 §4.4.1.1); its certificate is a client certificate.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout k2.key -subj /CN=est-0301 \
  -out k2.csr 2>/dev/null
openssl req -in k2.csr -outform DER | base64 >k2.b64
enroll serverkeygen acme/devices k2 "${AUTH[@]}"
B2=$(sed -n 's/.*boundary="\{0,1\}\([^";]*\)"\{0,1\}.*/\1/p' <<<"$CTYPE")
tr -d '\r' <est.body | awk -v b="--$B2" '$0 == b || $0 == b "--" { n++; h = 1; next } n == 1 && h && $0 == "" { h = 0; next }
  n == 1 && !h { print }' | base64 -d 2>/dev/null | openssl pkey -inform DER -noout -text 2>/dev/null \
  | grep -q 'secp384r1' && pass "serverkeygen with a P-384 CSR: a P-384 key" \
  || fail "serverkeygen with a P-384 CSR: a P-384 key" "$STATUS $CTYPE"
csr k1n "/CN=est-0300/O=Acme"
enroll simplereenroll acme/devices k1n --cert k1.pem --key k1-server.key
issued "simplereenroll with the serverkeygen certificate and key (a two-attribute subject)" k1n k1n.pem
enroll serverkeygen acme/devices k1
expect "serverkeygen without credentials: 401" 401
enroll serverkeygen acme/devices k1 -u acme-auditor:password-of-acme-auditor
expect "serverkeygen as an auditor: 403" 403
enroll serverkeygen acme/devices sig "${AUTH[@]}"
expect "serverkeygen with a CSR whose signature is broken: 400" 400
grep -q 'BEGIN\|PRIVATE' log.txt && fail "no key material in the server log" "$(grep 'BEGIN\|PRIVATE' log.txt | head -3)" \
  || pass "no key material in the server log"

# ============================================================================
# 5. Audit
# ============================================================================
audit_all() {  # audit_all PATH TOKEN: every record, page by page, into audit.json
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
if audit_all /orgs/acme/audit "$ADMIN"; then pass "GET /orgs/acme/audit (admin), all pages"
else fail "GET /orgs/acme/audit (admin), all pages" "$STATUS $RESP"; fi
for a in est.simpleenroll:ok est.simpleenroll:denied est.simplereenroll:ok est.simplereenroll:denied \
  est.serverkeygen:ok est.serverkeygen:denied; do
  IFS=: read -r action outcome <<<"$a"
  jq -e --arg a "$action" --arg o "$outcome" 'any(.[]; .action==$a and .outcome==$o)' audit.json >/dev/null 2>&1 \
    && pass "the audit shows $action $outcome" || fail "the audit shows $action $outcome" \
    "$(jq -c '[.[]|select(.action|startswith("est."))|{action,outcome}]|unique' audit.json 2>/dev/null)"
done
jq -e --arg s "certificate:$(serial_of e1.pem) -> $(serial_of e1n.pem)" \
  'any(.[]; .action=="est.simplereenroll" and .outcome=="ok" and .target==$s)' audit.json >/dev/null 2>&1 \
  && pass "the audit names the re-enrolment old -> new serial" \
  || fail "the audit names the re-enrolment old -> new serial" \
    "$(jq -c '[.[]|select(.action=="est.simplereenroll")|.target]' audit.json 2>/dev/null)"
jq -e 'any(.[]; .action=="est.simpleenroll" and .outcome=="ok" and .actor=="user:acme-enroll")' audit.json >/dev/null 2>&1 \
  && pass "the audit names the enrollment user of simpleenroll" \
  || fail "the audit names the enrollment user of simpleenroll" \
    "$(jq -c '[.[]|select(.action=="est.simpleenroll")|.actor]|unique' audit.json 2>/dev/null)"
jq -e 'any(.[]; .action=="est.simpleenroll" and .outcome=="denied" and .actor=="user:acme-auditor")' audit.json >/dev/null 2>&1 \
  && pass "the audit shows the auditor's denied simpleenroll" || fail "the audit shows the auditor's denied simpleenroll" "$(jq -c '[.[]|select(.action=="est.simpleenroll")|{actor,outcome}]|unique' audit.json 2>/dev/null)"
jq -e 'all(.[]; (tostring|contains("password-of-")|not))' audit.json >/dev/null 2>&1 \
  && pass "no password reaches the audit" || fail "no password reaches the audit" "$(grep -o 'password-of-[a-z-]*' audit.json | sort -u)"
STATUS=$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/healthz" || echo 000)
[ "$STATUS" = 200 ] && pass "the server is up at the end" || fail "the server is up at the end" "healthz: $STATUS"
kill -TERM "$SERVER"; wait "$SERVER" || true
out=$("$DEVID" --home home audit verify 2>&1) && pass "devid audit verify: exit 0" \
  || fail "devid audit verify: exit 0" "$out"
grep -q 'audit chain intact' <<<"$out" && pass "devid audit verify says intact" || fail "devid audit verify says intact" "$out"
echo "# took ${SECONDS}s"
finish
