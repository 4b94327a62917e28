#!/usr/bin/env bash
# Integration test of `devid se` against real peers: OpenSSL verifies what the
# chip signs and computes the other side of the chip's ECDH; the same commands
# run over the `devid se run` socket daemon; bad input and a tampered image
# give one-line errors.
# Usage: se_cli_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
T=$(mktemp -d)
DAEMON=""
cleanup() {
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
cd "$T"
# shellcheck source=lib.sh
source "$LIB"
# err DESC PATTERN CMD...: exit != 0, one stderr line "devid: error: ..." matching PATTERN
err() {
  local d=$1 re=$2; shift 2
  local rc=0
  "$@" >"$T/.out" 2>"$T/.err" || rc=$?
  if ((rc != 0)) && [ "$(grep -c '' "$T/.err")" = 1 ] && grep -Eq "^devid: error: .*($re)" "$T/.err"; then
    pass "$d"
  else
    fail "$d" "exit $rc" "$(cat "$T/.err")"
  fi
}

ok "create a chip" "$DEVID" se create --image chip.img --serial SN-TEST-1 --pin 246810
ok "info" "$DEVID" se info --image chip.img
grep -q 'manufacturing' <<<"$("$DEVID" se info --image chip.img)" && pass "a new chip is in manufacturing" || fail "a new chip is in manufacturing"
ok "keygen P-256 in slot 0" "$DEVID" se keygen --image chip.img --slot 0
ok "keygen P-384 in slot 1, PIN-protected" "$DEVID" se keygen --image chip.img --slot 1 --curve P-384 --pin-protected
ok "pubkey slot 0" "$DEVID" se pubkey --image chip.img --slot 0 --out p256.pem
ok "pubkey slot 1" "$DEVID" se pubkey --image chip.img --slot 1 --out p384.pem
openssl pkey -pubin -in p384.pem -noout -text 2>/dev/null | grep -q 'NIST CURVE: P-384' && pass "slot 1 holds a P-384 key" || fail "slot 1 holds a P-384 key"
head -c 5000 /dev/urandom >msg.bin
ok "sign with slot 0" "$DEVID" se sign --image chip.img --slot 0 --in msg.bin --out sig0.der
grep -q 'Verified OK' <<<"$(openssl dgst -sha256 -verify p256.pem -signature sig0.der msg.bin 2>&1)" \
  && pass "openssl dgst -verify accepts the chip's P-256 signature" || fail "openssl dgst -verify accepts the chip's P-256 signature"
err "sign with a PIN-protected key and no PIN" 'security status not satisfied' \
  "$DEVID" se sign --image chip.img --slot 1 --in msg.bin --out sig1.der
ok "sign with the PIN" "$DEVID" se sign --image chip.img --slot 1 --pin 246810 --in msg.bin --out sig1.der
printf '246810\n' >pin.txt
ok "sign with the PIN from --pin-file" "$DEVID" se sign --image chip.img --slot 1 --pin-file pin.txt --in msg.bin --out sig1.der
ok "sign with the PIN from DEVID_PIN" env DEVID_PIN=246810 "$DEVID" se sign --image chip.img --slot 1 --in msg.bin --out sig1.der
err "--pin and --pin-file together" 'exclude each other' \
  "$DEVID" se sign --image chip.img --slot 1 --pin 246810 --pin-file pin.txt --in msg.bin --out sig1.der
: >empty.txt
err "an empty PIN file" 'PIN file .* is empty' "$DEVID" se info --image chip.img --pin-file empty.txt
err "create without any PIN" 'needs a user PIN' env -u DEVID_PIN "$DEVID" se create --image nopin.img
[ ! -e nopin.img ] && pass "no image is left behind" || fail "no image is left behind"
echo "not-hex" >mkey.txt
err "create with a malformed manufacturer key" '64 hex digits' \
  "$DEVID" se create --image badm.img --pin-file pin.txt --manufacturer-key-file mkey.txt
[ ! -e badm.img ] && pass "no image for a malformed manufacturer key" || fail "no image for a malformed manufacturer key"
head -c 32 /dev/urandom | xxd -p -c 64 >mkey.txt
ok "create with a manufacturer key and a PIN file" \
  "$DEVID" se create --image m.img --pin-file pin.txt --manufacturer-key-file mkey.txt
grep -q 'Verified OK' <<<"$(openssl dgst -sha256 -verify p384.pem -signature sig1.der msg.bin 2>&1)" \
  && pass "openssl dgst -verify accepts the chip's P-384 signature" || fail "openssl dgst -verify accepts the chip's P-384 signature"
ok "the chip verifies a signature" "$DEVID" se verify --image chip.img --pubkey p256.pem --in msg.bin --sig sig0.der
echo tampered >>msg.bin
err "the chip refuses a signature over other data" 'does not verify' \
  "$DEVID" se verify --image chip.img --pubkey p256.pem --in msg.bin --sig sig0.der

# A CSR signed in the chip: OpenSSL and GnuTLS check its signature against the chip's key.
ok "CSR for slot 1 (P-384), signed in the chip" "$DEVID" se csr --image chip.img --slot 1 --pin 246810 \
  --subject "CN=device-0001,O=Acme" --san dns:device-0001.acme.test --out dev.csr
grep -q 'verify OK' <<<"$(openssl req -in dev.csr -verify -noout 2>&1)" \
  && pass "openssl req -verify accepts the chip-signed CSR" || fail "openssl req -verify accepts the chip-signed CSR"
cmp -s <(openssl req -in dev.csr -pubkey -noout) p384.pem \
  && pass "the CSR carries the chip's P-384 key" || fail "the CSR carries the chip's P-384 key"
grep -q 'ecdsa-with-SHA384' <<<"$(openssl req -in dev.csr -noout -text)" \
  && pass "P-384 CSR is signed ecdsa-with-SHA384" || fail "P-384 CSR is signed ecdsa-with-SHA384"
grep -qi 'verified' <<<"$(certtool --crq-info --infile dev.csr 2>&1)" \
  && pass "certtool --crq-info verifies the CSR's self-signature" || fail "certtool --crq-info verifies the CSR's self-signature" "$(certtool --crq-info --infile dev.csr 2>&1 | tail -3)"
err "CSR for an empty slot" 'not found' "$DEVID" se csr --image chip.img --slot 9 --subject CN=x --out x.csr
[ ! -e x.csr ] && pass "no CSR file for an empty slot" || fail "no CSR file for an empty slot"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.key 2>/dev/null
openssl pkey -in peer.key -pubout -out peer.pem 2>/dev/null
ok "ECDH in the chip" "$DEVID" se ecdh --image chip.img --slot 0 --peer peer.pem --out chip.secret
openssl pkeyutl -derive -inkey peer.key -peerkey p256.pem -out openssl.secret 2>/dev/null
cmp -s chip.secret openssl.secret && pass "the chip's ECDH secret equals OpenSSL's" || fail "the chip's ECDH secret equals OpenSSL's"
err "ECDH with a P-384 peer against a P-256 key" 'wrong data' \
  "$DEVID" se ecdh --image chip.img --slot 0 --peer p384.pem --out bad.secret

R1=$("$DEVID" se random --image chip.img --bytes 32)
R2=$("$DEVID" se random --image chip.img --bytes 32)
[[ $R1 =~ ^[0-9A-F]{64}$ && $R1 != "$R2" ]] && pass "random: 32 fresh bytes each time" || fail "random: 32 fresh bytes each time" "$R1" "$R2"

printf 'issuing CA key' >ca.bin
ok "file write (created on first write)" "$DEVID" se file write --image chip.img --id 1001 --in ca.bin --write never
ok "file read" "$DEVID" se file read --image chip.img --id 1001 --out ca.out
cmp -s ca.bin ca.out && pass "file content round-trips" || fail "file content round-trips"
grep -q '^1001 ' <<<"$("$DEVID" se file list --image chip.img)" && pass "file list shows 1001" || fail "file list shows 1001"
ok "lifecycle -> personalised" "$DEVID" se lifecycle --image chip.img --set personalised
ok "lifecycle -> operational" "$DEVID" se lifecycle --image chip.img --set operational
err "lifecycle cannot go back" 'conditions not satisfied' "$DEVID" se lifecycle --image chip.img --set personalised --pin 246810
err "a 'never'-write file is locked once operational" 'security status not satisfied' \
  "$DEVID" se file write --image chip.img --id 1001 --in msg.bin --pin 246810

err "wrong PIN reports the tries left" 'wrong PIN, 2 tries left' "$DEVID" se info --image chip.img --pin 000000
err "both --image and --socket" 'exactly one' "$DEVID" se info --image chip.img --socket x.sock
err "a missing image" 'no chip image' "$DEVID" se info --image nothing.img

# The command log shows what the chip did, one line a command.
ok "sign with the command log on" "$DEVID" se sign --image chip.img --slot 0 --in ca.bin --out logged.der --log cmd.log
grep -Eq '^SIGN slot=0 sw=9000 us=[0-9]+$' cmd.log && pass "the command log records SIGN slot=0 sw=9000" \
  || fail "the command log records SIGN slot=0 sw=9000" "$(cat cmd.log)"

# The same chip over the socket daemon (with its command log).
"$DEVID" se run --image chip.img --socket "$T/chip.sock" --log "$T/daemon.log" 2>/dev/null &
DAEMON=$!
for _ in $(seq 50); do [ -S "$T/chip.sock" ] && break; sleep 0.1; done
ok "info over the socket" "$DEVID" se info --socket "$T/chip.sock"
err "the image cannot be opened a second time while the daemon runs it" 'in use by another process' \
  "$DEVID" se info --image chip.img
ok "sign over the socket" "$DEVID" se sign --socket "$T/chip.sock" --slot 0 --in ca.bin --out sock.der
grep -q 'Verified OK' <<<"$(openssl dgst -sha256 -verify p256.pem -signature sock.der ca.bin 2>&1)" \
  && pass "a signature made over the socket verifies" || fail "a signature made over the socket verifies"
grep -q '^SIGN slot=0 sw=9000' "$T/daemon.log" && pass "the daemon's command log records the SIGN" \
  || fail "the daemon's command log records the SIGN"
# Two clients at once: commands are serialised by the daemon.
"$DEVID" se random --socket "$T/chip.sock" --bytes 64 >r1 & C1=$!
"$DEVID" se random --socket "$T/chip.sock" --bytes 64 >r2 & C2=$!
wait $C1 && wait $C2 && [ -s r1 ] && [ -s r2 ] && pass "two concurrent socket clients are served" || fail "two concurrent socket clients are served"
kill -TERM "$DAEMON"
wait "$DAEMON" && pass "the daemon exits cleanly on SIGTERM" || fail "the daemon exits cleanly on SIGTERM"
DAEMON=""
[ ! -e "$T/chip.sock" ] && pass "the daemon removed its socket" || fail "the daemon removed its socket"

# Tamper: one flipped byte in the image.
flip_byte chip.img $(($(stat -c %s chip.img) / 2))
grep -q 'TAMPER' <<<"$("$DEVID" se info --image chip.img)" && pass "info reports the tamper state" || fail "info reports the tamper state"
err "a tampered chip refuses to sign" 'tamper detected' "$DEVID" se sign --image chip.img --slot 0 --in ca.bin --out t.der
ok "a tampered chip can be terminated" "$DEVID" se lifecycle --image chip.img --set terminated
grep -q 'terminated' <<<"$("$DEVID" se info --image chip.img)" && pass "the chip is terminated" || fail "the chip is terminated"
err "a terminated chip answers nothing secret" 'conditions not satisfied' \
  "$DEVID" se pubkey --image chip.img --slot 0 --out x.pem

finish
