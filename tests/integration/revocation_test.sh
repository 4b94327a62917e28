#!/usr/bin/env bash
# Integration test of devid serve's revocation endpoints with OpenSSL and curl
# as the peers: RFC 6960 OCSP (POST and GET) answering good, revoked (with its
# reason) and unknown, with the nonce echoed and the CA's signature verified
# by `openssl ocsp`; the CRL verified by `openssl crl`; malformed requests,
# wrong content types, unknown CAs and a locked CA key answered cleanly.
# Usage: revocation_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
enter_scratch_dir
export DEVID_PASSPHRASE=revocation-test
mkdir -m 700 home
ok "init root" "$DEVID" --home home ca init-root --org acme --subject "CN=Acme Root CA,O=Acme"
ok "init ICA" "$DEVID" --home home ca init-ica --org acme --name devices --subject "CN=Acme Devices ICA,O=Acme"
ok "export ICA" "$DEVID" --home home ca export --org acme --ca devices --out ica.pem
ok "export chain" "$DEVID" --home home ca export --org acme --ca devices --chain --out chain.pem
for n in good revoked; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$n.key" \
    -subj "/CN=$n" -out "$n.csr" 2>/dev/null
  ok "issue $n" "$DEVID" --home home ca issue --org acme --ca devices --template device --csr "$n.csr" --out "$n.pem"
done
SERIAL=$(openssl x509 -in revoked.pem -noout -serial | cut -d= -f2)
ok "revoke" "$DEVID" --home home ca revoke --org acme --serial "$SERIAL" --reason keyCompromise
# A certificate devid never issued, with the ICA's name as its issuer: "unknown".
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout u.key \
  -subj "/CN=Acme Devices ICA/O=Acme" -days 2 -out fake-ica.pem 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout u2.key -subj /CN=unknown \
  -out u.csr 2>/dev/null
openssl x509 -req -in u.csr -CA fake-ica.pem -CAkey u.key -set_serial 0x1234 -days 2 -out unknown.pem 2>/dev/null

start() { start_serve "$DEVID" "$PWD/home"; }
C=(curl -s --max-time 10 --cacert home/tls/ca.pem)
start

for n in good revoked unknown; do
  openssl ocsp -issuer ica.pem -cert "$n.pem" -reqout "$n.req" >/dev/null 2>&1
  "${C[@]}" -H 'Content-Type: application/ocsp-request' --data-binary @"$n.req" "$URL/ocsp/acme/devices" -o "$n.resp"
  # With the saved request: the signature (by the issuing CA) and the nonce are checked.
  out=$(openssl ocsp -reqin "$n.req" -respin "$n.resp" -issuer ica.pem -CAfile chain.pem 2>&1 || true)
  grep -q 'Response verify OK' <<<"$out" && ! grep -qi 'nonce' <<<"$out" \
    && pass "OCSP POST $n: the CA's signature verifies, the nonce is echoed" \
    || fail "OCSP POST $n: the CA's signature verifies, the nonce is echoed" "$out"
  text=$(openssl ocsp -respin "$n.resp" -resp_text -noverify 2>&1 || true)
  grep -q "Cert Status: $n" <<<"$text" && pass "OCSP POST $n: status $n" || fail "OCSP POST $n: status $n" "$text"
done
out=$(openssl ocsp -respin revoked.resp -resp_text -noverify 2>&1 || true)
grep -q 'Revocation Reason: keyCompromise' <<<"$out" && grep -q 'Revocation Time' <<<"$out" \
  && pass "OCSP revoked: time and reason keyCompromise" || fail "OCSP revoked: time and reason keyCompromise" "$out"

# RFC 6960 A.1: GET with the base64 request, URL-encoded.
b64=$(base64 -w0 good.req | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
"${C[@]}" "$URL/ocsp/acme/devices/$b64" -o get.resp
out=$(openssl ocsp -reqin good.req -respin get.resp -issuer ica.pem -CAfile chain.pem 2>&1 || true)
text=$(openssl ocsp -respin get.resp -resp_text -noverify 2>&1 || true)
grep -q 'Response verify OK' <<<"$out" && grep -q 'Cert Status: good' <<<"$text" \
  && pass "OCSP GET: good, verified" || fail "OCSP GET: good, verified" "$out" "$text"

# The CRL.
"${C[@]}" "$URL/crl/acme/devices.crl" -o devices.crl
out=$(openssl crl -inform DER -in devices.crl -CAfile chain.pem -noout -text 2>&1 || true)
grep -q 'verify OK' <<<"$out" && grep -q "Serial Number: $SERIAL" <<<"$out" \
  && pass "the CRL verifies and lists the revoked serial" || fail "the CRL verifies and lists the revoked serial" "$out"

# Bad requests.
head -c 200 /dev/urandom >junk.bin
"${C[@]}" -H 'Content-Type: application/ocsp-request' --data-binary @junk.bin "$URL/ocsp/acme/devices" -o junk.resp
grep -qi 'malformedrequest' <<<"$(openssl ocsp -respin junk.resp -resp_text 2>&1)" \
  && pass "garbage OCSP request: malformedRequest response" || fail "garbage OCSP request: malformedRequest response"
"${C[@]}" "$URL/ocsp/acme/devices/%%%" -o bad.resp
grep -qi 'malformedrequest' <<<"$(openssl ocsp -respin bad.resp -resp_text 2>&1)" \
  && pass "bad GET encoding: malformedRequest response" || fail "bad GET encoding: malformedRequest response"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' --data-binary @good.req "$URL/ocsp/acme/devices")
[ "$code" = 415 ] && pass "wrong content type: 415" || fail "wrong content type: 415" "$code"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/crl/nobody/devices.crl")
[ "$code" = 404 ] && pass "unknown organization: 404" || fail "unknown organization: 404" "$code"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/crl/acme/..%2F..%2Fetc.crl")
[ "$code" = 404 ] && pass "odd CA names: 404" || fail "odd CA names: 404" "$code"
[ "$("${C[@]}" "$URL/healthz")" = '{"status":"ok"}' ] && pass "the server is still up" || fail "the server is still up"
grep -q 'devid_ocsp_responses_total' <<<"$("${C[@]}" "$URL/metrics")" && pass "OCSP responses are counted" \
  || fail "OCSP responses are counted"

# RFC 5019: a request without a nonce is answered from a short cache (the same
# signed bytes again); one with a nonce is signed afresh each time. A
# revocation through this server empties the cache at once.
ocsp_post() { "${C[@]}" -H 'Content-Type: application/ocsp-request' --data-binary @"$1" "$URL/ocsp/acme/devices" -o "$2"; }
openssl ocsp -issuer ica.pem -cert good.pem -no_nonce -reqout nn.req >/dev/null 2>&1
ocsp_post nn.req nn1.resp
ocsp_post nn.req nn2.resp
cmp -s nn1.resp nn2.resp && pass "a request without a nonce is answered from the cache" \
  || fail "a request without a nonce is answered from the cache"
grep -q 'Cert Status: good' <<<"$(openssl ocsp -respin nn1.resp -resp_text -noverify 2>&1)" \
  && pass "the cached answer says good" || fail "the cached answer says good"
ocsp_post good.req n1.resp
ocsp_post good.req n2.resp
! cmp -s n1.resp n2.resp && pass "a request with a nonce is signed afresh" \
  || fail "a request with a nonce is signed afresh"
echo "revocation-admin-pw" >admin.pw
"$DEVID" --home home admin bootstrap --user admin --password-file admin.pw >/dev/null
TOKEN=$("${C[@]}" -H 'Content-Type: application/json' -d '{"username":"admin","password":"revocation-admin-pw"}' \
  "$URL/api/v1/auth/login" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
GOOD=$(openssl x509 -in good.pem -noout -serial | cut -d= -f2)
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"reason":"superseded"}' "$URL/api/v1/orgs/acme/certificates/$GOOD/revoke")
[ "$code" = 200 ] && pass "revoke through the API" || fail "revoke through the API" "$code"
ocsp_post nn.req nn3.resp
grep -q 'Cert Status: revoked' <<<"$(openssl ocsp -respin nn3.resp -resp_text -noverify 2>&1)" \
  && pass "after a revocation here the cache is not used: revoked at once" \
  || fail "after a revocation here the cache is not used: revoked at once"
# The CRL is made anew only when the CA's revocations change (by any process).
crl_number() { openssl crl -inform DER -in "$1" -noout -crlnumber | cut -d= -f2; }
"${C[@]}" "$URL/crl/acme/devices.crl" -o crl-a.crl
"${C[@]}" "$URL/crl/acme/devices.crl" -o crl-b.crl
cmp -s crl-a.crl crl-b.crl && pass "an unchanged CA's CRL is served again, not renumbered" \
  || fail "an unchanged CA's CRL is served again, not renumbered" "$(crl_number crl-a.crl) $(crl_number crl-b.crl)"
grep -q "Serial Number: $GOOD" <<<"$(openssl crl -inform DER -in crl-a.crl -noout -text)" \
  && pass "the CRL lists the certificate revoked through the API" \
  || fail "the CRL lists the certificate revoked through the API"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout third.key -subj /CN=third \
  -out third.csr 2>/dev/null
"$DEVID" --home home ca issue --org acme --ca devices --template device --csr third.csr --out third.pem >/dev/null
THIRD=$(openssl x509 -in third.pem -noout -serial | cut -d= -f2)
"$DEVID" --home home ca revoke --org acme --serial "$THIRD" --reason superseded >/dev/null
"${C[@]}" "$URL/crl/acme/devices.crl" -o crl-c.crl
(($(crl_number crl-c.crl) > $(crl_number crl-b.crl))) \
  && grep -q "Serial Number: $THIRD" <<<"$(openssl crl -inform DER -in crl-c.crl -noout -text)" \
  && pass "a revocation by another process (devid ca revoke) gives a new CRL at once" \
  || fail "a revocation by another process (devid ca revoke) gives a new CRL at once" "$(crl_number crl-c.crl)"
kill -TERM "$SERVER"; wait "$SERVER" || true

# Without the CA passphrase the endpoints say so (503), nothing else breaks.
unset DEVID_PASSPHRASE
start
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/crl/acme/devices.crl")
[ "$code" = 503 ] && pass "no passphrase: 503 for the CRL" || fail "no passphrase: 503 for the CRL" "$code"
kill -TERM "$SERVER"; wait "$SERVER" || true
finish
