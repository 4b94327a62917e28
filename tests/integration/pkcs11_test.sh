#!/usr/bin/env bash
# Integration test of libdevid-pkcs11.so with OpenSC's pkcs11-tool as the peer:
# slots and token, mechanisms, objects before and after login, ECDSA signatures
# that openssl verifies, key-pair generation in the chip, ECDH equal to
# OpenSSL's, SHA-256 and random bytes from the chip, private keys that never
# come out, wrong PINs and lock-out; the chip list from the environment and
# from a configuration file.
# Usage: pkcs11_test.sh PATH/TO/devid PATH/TO/libdevid-pkcs11.so
set -euo pipefail
DEVID=$(realpath "$1")
MODULE=$(realpath "$2")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
enter_scratch_dir
export DEVID_PASSPHRASE=pkcs11-test
P11=(pkcs11-tool --module "$MODULE")
PIN=123456

# A personalised chip: P-256 key in slot 0 with its certificate chain in C001.
mkdir -m 700 home
ok "init root" "$DEVID" --home home ca init-root --org acme --subject "CN=Acme Root CA,O=Acme"
ok "init ICA" "$DEVID" --home home ca init-ica --org acme --name devices --subject "CN=Acme Devices ICA,O=Acme"
ok "export ICA" "$DEVID" --home home ca export --org acme --ca devices --out ica.pem
ok "create the chip" "$DEVID" se create --image chip.img --serial SN-P11 --pin "$PIN"
ok "keygen slot 0" "$DEVID" se keygen --image chip.img --slot 0
ok "pubkey slot 0" "$DEVID" se pubkey --image chip.img --slot 0 --out slot0.pub
ok "CSR in the chip" "$DEVID" se csr --image chip.img --slot 0 --subject "CN=device-1,O=Acme" --out dev.csr
ok "issue" "$DEVID" --home home ca issue --org acme --ca devices --template device --csr dev.csr --out dev.pem
cat dev.pem ica.pem >chain.pem
ok "chain into C001" "$DEVID" se file write --image chip.img --id C001 --in chain.pem --max 4096
export DEVID_PKCS11_CHIPS="image=$PWD/chip.img"

out=$("${P11[@]}" --list-slots 2>&1) || true
grep -q 'token label *: devid SN-P11' <<<"$out" && pass "pkcs11-tool lists the chip's slot and token" \
  || fail "pkcs11-tool lists the chip's slot and token" "$out"
out=$("${P11[@]}" --list-mechanisms 2>&1) || true
for m in ECDSA ECDSA-SHA256 ECDH1-DERIVE SHA256 ECDSA-KEY-PAIR-GEN; do  # pkcs11-tool's name for CKM_EC_KEY_PAIR_GEN
  grep -Eq "^ *$m[ ,]" <<<"$out" && pass "mechanism $m is offered" || fail "mechanism $m is offered" "$out"
done

out=$("${P11[@]}" --list-objects 2>&1) || true
grep -q 'Public Key Object; EC' <<<"$out" && grep -q 'Certificate Object; type = X.509' <<<"$out" \
  && ! grep -q 'Private Key Object' <<<"$out" \
  && pass "before login: the public key and the certificate, no private key" \
  || fail "before login: the public key and the certificate, no private key" "$out"
out=$("${P11[@]}" --login --pin "$PIN" --list-objects 2>&1) || true
grep -q 'Private Key Object; EC' <<<"$out" && pass "after login: the private key object" \
  || fail "after login: the private key object" "$out"
grep -A8 'Private Key Object' <<<"$out" | grep -q 'Access: *sensitive, always sensitive, never extractable' \
  && pass "the private key is sensitive and never extractable" \
  || fail "the private key is sensitive and never extractable" "$out"

# ECDSA in the chip, verified by OpenSSL.
head -c 3000 /dev/urandom >msg.bin
ok "C_Sign CKM_ECDSA_SHA256" "${P11[@]}" --login --pin "$PIN" --sign --mechanism ECDSA-SHA256 --id 00 \
  --input-file msg.bin --output-file sig.der --signature-format openssl
grep -q 'Verified OK' <<<"$(openssl dgst -sha256 -verify slot0.pub -signature sig.der msg.bin 2>&1)" \
  && pass "openssl verifies the CKM_ECDSA_SHA256 signature" || fail "openssl verifies the CKM_ECDSA_SHA256 signature"
openssl dgst -sha256 -binary msg.bin >msg.sha256
ok "C_Sign CKM_ECDSA over a digest" "${P11[@]}" --login --pin "$PIN" --sign --mechanism ECDSA --id 00 \
  --input-file msg.sha256 --output-file sig2.der --signature-format openssl
grep -q 'Verified OK' <<<"$(openssl dgst -sha256 -verify slot0.pub -signature sig2.der msg.bin 2>&1)" \
  && pass "openssl verifies the CKM_ECDSA signature" || fail "openssl verifies the CKM_ECDSA signature"
ok "C_Sign raw r||s" "${P11[@]}" --login --pin "$PIN" --sign --mechanism ECDSA-SHA256 --id 00 \
  --input-file msg.bin --output-file sig.raw
ok "C_Verify in the chip accepts it" "${P11[@]}" --verify --mechanism ECDSA-SHA256 --id 00 \
  --input-file msg.bin --signature-file sig.raw
echo changed >>msg.bin
rc=0
out=$("${P11[@]}" --verify --mechanism ECDSA-SHA256 --id 00 --input-file msg.bin \
  --signature-file sig.raw 2>&1) || rc=$?
grep -q 'CKR_SIGNATURE_INVALID\|Invalid signature' <<<"$out" && pass "C_Verify refuses other data" \
  || fail "C_Verify refuses other data" "$out"

rc=0
out=$("${P11[@]}" --sign --mechanism ECDSA-SHA256 --id 00 --input-file msg.bin --output-file x.sig 2>&1) || rc=$?
((rc != 0)) && pass "signing without login fails" || fail "signing without login fails" "$out"

# OpenSC's own self-test of the token (sign/verify, digests, random, objects).
rc=0
out=$("${P11[@]}" --test --login --pin "$PIN" 2>&1) || rc=$?
((rc == 0)) && grep -q 'No errors' <<<"$out" && pass "pkcs11-tool --test --login passes" \
  || fail "pkcs11-tool --test --login passes" "exit $rc" "$(tail -15 <<<"$out")"

# Key generation in the chip.
ok "C_GenerateKeyPair P-384 into slot 3" "${P11[@]}" --login --pin "$PIN" --keypairgen \
  --key-type EC:secp384r1 --id 03 --label gen3
ok "devid sees the key in slot 3" "$DEVID" se pubkey --image chip.img --slot 3 --out slot3.pub
grep -q 'NIST CURVE: P-384' <<<"$(openssl pkey -pubin -in slot3.pub -noout -text 2>&1)" \
  && pass "slot 3 holds a P-384 key" || fail "slot 3 holds a P-384 key"

# ECDH in the chip equals OpenSSL's.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.key 2>/dev/null
openssl pkey -in peer.key -pubout -outform DER -out peer.der 2>/dev/null
ok "C_DeriveKey CKM_ECDH1_DERIVE" "${P11[@]}" --login --pin "$PIN" --derive --mechanism ECDH1-DERIVE \
  --id 00 --input-file peer.der --output-file chip.secret
openssl pkeyutl -derive -inkey peer.key -peerkey slot0.pub -out openssl.secret 2>/dev/null
cmp -s chip.secret openssl.secret && pass "the derived secret equals OpenSSL's" \
  || fail "the derived secret equals OpenSSL's" "$(xxd chip.secret | head -2)"

# SHA-256 and random bytes from the chip.
"${P11[@]}" --hash --mechanism SHA256 --input-file msg.bin --output-file msg.p11 >/dev/null 2>&1 || true
cmp -s msg.p11 <(openssl dgst -sha256 -binary msg.bin) && pass "C_Digest CKM_SHA256 equals openssl dgst" \
  || fail "C_Digest CKM_SHA256 equals openssl dgst"
"${P11[@]}" --generate-random 100 --output-file rnd.bin >/dev/null 2>&1 || true
[ "$(stat -c %s rnd.bin 2>/dev/null)" = 100 ] && pass "C_GenerateRandom gives 100 bytes" \
  || fail "C_GenerateRandom gives 100 bytes"

# The chip list from a configuration file.
printf '# devid chips\nimage=%s\n' "$PWD/chip.img" >chips.conf
out=$(env -u DEVID_PKCS11_CHIPS DEVID_PKCS11_CONFIG=chips.conf "${P11[@]}" --list-slots 2>&1) || true
grep -q 'devid SN-P11' <<<"$out" && pass "DEVID_PKCS11_CONFIG names the chips" \
  || fail "DEVID_PKCS11_CONFIG names the chips" "$out"
out=$(env -u DEVID_PKCS11_CHIPS -u DEVID_PKCS11_CONFIG "${P11[@]}" --list-slots 2>&1) || true
grep -q 'set DEVID_PKCS11_CHIPS' <<<"$out" && pass "no chip configured: the module says what to set" \
  || fail "no chip configured: the module says what to set" "$out"

# Wrong PINs: incorrect, then locked (the chip allows 3 tries).
for i in 1 2; do
  out=$("${P11[@]}" --login --pin 000000 --list-objects 2>&1) || true
  grep -q 'CKR_PIN_INCORRECT' <<<"$out" && pass "wrong PIN $i: CKR_PIN_INCORRECT" \
    || fail "wrong PIN $i: CKR_PIN_INCORRECT" "$out"
done
out=$("${P11[@]}" --login --pin 000000 --list-objects 2>&1) || true
grep -q 'CKR_PIN_LOCKED' <<<"$out" && pass "third wrong PIN: CKR_PIN_LOCKED" || fail "third wrong PIN: CKR_PIN_LOCKED" "$out"
out=$("${P11[@]}" --login --pin "$PIN" --list-objects 2>&1) || true
grep -q 'CKR_PIN_LOCKED' <<<"$out" && pass "locked: the right PIN no longer logs in" \
  || fail "locked: the right PIN no longer logs in" "$out"
finish
