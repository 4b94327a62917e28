#!/usr/bin/env bash
# Integration test of `devid agent tls-probe` against `openssl s_server`
# (software keys, CAfile = the devid chain, client certificate required): the
# figure-3 handshake with the chip doing the client's crypto, in TLS 1.2
# (ECDHE-ECDSA-AES128-GCM-SHA256) and TLS 1.3, with the chip's command log for
# the handshake checked step by step; a server from another CA and a tampered
# chip fail cleanly.
# Usage: tls_probe_test.sh PATH/TO/devid
set -euo pipefail
DEVID=$(realpath "$1")
LIB=$(dirname "$(realpath "$0")")/lib.sh
# shellcheck source=lib.sh
source "$LIB"
enter_scratch_dir
export DEVID_PASSPHRASE=tls-probe-test

# The PKI (devid ca) and a server certificate for a software key.
mkdir -m 700 home
ok "init root" "$DEVID" --home home ca init-root --org acme --subject "CN=Acme Root CA,O=Acme"
ok "init ICA" "$DEVID" --home home ca init-ica --org acme --name devices --subject "CN=Acme Devices ICA,O=Acme"
ok "export chain" "$DEVID" --home home ca export --org acme --ca devices --chain --out chain.pem
ok "export ICA" "$DEVID" --home home ca export --org acme --ca devices --out ica.pem
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" -out srv.csr 2>/dev/null
ok "issue the server certificate" "$DEVID" --home home ca issue --org acme --ca devices \
  --template server --csr srv.csr --out srv.pem

# Personalise a chip: key in slot 0, its certificate chain in file C001 and the
# issuing CA's public key in file CA01 (the documented chip files).
ok "create the chip" "$DEVID" se create --image chip.img --pin 1234
ok "keygen" "$DEVID" se keygen --image chip.img --slot 0
ok "pubkey" "$DEVID" se pubkey --image chip.img --slot 0 --out dev.pub
ok "CSR signed in the chip" "$DEVID" se csr --image chip.img --slot 0 --subject "CN=device-1,O=Acme" \
  --out dev.csr
ok "issue the device certificate" "$DEVID" --home home ca issue --org acme --ca devices \
  --template device --csr dev.csr --out dev.pem
cat dev.pem ica.pem >dev-chain.pem
ok "chain into chip file C001" "$DEVID" se file write --image chip.img --id C001 --in dev-chain.pem \
  --max 4096
ok "CA key into chip file CA01" "$DEVID" se file write --image chip.img --id CA01 --in ica.pem \
  --public-key

# The chip commands of the handshake, one name (and target) a line.
commands() { sed -n '/^chip commands during the handshake:/,$p' probe.out | tail -n +2 \
  | sed -E 's/^ +//; s/ sw=.*//'; }

# The chip's part of figure 3, in the order libssl performs it.
# TLS 1.2 (ECDHE-ECDSA): the figure's steps, with two differences libssl makes:
#   - READ_FILE (the client certificate, step 9) comes before GENERATE_KEY_PAIR
#     (step 8): libssl writes the Certificate message before ClientKeyExchange;
#   - a last GET_RANDOM of 8 bytes: the explicit nonce of the first AES-GCM
#     record (Finished), which the figure does not show.
EXPECT_12="GET_RANDOM le=32
VERIFY_SIGNATURE key=file:CA01
VERIFY_SIGNATURE key=supplied
READ_FILE file=C001
GENERATE_KEY_PAIR slot=volatile
ECDH slot=volatile
SIGN slot=0
GET_RANDOM le=8"
# TLS 1.3 has its own sequence: the key share goes in the ClientHello, so the
# ephemeral key is made first and ECDH follows the ServerHello; the second
# GET_RANDOM is the legacy session id (RFC 8446 §4.1.2); then the server's
# certificate (against the CA key in the chip) and its CertificateVerify, and
# last the client's Certificate and CertificateVerify.
EXPECT_13="GET_RANDOM le=32
GET_RANDOM le=32
GENERATE_KEY_PAIR slot=volatile
ECDH slot=volatile
VERIFY_SIGNATURE key=file:CA01
VERIFY_SIGNATURE key=supplied
READ_FILE file=C001
SIGN slot=0"

probe() {  # probe VERSION CHIP-ARGS... -> rc in RC, output in probe.out
  local version=$1 flag=-tls1_2 probe_flag=()
  shift
  if [ "$version" = 1.3 ]; then flag=-tls1_3; probe_flag=(--tls1_3); fi
  start_tls_server "${SERVER_CERT:-srv.pem}" "${SERVER_KEY:-srv.key}" "$flag"
  RC=0
  "$DEVID" agent tls-probe "$@" --slot 0 --connect "127.0.0.1:$PORT" --server-name localhost \
    "${probe_flag[@]}" >probe.out 2>&1 || RC=$?
}

for version in 1.2 1.3; do
  for mode in image socket; do
    if [ "$mode" = image ]; then
      args=(--image chip.img)
    else
      "$DEVID" se run --image chip.img --socket chip.sock 2>/dev/null &
      DAEMON=$!
      PIDS+=("$DAEMON")
      for _ in $(seq 50); do [ -S chip.sock ] && break; sleep 0.1; done
      args=(--socket chip.sock)
    fi
    probe "$version" "${args[@]}"
    what="TLS $version, chip over $mode"
    ((RC == 0)) && pass "$what: tls-probe completes the handshake" \
      || fail "$what: tls-probe completes the handshake" "$(cat probe.out)"
    grep -q "^version  TLSv$version" probe.out && pass "$what: TLS $version negotiated" \
      || fail "$what: TLS $version negotiated" "$(cat probe.out)"
    [ "$version" = 1.3 ] || grep -q '^cipher   ECDHE-ECDSA-AES128-GCM-SHA256' probe.out \
      && pass "$what: the cipher suite" || fail "$what: the cipher suite" "$(cat probe.out)"
    grep -q '^peer     CN=localhost' probe.out && pass "$what: the server is reported" \
      || fail "$what: the server is reported" "$(cat probe.out)"
    sleep 0.3
    grep -q 'subject=CN = device-1' server.out \
      && pass "$what: s_server reports the chip-held client certificate" \
      || fail "$what: s_server reports the chip-held client certificate" "$(cat server.out)"
    expected=$EXPECT_12
    [ "$version" = 1.3 ] && expected=$EXPECT_13
    got=$(commands)
    [ "$got" = "$expected" ] && pass "$what: the chip's commands are figure 3's, in libssl's order" \
      || fail "$what: the chip's commands are figure 3's, in libssl's order" "got:" $got
    if [ "$mode" = socket ]; then kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; fi
  done
done

# Step 4 fails: a server whose certificate another CA issued.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" -days 2 -out other.pem 2>/dev/null
SERVER_CERT=other.pem SERVER_KEY=other.key probe 1.2 --image chip.img
if ((RC == 1)) && [ "$(grep -c '' probe.out)" = 1 ] &&
  grep -q '^devid: error: the server certificate is not trusted' probe.out; then
  pass "a server from another CA fails at the certificate check, one clear line"
else
  fail "a server from another CA fails at the certificate check, one clear line" "exit $RC" "$(cat probe.out)"
fi

# A chip in the tamper state fails cleanly.
cp chip.img tampered.img
cp chip.img.fuse tampered.img.fuse
flip_byte tampered.img 40
probe 1.2 --image tampered.img
if ((RC == 1)) && grep -q '^devid: error: .*tamper' probe.out; then
  pass "a tampered chip fails cleanly"
else
  fail "a tampered chip fails cleanly" "exit $RC" "$(cat probe.out)"
fi

# A chip without the CA key file cannot check the server: refused before connecting.
ok "a second chip" "$DEVID" se create --image bare.img --pin 1234
ok "its key" "$DEVID" se keygen --image bare.img --slot 0
probe 1.2 --image bare.img
if ((RC == 1)) && grep -q 'no issuing CA public key (file CA01)' probe.out; then
  pass "a chip without the CA key is refused with a clear error"
else
  fail "a chip without the CA key is refused with a clear error" "exit $RC" "$(cat probe.out)"
fi
finish
