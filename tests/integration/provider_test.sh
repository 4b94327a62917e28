#!/usr/bin/env bash
# Integration test of libdevid-provider.so with OpenSSL's own command-line
# tools as the peers: `openssl req` makes a CSR whose signature the chip
# computes; `openssl s_client` completes a mutual-TLS 1.2 ECDHE-ECDSA
# handshake with `openssl s_server` while the client key stays in the chip
# (CertificateVerify is the chip's SIGN, certificate checks its
# VERIFY_SIGNATURE); a server from another CA and a tampered chip fail cleanly.
# Usage: provider_test.sh PATH/TO/devid PATH/TO/provider-dir
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
MODDIR=$(realpath "$2")
# shellcheck source=lib.sh
source "$LIB"
enter_scratch_dir
PROV=(-provider-path "$MODDIR" -provider devid -provider default)
export DEVID_PASSPHRASE=provider-test

# A PKI made by devid: root, issuing CA, a server certificate for a software key.
mkdir -m 700 home
ok "init root" "$DEVID" --home home ca init-root --org acme --subject "CN=Acme Root CA,O=Acme"
ok "init ICA" "$DEVID" --home home ca init-ica --org acme --name devices --subject "CN=Acme Devices ICA,O=Acme"
ok "export chain" "$DEVID" --home home ca export --org acme --ca devices --chain --out chain.pem
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" -out srv.csr 2>/dev/null
ok "issue the server certificate" "$DEVID" --home home ca issue --org acme --ca devices \
  --template server --csr srv.csr --out srv.pem

# The chip: P-256 in slot 0, P-384 in slot 1.
ok "create the chip" "$DEVID" se create --image chip.img --pin 1234
ok "keygen P-256" "$DEVID" se keygen --image chip.img --slot 0
ok "keygen P-384" "$DEVID" se keygen --image chip.img --slot 1 --curve P-384
ok "pubkey slot 0" "$DEVID" se pubkey --image chip.img --slot 0 --out chip0.pub
ok "pubkey slot 1" "$DEVID" se pubkey --image chip.img --slot 1 --out chip1.pub

# 1. openssl req signs in the chip (devid:image=... in-process).
for slot in 0 1; do
  ok "openssl req -key devid:image=chip.img;slot=$slot" openssl req -new "${PROV[@]}" \
    -key "devid:image=chip.img;slot=$slot" -subj "/CN=device-$slot/O=Acme" -out "dev$slot.csr"
  grep -q 'verify OK' <<<"$(openssl req -verify -in "dev$slot.csr" -noout 2>&1)" \
    && pass "the CSR's signature verifies (slot $slot)" || fail "the CSR's signature verifies (slot $slot)"
  cmp -s <(openssl req -in "dev$slot.csr" -pubkey -noout) "chip$slot.pub" \
    && pass "the CSR carries the chip's public key (slot $slot)" \
    || fail "the CSR carries the chip's public key (slot $slot)"
done
ok "issue the device certificate from the chip's CSR" "$DEVID" --home home ca issue --org acme \
  --ca devices --template device --csr dev0.csr --out dev0.pem

# A key reference file: programs that only take key files use the chip key.
ok "devid se keyref" "$DEVID" se keyref --image chip.img --slot 0 --out ref.pem
grep -q 'BEGIN DEVID KEY REFERENCE' ref.pem && ! grep -q 'PRIVATE' ref.pem \
  && pass "the key reference file names the key, holds no key" || fail "the key reference file names the key, holds no key" "$(cat ref.pem)"
ok "openssl req -key ref.pem" openssl req -new "${PROV[@]}" -propquery '?provider=devid' -key ref.pem \
  -subj "/CN=device-ref/O=Acme" -out ref.csr
grep -q 'verify OK' <<<"$(openssl req -verify -in ref.csr -noout 2>&1)" \
  && pass "the CSR made through the key reference verifies" || fail "the CSR made through the key reference verifies"
cmp -s <(openssl req -in ref.csr -pubkey -noout) chip0.pub \
  && pass "the key reference loads the chip's key" || fail "the key reference loads the chip's key"
err_ref=$("$DEVID" se keyref --image chip.img --slot 9 --out ref9.pem 2>&1 || true)
grep -q 'devid: error: .*not found' <<<"$err_ref" && [ ! -e ref9.pem ] \
  && pass "no key reference for an empty slot" || fail "no key reference for an empty slot" "$err_ref"

# Bad key URIs and empty slots: a clear error, no crash.
for uri in "devid:image=chip.img" "devid:image=chip.img;slot=99" "devid:slot=0" \
  "devid:image=chip.img;slot=0;colour=red" "devid:image=chip.img;slot=7"; do
  rc=0
  openssl req -new "${PROV[@]}" -key "$uri" -subj /CN=x -out bad.csr >bad.out 2>&1 || rc=$?
  if ((rc != 0 && rc < 128)) && grep -Eq 'slot|URI|attribute|image=|not found' bad.out; then
    pass "key URI '$uri' is refused with a clear error"
  else
    fail "key URI '$uri' is refused with a clear error" "exit $rc" "$(cat bad.out)"
  fi
done

# 2. Mutual TLS: s_server (software key) and s_client with the key in the chip,
# reached over the `devid se run` socket so that the chip's log shows its part.
"$DEVID" se run --image chip.img --socket chip.sock --log chip.log 2>/dev/null &
PIDS+=($!)
for _ in $(seq 50); do [ -S chip.sock ] && break; sleep 0.1; done
client() {  # client EXTRA... : s_client with the chip key; output in client.out
  local rc=0
  (sleep 1; echo Q) | timeout 20 openssl s_client -connect "127.0.0.1:$PORT" "${PROV[@]}" \
    -propquery '?provider=devid' -key "devid:socket=chip.sock;slot=0" -cert dev0.pem \
    -CAfile chain.pem -verify_return_error -tls1_2 -groups secp256r1 "$@" >client.out 2>&1 || rc=$?
  return $rc
}
start_tls_server srv.pem srv.key
: >chip.log
if client; then pass "s_client completes the mutual-TLS handshake with the chip's key"; else
  fail "s_client completes the mutual-TLS handshake with the chip's key" "$(tail -5 client.out)"; fi
sleep 0.3
grep -q 'Cipher is ECDHE-ECDSA-AES128-GCM-SHA256' client.out \
  && pass "TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 negotiated" || fail "TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 negotiated" "$(cat client.out)"
grep -q 'subject=CN = device-1\|subject=CN = device-0' server.out \
  && pass "s_server reports the chip-held client certificate" || fail "s_server reports the chip-held client certificate" "$(cat server.out)"
grep -q '^SIGN slot=0 sw=9000' chip.log \
  && pass "the chip signed CertificateVerify (SIGN slot 0)" || fail "the chip signed CertificateVerify (SIGN slot 0)" "$(cat chip.log)"
grep -q '^GENERATE_KEY_PAIR slot=volatile sw=9000' chip.log \
  && pass "the ephemeral ECDHE key was made in the chip" || fail "the ephemeral ECDHE key was made in the chip" "$(cat chip.log)"
grep -q '^ECDH slot=volatile sw=9000' chip.log \
  && pass "the ECDHE shared secret was computed in the chip" || fail "the ECDHE shared secret was computed in the chip" "$(cat chip.log)"
grep -q '^VERIFY_SIGNATURE key=supplied sw=9000' chip.log \
  && pass "the chip verified signatures for the client (VERIFY_SIGNATURE)" || fail "the chip verified signatures for the client (VERIFY_SIGNATURE)" "$(cat chip.log)"

# 3. A server whose certificate comes from another CA fails the certificate check.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
  -subj "/CN=localhost" -days 2 -out other.pem 2>/dev/null
start_tls_server other.pem other.key
if client; then fail "a server from another CA is refused" "$(tail -5 client.out)"; else
  grep -q 'certificate verify failed\|self-signed certificate' client.out \
    && pass "a server from another CA is refused (certificate verify failed)" \
    || fail "a server from another CA is refused (certificate verify failed)" "$(tail -5 client.out)"
fi

# 4. A tampered chip: loading its key fails with a clear error, no crash.
cp chip.img tampered.img
cp chip.img.fuse tampered.img.fuse
flip_byte tampered.img 40
rc=0
openssl req -new "${PROV[@]}" -key "devid:image=tampered.img;slot=0" -subj /CN=x -out t.csr \
  >t.out 2>&1 || rc=$?
if ((rc != 0 && rc < 128)) && grep -q 'tamper' t.out; then pass "a tampered chip fails cleanly (tamper)"; else
  fail "a tampered chip fails cleanly (tamper)" "exit $rc" "$(cat t.out)"; fi

finish
