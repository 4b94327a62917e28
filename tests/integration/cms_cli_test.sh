#!/usr/bin/env bash
# `devid cms …` (the C++ client library over libcurl) against a running
# `devid serve`: login kept in <home>/cms-session.json, organizations, CAs,
# templates, API tokens, issuance checked by openssl, search, revocation;
# errors are one line and a non-zero exit.
# Usage: cms_cli_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
enter_scratch_dir
mkdir -m 700 home
export DEVID_PASSPHRASE=cms-cli-test-passphrase
D=("$DEVID" --home home)
"${D[@]}" ca init-root --org acme --subject "CN=Acme Root" >/dev/null
"${D[@]}" ca init-ica --org acme --name devices --subject "CN=Acme Devices" >/dev/null
echo "admin-password-123" >pw
"${D[@]}" admin bootstrap --user admin --password-file pw >/dev/null
start_serve "$DEVID" "$PWD/home"
[ -n "$PORT" ] || { fail "devid serve starts" "$(cat out.txt log.txt)"; finish; }
# The client's own home: a different folder, as on an operator's laptop.
mkdir -m 700 client
C=("$DEVID" --home client cms)

out=$("${C[@]}" --url "$URL" --cacert home/tls/ca.pem login --user admin --password-file pw 2>&1) \
  && grep -q "logged in as admin" <<<"$out" && pass "cms login" || fail "cms login" "$out"
[ "$(stat -c %a client/cms-session.json)" = 600 ] && pass "the session file is 0600" \
  || fail "the session file is 0600"
grep -q '"token":"devid_' client/cms-session.json && pass "the session keeps the token" \
  || fail "the session keeps the token"
out=$("${C[@]}" org create globex 2>&1) && grep -q '"name": "globex"' <<<"$out" \
  && pass "cms org create" || fail "cms org create" "$out"
out=$("${C[@]}" org list 2>&1) && grep -q '"acme"' <<<"$out" && grep -q '"globex"' <<<"$out" \
  && pass "cms org list" || fail "cms org list" "$out"
out=$("${C[@]}" ca list --org acme 2>&1) && grep -q '"devices"' <<<"$out" \
  && pass "cms ca list" || fail "cms ca list" "$out"
out=$("${C[@]}" ca create --org acme --name fleet --subject "CN=Acme Fleet" 2>&1) \
  && grep -q '"kind": "ica"' <<<"$out" && pass "cms ca create" || fail "cms ca create" "$out"
"${C[@]}" ca chain --org acme --ca fleet >chain.pem 2>err.txt \
  && [ "$(grep -c 'BEGIN CERTIFICATE' chain.pem)" = 2 ] && pass "cms ca chain" \
  || fail "cms ca chain" "$(cat err.txt)"
cat >sensor.json <<'JSON'
{"name": "sensor", "key_types": ["P-256"],
 "subject": {"required": ["CN"], "allowed": ["CN"], "patterns": {"CN": "sensor-[0-9]{4}"}},
 "key_usage": ["digitalSignature"], "extended_key_usage": ["clientAuth"],
 "validity_days": 30, "max_validity_days": 60}
JSON
out=$("${C[@]}" template create --org acme --file sensor.json 2>&1) && grep -q '"sensor"' <<<"$out" \
  && pass "cms template create" || fail "cms template create" "$out"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem \
  -subj /CN=sensor-0001 -out r.pem 2>/dev/null
out=$("${C[@]}" cert issue --org acme --ca fleet --template sensor --csr r.pem --out c.pem 2>&1) \
  && pass "cms cert issue" || fail "cms cert issue" "$out"
SERIAL=$(openssl x509 -in c.pem -noout -serial | cut -d= -f2)
openssl verify -CAfile chain.pem c.pem >/dev/null 2>&1 && pass "openssl verifies the issued certificate" \
  || fail "openssl verifies the issued certificate"
out=$("${C[@]}" cert list --org acme --status valid 2>&1) && grep -q "$SERIAL" <<<"$out" \
  && pass "cms cert list finds it" || fail "cms cert list finds it" "$out"
out=$("${C[@]}" cert revoke --org acme --serial "$SERIAL" --reason keyCompromise 2>&1) \
  && grep -q '"status": "revoked"' <<<"$out" && pass "cms cert revoke" || fail "cms cert revoke" "$out"
out=$("${C[@]}" cert list --org acme --status revoked 2>&1) && grep -q "$SERIAL" <<<"$out" \
  && pass "revoked certificates list it" || fail "revoked certificates list it" "$out"
out=$("${C[@]}" token create --org acme --role enrollment --name line-3 2>&1) \
  && TOKEN=$(sed -n 's/.*"token": "\(devid_[0-9A-F]*\)".*/\1/p' <<<"$out") && [ -n "$TOKEN" ] \
  && pass "cms token create shows the token once" || fail "cms token create shows the token once" "$out"
out=$("${C[@]}" token list --org acme 2>&1) && grep -q '"line-3"' <<<"$out" && ! grep -q devid_ <<<"$out" \
  && pass "cms token list shows no secrets" || fail "cms token list shows no secrets" "$out"
# The enrollment token may issue, not list.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k2.pem \
  -subj /CN=dev-0002 -out r2.pem 2>/dev/null
out=$("${C[@]}" --token "$TOKEN" cert issue --org acme --ca devices --csr r2.pem 2>&1) \
  && grep -q 'BEGIN CERTIFICATE' <<<"$out" && pass "an enrollment token issues" \
  || fail "an enrollment token issues" "$out"
rc=0; out=$("${C[@]}" --token "$TOKEN" cert list --org acme 2>&1) || rc=$?
((rc == 1)) && [ "$(wc -l <<<"$out")" = 1 ] && grep -q "devid: error: the CMS answered 403" <<<"$out" \
  && pass "an enrollment token may not list: one error line" || fail "an enrollment token may not list: one error line" "$out"

# A device the registry has disabled gets no certificate, by any path.
ADMIN_TOKEN=$(sed -n 's/.*"token":"\(devid_[0-9A-F]*\)".*/\1/p' client/cms-session.json)
CURL=(curl -s --max-time 10 --cacert home/tls/ca.pem -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json')
"${CURL[@]}" -d '{"identifier":"dev-0009"}' "$URL/api/v1/orgs/acme/devices" >/dev/null
"${CURL[@]}" -X PATCH -d '{"status":"disabled"}' "$URL/api/v1/orgs/acme/devices/dev-0009" >/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k9.pem \
  -subj /CN=dev-0009 -out r9.pem 2>/dev/null
rc=0; out=$("${C[@]}" cert issue --org acme --ca devices --csr r9.pem 2>&1) || rc=$?
((rc == 1)) && grep -q "device 'dev-0009' is disabled" <<<"$out" \
  && pass "a disabled device gets no certificate" || fail "a disabled device gets no certificate" "$out"
openssl req -in r9.pem -outform DER | base64 >r9.b64
code=$(curl -s --max-time 10 --cacert home/tls/ca.pem -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/pkcs10' --data-binary @r9.b64 "$URL/.well-known/est/acme/devices/simpleenroll")
[ "$code" = 422 ] && pass "nor through EST (422)" || fail "nor through EST (422)" "$code"

# An issuing CA signed by an external root, imported with its key.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout x.key -subj /CN=other \
  -out other-ca.pem 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ext-root.key \
  -subj "/CN=External Root" -days 30 -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign -out ext-root.pem 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ext-ica.key \
  -subj "/CN=Externally Signed ICA" -out ext-ica.csr 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >ica.ext
openssl x509 -req -in ext-ica.csr -CA ext-root.pem -CAkey ext-root.key -set_serial 0x42 -days 20 \
  -extfile ica.ext -out ext-ica.pem 2>/dev/null
import_body() {  # import_body CHAIN-FILES... KEY-FILE
  python3 -c 'import json,sys; print(json.dumps({"name": sys.argv[1], "certificate_chain": "".join(open(f).read() for f in sys.argv[2:-1]), "key": open(sys.argv[-1]).read()}))' "$@"
}
import_status() { "${CURL[@]}" -o import.out -w '%{http_code}' -d "$(import_body "$@")" "$URL/api/v1/orgs/acme/cas/import"; }
code=$(import_status external ext-ica.pem ext-root.pem ext-ica.key)
[ "$code" = 201 ] && pass "import an externally signed issuing CA" || fail "import an externally signed issuing CA" "$code $(cat import.out)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k5.pem \
  -subj /CN=dev-0005 -out r5.pem 2>/dev/null
out=$("${C[@]}" cert issue --org acme --ca external --csr r5.pem --out c5.pem 2>&1) \
  && openssl verify -CAfile ext-root.pem -untrusted ext-ica.pem c5.pem >/dev/null 2>&1 \
  && pass "its certificates verify up to the external root" || fail "its certificates verify up to the external root" "$out"
code=$(import_status wrongkey ext-ica.pem ext-root.pem k5.pem)
[ "$code" = 422 ] && pass "import with a key that is not the CA's: 422" || fail "import with a key that is not the CA's: 422" "$code $(cat import.out)"
code=$(import_status wrongroot ext-ica.pem other-ca.pem ext-ica.key)
[ "$code" = 400 ] && pass "import with a chain to another root: 400" || fail "import with a chain to another root: 400" "$code $(cat import.out)"
code=$(import_status leaf c5.pem ext-ica.pem ext-root.pem k5.pem)
[ "$code" = 422 ] && pass "import of a non-CA certificate: 422" || fail "import of a non-CA certificate: 422" "$code $(cat import.out)"

# Errors: one line, exit 1.
echo "not-the-password" >bad
rc=0; out=$("${C[@]}" login --user admin --password-file bad 2>&1) || rc=$?
((rc == 1)) && grep -q "devid: error: the CMS answered 401" <<<"$out" && pass "a wrong password: 401, exit 1" \
  || fail "a wrong password: 401, exit 1" "$out"
mkdir -m 700 other
rc=0; out=$("$DEVID" --home other cms --url "$URL" --cacert home/tls/ca.pem org list 2>&1) || rc=$?
((rc == 1)) && grep -q "not logged in" <<<"$out" && pass "no session: a clear error" \
  || fail "no session: a clear error" "$out"
rc=0; out=$("$DEVID" --home other cms --url "$URL" --cacert other-ca.pem login --user admin --password-file pw 2>&1) || rc=$?
((rc == 1)) && grep -q "reaching the CMS" <<<"$out" && pass "an untrusted server certificate is refused" \
  || fail "an untrusted server certificate is refused" "$out"
rc=0; out=$("$DEVID" --home other cms --url "http://127.0.0.1:$PORT" org list 2>&1) || rc=$?
((rc == 1)) && grep -q "https://" <<<"$out" && pass "plain http URLs are refused" \
  || fail "plain http URLs are refused" "$out"
"$DEVID" --home home audit verify >/dev/null 2>&1 && pass "the audit chain is intact" \
  || fail "the audit chain is intact"
finish
