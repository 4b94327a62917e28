#!/usr/bin/env bash
# `devid factory` (seed figure 2) against a running `devid serve`, with openssl
# as the production site's peer: an order sealed for the site (CMS
# EnvelopedData that `openssl cms -decrypt` opens with the site key and only
# with it), chips personalised from it (lifecycle, C001 chain verified by
# openssl, slot-0 key = certificate key, manifest fingerprints), keys made on
# the chips with their CSRs signed as one batch, interrupted runs resumed
# without duplicate certificates (DEVID_FACTORY_FAIL_AFTER test hook), bad
# input refused without leaving files, and a factory chip's TLS handshake
# against openssl s_server.
# Usage: factory_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
enter_scratch_dir
mkdir -m 700 home client
export DEVID_PASSPHRASE=factory-test-passphrase
D=("$DEVID" --home home)
"${D[@]}" ca init-root --org acme --subject "CN=Acme Root,O=Acme" >/dev/null
for ca in line1 line2 line3 line4; do
  "${D[@]}" ca init-ica --org acme --name "$ca" --subject "CN=Acme $ca,O=Acme" >/dev/null
done
echo "admin-password-123" >pw
"${D[@]}" admin bootstrap --user admin --password-file pw >/dev/null
start_serve "$DEVID" "$PWD/home"
[ -n "$PORT" ] || { fail "devid serve starts" "$(cat out.txt log.txt)"; finish; }
C=("$DEVID" --home client)
"${C[@]}" cms --url "$URL" --cacert home/tls/ca.pem login --user admin --password-file pw >/dev/null
F=("${C[@]}" factory)

# certs CA: how many certificates the CMS has issued from CA.
certs() { "${C[@]}" cms cert list --org acme --ca "$1" --status any | grep -c '"serial"' || true; }
# chain_of CA: its chain (ICA, root) from the CMS; root.pem is the org's root.
chain_of() { "${C[@]}" cms ca chain --org acme --ca "$1" >"chain-$1.pem"; }
chain_of line1
awk '/BEGIN CERT/{n++} n==2' chain-line1.pem >root.pem
# split_c001 IMAGE: the chip's C001 into c001.pem, dev.pem (device) and ica.pem.
split_c001() {
  rm -f c001.pem dev.pem ica.pem
  "$DEVID" se file read --image "$1" --id C001 --out c001.pem &&
    awk '/BEGIN CERT/{n++} n==1' c001.pem >dev.pem && awk '/BEGIN CERT/{n++} n==2' c001.pem >ica.pem
}
spki() { openssl pkey -pubin -in "$1" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; }
# check_chips DIR PREFIX N...: every chip operational, C001 verifies to the
# root, the slot-0 key is the certificate's, the manifest entry matches.
check_chips() {
  local dir=$1 prefix=$2 bad=""
  shift 2
  for n in "$@"; do
    local id="$prefix-$n" img="$dir/$prefix-$n.img"
    "$DEVID" se info --image "$img" | grep -q "lifecycle  operational" || bad+=" $id:lifecycle"
    split_c001 "$img" || { bad+=" $id:C001"; continue; }
    openssl verify -CAfile root.pem -untrusted ica.pem dev.pem >/dev/null 2>&1 || bad+=" $id:verify"
    openssl x509 -in dev.pem -noout -subject | grep -q "CN = $id, O = Acme" || bad+=" $id:subject"
    "$DEVID" se pubkey --image "$img" --slot 0 --out slot0.pem
    openssl x509 -in dev.pem -pubkey -noout >certkey.pem
    [ "$(spki slot0.pem)" = "$(spki certkey.pem)" ] || bad+=" $id:key"
    local fp serial
    fp=$(openssl x509 -in dev.pem -noout -fingerprint -sha256 | cut -d= -f2 | tr -d :)
    serial=$(openssl x509 -in dev.pem -noout -serial | cut -d= -f2 | sed 's/^0*//')
    jq -e --arg id "$id" --arg fp "$fp" --arg s "$serial" \
      '.chips[] | select(.device_id == $id) | select((.fingerprint_sha256 | ascii_upcase) == $fp
        and (.certificate_serial | ltrimstr("0")) == $s and .image == ($id + ".img")
        and (.chip_serial | length) > 0)' "$dir/manifest.json" >/dev/null || bad+=" $id:manifest"
  done
  if [ -z "$bad" ]; then pass "$dir: chips $* operational, chains verify, keys and manifest match"
  else fail "$dir: chips $* operational, chains verify, keys and manifest match" "$bad"; fi
}
unique_entries() { jq -r '.chips[].device_id' "$1/manifest.json" | sort -u | wc -l; }

# The production site: an EC P-256 key-agreement certificate; and another site.
for s in site other; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $s.key -out $s.pem \
    -subj "/CN=$s production site/O=Seal" -days 30 -addext "keyUsage=critical,keyAgreement" \
    2>/dev/null
done

# --- keys made by the CMS: the order ----------------------------------------------
out=$("${F[@]}" order --org acme --ca line1 --template device --count 3 \
  --subject "CN=dev-{n},O=Acme" --site-cert site.pem --out order.bundle 2>&1) \
  && grep -q "ordered 3 identities" <<<"$out" && pass "factory order" || fail "factory order" "$out"
openssl cms -cmsout -print -inform DER -in order.bundle 2>/dev/null \
  | grep -q "contentType: pkcs7-envelopedData" && pass "the bundle is a CMS EnvelopedData" \
  || fail "the bundle is a CMS EnvelopedData"
! grep -aq -e "BEGIN" -e "PRIVATE KEY" order.bundle && pass "no PEM (key or certificate) in clear" \
  || fail "no PEM (key or certificate) in clear"
openssl cms -decrypt -inform DER -in order.bundle -recip site.pem -inkey site.key -out opened.pem \
  2>/dev/null && [ "$(grep -c 'BEGIN PRIVATE KEY' opened.pem)" = 3 ] \
  && [ "$(grep -c 'BEGIN CERTIFICATE' opened.pem)" = 5 ] \
  && pass "openssl cms -decrypt with the site key: 3 keys, 3 certificates and the chain" \
  || fail "openssl cms -decrypt with the site key: 3 keys, 3 certificates and the chain"
rm -f opened.pem
! openssl cms -decrypt -inform DER -in order.bundle -inkey other.key -out x.pem >/dev/null 2>&1 \
  && pass "another site's key does not open it" || fail "another site's key does not open it"
[ "$(certs line1)" = 3 ] && pass "the CMS recorded 3 certificates" \
  || fail "the CMS recorded 3 certificates" "$(certs line1)"
rc=0; out=$("${F[@]}" order --org acme --ca line1 --count 1 --subject "CN=dev-{n},O=Acme" \
  --site-cert site.pem --out order.bundle 2>&1) || rc=$?
((rc == 1)) && grep -q "exists" <<<"$out" && [ "$(certs line1)" = 3 ] \
  && pass "an order never overwrites a bundle (and nothing is issued)" \
  || fail "an order never overwrites a bundle (and nothing is issued)" "$out"

# --- bad input leaves nothing --------------------------------------------------------
rc=0; out=$("${F[@]}" personalize --bundle order.bundle --site-key other.key --site-cert site.pem \
  --out-dir chips 2>&1) || rc=$?
((rc == 1)) && [ "$(wc -l <<<"$out")" = 1 ] && grep -q "opening the bundle" <<<"$out" && [ ! -e chips ] \
  && pass "wrong site key: one error line, nothing written" \
  || fail "wrong site key: one error line, nothing written" "$out"
rc=0; out=$("${F[@]}" personalize --bundle order.bundle --site-key other.key --site-cert other.pem \
  --out-dir chips 2>&1) || rc=$?
((rc == 1)) && [ ! -e chips ] && pass "another site's key and certificate: refused, nothing written" \
  || fail "another site's key and certificate: refused, nothing written" "$out"
cp order.bundle broken.bundle
flip_byte broken.bundle $(($(stat -c %s broken.bundle) - 100))
rc=0; out=$("${F[@]}" personalize --bundle broken.bundle --site-key site.key --site-cert site.pem \
  --out-dir chips 2>&1) || rc=$?
((rc == 1)) && [ ! -e chips ] && pass "corrupted bundle: refused, nothing written" \
  || fail "corrupted bundle: refused, nothing written" "$out"
head -c 200 order.bundle >short.bundle
rc=0; out=$("${F[@]}" personalize --bundle short.bundle --site-key site.key --site-cert site.pem \
  --out-dir chips 2>&1) || rc=$?
((rc == 1)) && [ ! -e chips ] && pass "truncated bundle: refused, nothing written" \
  || fail "truncated bundle: refused, nothing written" "$out"

# --- personalisation from the bundle -----------------------------------------------------
out=$("${F[@]}" personalize --bundle order.bundle --site-key site.key --site-cert site.pem \
  --out-dir chips 2>&1) && grep -q "3 chips in chips (3 made now" <<<"$out" \
  && pass "personalize from the bundle: 3 chips" || fail "personalize from the bundle: 3 chips" "$out"
check_chips chips dev 1 2 3
[ "$(jq '.chips | length' chips/manifest.json)" = 3 ] && [ "$(unique_entries chips)" = 3 ] \
  && pass "manifest: 3 entries" || fail "manifest: 3 entries" "$(cat chips/manifest.json)"
[ "$(stat -c %a chips/pins.json)" = 600 ] && [ "$(stat -c %a chips/manufacturer.key)" = 600 ] \
  && [ "$(jq -r '."dev-2"' chips/pins.json | grep -cE '^[0-9]{8}$')" = 1 ] \
  && pass "random PINs and manufacturer key kept 0600" \
  || fail "random PINs and manufacturer key kept 0600" "$(ls -l chips)"
! grep -rq "PRIVATE KEY" chips && pass "no private key in the output folder" \
  || fail "no private key in the output folder"
PIN2=$(jq -r '."dev-2"' chips/pins.json)
"$DEVID" se info --image chips/dev-2.img --pin "$PIN2" >/dev/null 2>&1 \
  && pass "the chip takes the PIN of pins.json" || fail "the chip takes the PIN of pins.json"
! "$DEVID" se keygen --image chips/dev-2.img --slot 0 >/dev/null 2>&1 \
  && ! "$DEVID" se file write --image chips/dev-2.img --id CA01 --in root.pem --public-key \
    --pin "$PIN2" >/dev/null 2>&1 \
  && pass "operational: no new device key without the PIN, CA01 never rewritten" \
  || fail "operational: no new device key without the PIN, CA01 never rewritten"
out=$("${F[@]}" personalize --bundle order.bundle --site-key site.key --site-cert site.pem \
  --out-dir chips 2>&1) && grep -q "0 made now, 3 done before" <<<"$out" \
  && pass "a rerun of a finished order changes nothing" \
  || fail "a rerun of a finished order changes nothing" "$out"
cat site.key site.pem >site-both.pem
"${F[@]}" order --org acme --ca line1 --count 1 --start 10 --subject "CN=dev-{n},O=Acme" \
  --site-cert site.pem --out order2.bundle >/dev/null
rc=0; out=$("${F[@]}" personalize --bundle order2.bundle --site-key site-both.pem --out-dir chips 2>&1) \
  || rc=$?
((rc == 1)) && grep -q "belongs to another order" <<<"$out" && [ ! -e chips/dev-10.img ] \
  && pass "the folder of another order is refused" || fail "the folder of another order is refused" "$out"
mkdir junk && touch junk/x
rc=0; out=$("${F[@]}" personalize --bundle order2.bundle --site-key site-both.pem --out-dir junk 2>&1) \
  || rc=$?
((rc == 1)) && [ ! -e junk/dev-10.img ] && pass "a folder of no order is refused" \
  || fail "a folder of no order is refused" "$out"

# Interrupted after 2 chips (the third half made), then resumed.
"${F[@]}" order --org acme --ca line1 --count 4 --start 20 --subject "CN=dev-{n},O=Acme" \
  --site-cert site.pem --out order3.bundle >/dev/null
echo "4321" >pin.txt
rc=0; out=$(DEVID_FACTORY_FAIL_AFTER=2 "${F[@]}" personalize --bundle order3.bundle \
  --site-key site-both.pem --out-dir run3 --pin-file pin.txt 2>&1) || rc=$?
((rc == 1)) && grep -q "fault-injection" <<<"$out" && [ -e run3/dev-22.img ] && [ ! -e run3/dev-23.img ] \
  && "$DEVID" se info --image run3/dev-22.img | grep -q "lifecycle  personalised" \
  && pass "DEVID_FACTORY_FAIL_AFTER=2: stops with chip 3 half made" \
  || fail "DEVID_FACTORY_FAIL_AFTER=2: stops with chip 3 half made" "$out"
out=$("${F[@]}" personalize --bundle order3.bundle --site-key site-both.pem --out-dir run3 \
  --pin-file pin.txt 2>&1) && grep -q "4 chips in run3 (2 made now, 2 done before)" <<<"$out" \
  && pass "the rerun redoes the half-made chip and completes" \
  || fail "the rerun redoes the half-made chip and completes" "$out"
check_chips run3 dev 20 21 22 23
[ "$(unique_entries run3)" = 4 ] && [ ! -e run3/pins.json ] \
  && "$DEVID" se info --image run3/dev-23.img --pin 4321 >/dev/null 2>&1 \
  && pass "4 unique manifest entries; the --pin-file PIN opens the chips" \
  || fail "4 unique manifest entries; the --pin-file PIN opens the chips"
[ "$(certs line1)" = 8 ] && pass "the CMS issued each bundle identity once (3+1+4)" \
  || fail "the CMS issued each bundle identity once (3+1+4)" "$(certs line1)"

# --- keys made on the chip ------------------------------------------------------------
chain_of line2
out=$("${F[@]}" personalize --generate-on-chip --org acme --ca line2 --template device --count 3 \
  --subject "CN=node-{n},O=Acme" --out-dir onchip 2>&1) && grep -q "3 chips in onchip (3 made now" <<<"$out" \
  && pass "personalize --generate-on-chip: 3 chips" \
  || fail "personalize --generate-on-chip: 3 chips" "$out"
check_chips onchip node 1 2 3
[ "$(certs line2)" = 3 ] && [ "$(unique_entries onchip)" = 3 ] \
  && pass "the CMS shows exactly 3 new certificates" \
  || fail "the CMS shows exactly 3 new certificates" "$(certs line2)"
! grep -rq "PRIVATE KEY" onchip && pass "on-chip: no private key outside the chips" \
  || fail "on-chip: no private key outside the chips"
rc=0; out=$("${F[@]}" personalize --generate-on-chip --org acme --ca line2 --count 4 \
  --subject "CN=node-{n},O=Acme" --out-dir onchip 2>&1) || rc=$?
((rc == 1)) && grep -q "another order" <<<"$out" && [ "$(certs line2)" = 3 ] \
  && pass "on-chip: another order's folder is refused before the CMS is asked" \
  || fail "on-chip: another order's folder is refused before the CMS is asked" "$out"

# Interrupted after 2 chips (the CMS answer journalled), then resumed.
rc=0; out=$(DEVID_FACTORY_FAIL_AFTER=2 "${F[@]}" personalize --generate-on-chip --org acme \
  --ca line3 --count 4 --subject "CN=unit-{n},O=Acme" --out-dir run4 2>&1) || rc=$?
((rc == 1)) && grep -q "fault-injection" <<<"$out" && [ "$(certs line3)" = 4 ] \
  && pass "on-chip, FAIL_AFTER=2: stops after the batch was signed" \
  || fail "on-chip, FAIL_AFTER=2: stops after the batch was signed" "$out"
out=$("${F[@]}" personalize --generate-on-chip --org acme --ca line3 --count 4 \
  --subject "CN=unit-{n},O=Acme" --out-dir run4 2>&1) \
  && grep -q "4 chips in run4 (2 made now, 2 done before)" <<<"$out" \
  && pass "on-chip: the rerun completes" || fail "on-chip: the rerun completes" "$out"
chain_of line3
check_chips run4 unit 1 2 3 4
[ "$(certs line3)" = 4 ] && [ "$(unique_entries run4)" = 4 ] \
  && pass "on-chip: no duplicate certificates (4 in the CMS, 4 unique entries)" \
  || fail "on-chip: no duplicate certificates (4 in the CMS, 4 unique entries)" "$(certs line3)"

# Interrupted between the CMS's answer and the journal: the rerun finds the
# certificates by the chips' public keys instead of asking again.
rc=0; out=$(DEVID_FACTORY_FAIL_AFTER=cms-answer "${F[@]}" personalize --generate-on-chip \
  --org acme --ca line4 --count 3 --subject "CN=box-{n},O=Acme" --out-dir run5 2>&1) || rc=$?
((rc == 1)) && [ "$(certs line4)" = 3 ] && [ "$(jq -r .state run5/journal/box-1.json)" = submitted ] \
  && pass "FAIL_AFTER=cms-answer: signed by the CMS, not journalled" \
  || fail "FAIL_AFTER=cms-answer: signed by the CMS, not journalled" "$out"
out=$("${F[@]}" personalize --generate-on-chip --org acme --ca line4 --count 3 \
  --subject "CN=box-{n},O=Acme" --out-dir run5 2>&1) \
  && [ "$(grep -c "found in the CMS" <<<"$out")" = 3 ] && [ "$(certs line4)" = 3 ] \
  && pass "the rerun finds the 3 certificates in the CMS: none issued twice" \
  || fail "the rerun finds the 3 certificates in the CMS: none issued twice" "$out" "$(certs line4)"
chain_of line4
check_chips run5 box 1 2 3

# --- a factory chip in figure 3 ----------------------------------------------------------
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" -out srv.csr 2>/dev/null
tls_check() {  # tls_check CA IMAGE DEVICE-ID: s_server's certificate from the chip's own ICA
  "${C[@]}" cms cert issue --org acme --ca "$1" --template server --csr srv.csr --out "srv-$1.pem" \
    >/dev/null
  cp "chain-$1.pem" chain.pem
  start_tls_server "srv-$1.pem" srv.key
  rc=0; out=$(timeout 30 "$DEVID" agent tls-probe --image "$2" --slot 0 \
    --connect "127.0.0.1:$PORT" --server-name localhost 2>&1) || rc=$?
  sleep 0.3
  ((rc == 0)) && grep -q "subject=CN = $3" server.out \
    && pass "figure 3 with factory chip $2: mutual TLS with openssl s_server" \
    || fail "figure 3 with factory chip $2: mutual TLS with openssl s_server" "$out" "$(cat server.out)"
}
tls_check line1 chips/dev-1.img dev-1
tls_check line2 onchip/node-2.img node-2

finish
