#!/usr/bin/env bash
# Integration test of the `devid ca` CLI against real peers: the OpenSSL 3 CLI
# and GnuTLS certtool check everything devid writes (certificates, chains,
# CRLs). Bad input must fail with one "devid: error:" line and change nothing.
#
# Usage: ca_cli_test.sh PATH/TO/devid
# Prints "ok - ..." / "FAIL - ..." per check; exits non-zero if any check failed.
set -euo pipefail

if [[ $# -lt 1 || ! -x $1 ]]; then
  echo "usage: $0 PATH/TO/devid" >&2
  exit 2
fi
DEVID_SRC=$(realpath "$1")
for tool in openssl certtool sqlite3 xxd; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

T=$(mktemp -d)
FINISHED=0
# shellcheck disable=SC2317  # invoked by the EXIT trap
on_exit() {
  local rc=$?
  rm -rf "$T"
  if ((!FINISHED)); then
    echo "FAIL - script aborted (exit $rc, line ${ABORT_LINE:-?}) before all checks ran"
    exit $((rc == 0 ? 1 : rc))
  fi
}
trap 'ABORT_LINE=$LINENO' ERR
trap on_exit EXIT
cd "$T"
# Run a private copy so that a concurrent rebuild cannot swap the binary mid-test.
DEVID=$T/bin/devid
mkdir -p "$T/bin"
cp "$DEVID_SRC" "$DEVID"
# Nothing from the caller's environment may leak into devid.
unset DEVID_HOME DEVID_PASSPHRASE

# ---------------------------------------------------------------------------
# Reporting helpers
# ---------------------------------------------------------------------------
CHECKS=0
FAILS=0
pass() { CHECKS=$((CHECKS + 1)); echo "ok - $1"; }
fail() {
  CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1))
  echo "FAIL - $1"
  shift
  local line
  for line in "$@"; do printf '%s\n' "$line" | head -n 25 | sed 's/^/#   /'; done
}

# check DESC CMD...           CMD exits 0
check() {
  local d=$1; shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then pass "$d"; else fail "$d" "command: $* (exit $rc)" "$out"; fi
}

# check_out DESC ERE CMD...   CMD exits 0 and its output (stdout+stderr) matches ERE
check_out() {
  local d=$1 re=$2; shift 2
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if ((rc != 0)); then
    fail "$d" "command: $* (exit $rc)" "$out"
  elif ! grep -Eq -- "$re" <<<"$out"; then
    fail "$d" "output of '$*' does not match /$re/" "$out"
  else
    pass "$d"
  fi
}

# check_fails_out DESC ERE CMD...  CMD exits non-zero and its output matches ERE
check_fails_out() {
  local d=$1 re=$2; shift 2
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then
    fail "$d" "command unexpectedly succeeded: $*" "$out"
  elif ! grep -Eq -- "$re" <<<"$out"; then
    fail "$d" "output of '$*' (exit $rc) does not match /$re/" "$out"
  else
    pass "$d"
  fi
}

# check_text DESC ERE TEXT    TEXT matches ERE;  check_no_text: does not
check_text() {
  if grep -Eq -- "$2" <<<"$3"; then pass "$1"; else fail "$1" "text does not match /$2/" "$3"; fi
}
check_no_text() {
  if [[ -z $3 ]]; then fail "$1" "nothing to inspect (empty text)"; return; fi
  if grep -Eq -- "$2" <<<"$3"; then fail "$1" "text matches /$2/ but must not" "$3"; else pass "$1"; fi
}

# concat OUT FILES...         concatenate whatever exists (never aborts the script)
concat() {
  local out=$1; shift
  cat -- "$@" >"$out" 2>/dev/null || true
}

# check_eq DESC EXPECTED ACTUAL
check_eq() {
  if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "expected: '$2'" "actual:   '$3'"; fi
}

# ---------------------------------------------------------------------------
# devid helpers. H is the current home; DV_GLOBAL holds extra global options
# (placed before the subcommand); DV_ENV holds `env` arguments for the run.
# ---------------------------------------------------------------------------
PASS_MAIN='correct horse battery staple'
export DEVID_PASSPHRASE=$PASS_MAIN
H=$T/home
DV_GLOBAL=()
DV_ENV=()
dv() { env "${DV_ENV[@]}" "$DEVID" --home "$H" "${DV_GLOBAL[@]}" "$@"; }

# devid_ok DESC ARGS...       devid exits 0; stdout -> $OUT, stderr -> $ERR
OUT=''
ERR=''
devid_ok() {
  local d=$1; shift
  local rc=0
  dv "$@" >"$T/.out" 2>"$T/.err" || rc=$?
  OUT=$(<"$T/.out"); ERR=$(<"$T/.err")
  if ((rc == 0)); then pass "$d"; else fail "$d" "devid $* -> exit $rc" "stderr: $ERR"; fi
}

# Everything devid keeps: the database contents and the home folder listing.
state() {
  if [[ -f $H/devid.db ]]; then sqlite3 "$H/devid.db" .dump; else echo "(no db)"; fi
  echo "-- files:"
  find "$H" -mindepth 1 -maxdepth 1 ! -name '*-journal' ! -name '*-wal' ! -name '*-shm' -printf '%f\n' 2>/dev/null | sort
}

# expect_error DESC ERE ARGS...
#   devid must exit non-zero, print nothing on stdout, exactly one stderr line
#   "devid: error: ..." matching ERE (case-insensitive), leave the state
#   unchanged and not create its --out file.
expect_error() {
  local d=$1 re=$2; shift 2
  local out_file='' prev='' a
  for a in "$@"; do
    [[ $prev == --out ]] && out_file=$a
    prev=$a
  done
  [[ -n $out_file ]] && rm -f -- "$out_file"
  local rc=0 problems=()
  state >"$T/.before"
  dv "$@" >"$T/.out" 2>"$T/.err" || rc=$?
  state >"$T/.after"
  local nlines
  nlines=$(grep -c '' "$T/.err" || true)
  ((rc != 0)) || problems+=("exit code was 0")
  [[ ! -s $T/.out ]] || problems+=("stdout not empty: $(head -c 300 "$T/.out")")
  [[ $nlines -eq 1 ]] || problems+=("stderr has $nlines lines, expected 1")
  head -n 1 "$T/.err" | grep -q '^devid: error: ' || problems+=("stderr does not start with 'devid: error: '")
  head -n 1 "$T/.err" | grep -Eiq -- "$re" || problems+=("error message does not match /$re/")
  cmp -s "$T/.before" "$T/.after" ||
    problems+=("state changed; diff of 'sqlite3 devid.db .dump' + home listing:" \
      "$(diff "$T/.before" "$T/.after" | grep '^[<>]' | cut -c1-200 || true)")
  if [[ -n $out_file && -e $out_file ]]; then problems+=("--out file $out_file was created"); fi
  if ((${#problems[@]} == 0)); then
    pass "$d"
  else
    fail "$d" "devid ${DV_GLOBAL[*]} $*" "${problems[@]}" "stderr: $(<"$T/.err")"
  fi
}

# ---------------------------------------------------------------------------
# openssl / certtool helpers
# ---------------------------------------------------------------------------
# new_csr OUT KEYSPEC SUBJ [extra openssl req args...]   KEYSPEC: P-256 | P-384 | rsa:N
new_csr() {
  local out=$1 spec=$2 subj=$3; shift 3
  local keyargs
  case $spec in
    P-*) keyargs=(-newkey ec -pkeyopt "ec_paramgen_curve:$spec") ;;
    rsa:*) keyargs=(-newkey "$spec") ;;
  esac
  openssl req -new "${keyargs[@]}" -nodes -keyout "$out.key" -subj "$subj" "$@" -out "$out" 2>/dev/null
}

cert_serial() { openssl x509 -in "$1" -noout -serial 2>/dev/null | cut -d= -f2 || true; }
cert_text() { openssl x509 -in "$1" -noout -text 2>/dev/null || true; }
crl_number() { # CRL [extra openssl crl args]: hex digits of the CRL number
  openssl crl "${@:2}" -in "$1" -noout -crlnumber 2>/dev/null | cut -d= -f2 | sed 's/^0x//' | tr -cd '0-9A-Fa-f' || true
}
enddate_epoch() {
  local d
  d=$(openssl x509 -in "$1" -noout -enddate 2>/dev/null | cut -d= -f2) || true
  if [[ -n $d ]]; then date -u -d "$d" +%s 2>/dev/null || echo 0; else echo 0; fi
}
startdate_epoch() {
  local d
  d=$(openssl x509 -in "$1" -noout -startdate 2>/dev/null | cut -d= -f2) || true
  if [[ -n $d ]]; then date -u -d "$d" +%s 2>/dev/null || echo 0; else echo 0; fi
}

# check_serial LABEL CERT PRINTED: printed serial = certificate serial; DER
# INTEGER of 16 content bytes whose first byte has the sign bit clear.
check_serial() {
  local label=$1 cert=$2 printed=$3
  check_text "$label: issue prints only an upper-case hex serial" '^[0-9A-F]+$' "$printed"
  local actual
  actual=$(cert_serial "$cert")
  check_eq "$label: printed serial equals the certificate's serial" "${actual:-<no readable certificate>}" "$printed"
  local line
  line=$(openssl asn1parse -in "$cert" 2>/dev/null | grep -m2 ' INTEGER ' | tail -n 1) || true
  check_text "$label: serial is a 16-byte DER INTEGER" 'l= *16 prim: INTEGER +:[0-7][0-9A-F]{31}$' "$line"
}

# verify_chain LABEL ROOT ICA LEAF CRLS
#   openssl (strict, and with CRLs) and certtool (chain, trust list) accept LEAF.
verify_chain() {
  local label=$1 root=$2 ica=$3 leaf=$4 crls=$5
  check_out "$label: openssl verify -x509_strict" ": OK$" \
    openssl verify -x509_strict -CAfile "$root" -untrusted "$ica" "$leaf"
  check_out "$label: openssl verify -x509_strict -crl_check_all" ": OK$" \
    openssl verify -x509_strict -crl_check_all -CRLfile "$crls" -CAfile "$root" -untrusted "$ica" "$leaf"
  concat "$leaf.full" "$leaf" "$ica" "$root"
  concat "$leaf.chain" "$leaf" "$ica"
  check_out "$label: certtool --verify-chain (leaf+ica+root)" 'Chain verification output: Verified' \
    certtool --verify-chain --infile "$leaf.full"
  check_out "$label: certtool --verify against the root" 'Chain verification output: Verified' \
    certtool --verify --load-ca-certificate "$root" --infile "$leaf.chain"
}

# ===========================================================================
# 3a. Help
# ===========================================================================
check_help() {
  local label=$1; shift
  local args=("$@") out rc=0 missing=()
  local words=()
  while [[ ${args[-1]} != '::' ]]; do words=("${args[-1]}" "${words[@]}"); unset 'args[-1]'; done
  unset 'args[-1]'
  out=$("$DEVID" "${args[@]}" 2>&1) || rc=$?
  local w
  for w in "${words[@]}"; do grep -qF -- "$w" <<<"$out" || missing+=("$w"); done
  if ((rc == 0 && ${#missing[@]} == 0)); then
    pass "$label exits 0 and mentions ${words[*]}"
  else
    fail "$label exits 0 and mentions ${words[*]}" "exit $rc, missing: ${missing[*]:-none}" "$out"
  fi
}
check_help "devid --help" --help :: --home --passphrase-file --no-passphrase ca
check_help "devid ca --help" ca --help :: init-root init-ica issue revoke crl export list
check_help "devid ca issue --help" ca issue --help :: --org --ca --template --csr --out --format --days --san \
  dns: uri: ip: hardwareModuleName
check_help "devid ca init-root --help" ca init-root --help :: --org --subject --curve --days --crl-url --ocsp-url
check_help "devid ca init-ica --help" ca init-ica --help :: --org --name --subject --curve --days --crl-url --ocsp-url
check_help "devid ca revoke --help" ca revoke --help :: --org --serial --reason --ca keyCompromise
check_help "devid ca crl --help" ca crl --help :: --org --ca --out --format --days
check_help "devid ca export --help" ca export --help :: --org --ca --chain --out
check_help "devid ca list --help" ca list --help :: --org --ca --status

# ===========================================================================
# 1. Happy path, org "acme": P-256 root and issuing CA (passphrase from env)
# ===========================================================================
mkdir -p -m 700 "$H"
CRL_PATTERN='http://crl.devid.test/{org}/{ca}.crl'
devid_ok "acme: init-root P-256" ca init-root --org acme --subject "CN=Acme Root CA,O=Acme" \
  --crl-url "$CRL_PATTERN"
devid_ok "acme: init-ica P-256 with --crl-url and --ocsp-url" ca init-ica --org acme --name devices \
  --subject "CN=Acme Devices ICA,O=Acme" --crl-url "$CRL_PATTERN" --ocsp-url http://ocsp.devid.test/acme

devid_ok "acme: export root" ca export --org acme --ca root --out a-root.pem
devid_ok "acme: export ICA" ca export --org acme --ca devices --out a-ica.pem
devid_ok "acme: export ICA --chain" ca export --org acme --ca devices --chain --out a-chain.pem
check_eq "acme: exported chain is ICA followed by root" "2 $(cat a-ica.pem a-root.pem 2>/dev/null)" \
  "$(grep -c 'BEGIN CERTIFICATE' a-chain.pem 2>/dev/null) $(cat a-chain.pem 2>/dev/null)"
check_out "acme: root is self-signed CA with P-256 key" 'NIST CURVE: P-256' openssl x509 -in a-root.pem -noout -text
check_text "acme: ICA has the root's CRL URL ({org},{ca} expanded)" \
  'URI:http://crl\.devid\.test/acme/root\.crl' "$(cert_text a-ica.pem)"
check_text "acme: ICA is a CA (basicConstraints CA:TRUE)" 'CA:TRUE' "$(cert_text a-ica.pem)"
check_eq "acme: CA key in the database is encrypted (PKCS#8)" "2" \
  "$(sqlite3 "$H/devid.db" "SELECT count(*) FROM cas WHERE key_pem LIKE '%BEGIN ENCRYPTED PRIVATE KEY%'" 2>&1)"

# Device certificate with a hardwareModuleName SAN
new_csr a-dev.csr P-256 "/CN=device-0001/O=Acme/serialNumber=0001"
devid_ok "acme: issue device (P-256 CSR, hardwareModuleName SAN)" ca issue --org acme --ca devices \
  --template device --csr a-dev.csr --out a-dev.pem --san hardwareModuleName:1.3.6.1.4.1.99999.1:0A0B0C
A_DEV_SERIAL=$OUT
check_eq "acme: issue prints nothing on stderr" "" "$ERR"
check_serial "acme device" a-dev.pem "$A_DEV_SERIAL"
T_DEV=$(cert_text a-dev.pem)
check_text "acme device: EKU is clientAuth" 'TLS Web Client Authentication' "$T_DEV"
check_no_text "acme device: EKU has no serverAuth" 'TLS Web Server Authentication' "$T_DEV"
check_text "acme device: KU critical" 'X509v3 Key Usage: critical' "$T_DEV"
check_eq "acme device: KU is digitalSignature+keyAgreement" "Digital Signature, Key Agreement" \
  "$(grep -A1 'X509v3 Key Usage' <<<"$T_DEV" | tail -n 1 | sed 's/^ *//')"
check_text "acme device: basicConstraints CA:FALSE" 'CA:FALSE' "$T_DEV"
check_text "acme device: CDP is the ICA's CRL URL" 'URI:http://crl\.devid\.test/acme/devices\.crl' "$T_DEV"
check_text "acme device: AIA OCSP URL" 'OCSP - URI:http://ocsp\.devid\.test/acme' "$T_DEV"
check_text "acme device: subject from the CSR" 'Subject: CN ?= ?device-0001, O ?= ?Acme, serialNumber ?= ?0001' "$T_DEV"
check_text "acme device: issuer is the ICA" 'Issuer: CN ?= ?Acme Devices ICA, O ?= ?Acme' "$T_DEV"
HMN=$(certtool -i --infile a-dev.pem 2>/dev/null || true)
check_text "acme device: SAN otherName is hardwareModuleName (certtool)" 'otherName OID: 1\.3\.6\.1\.5\.5\.7\.8\.4' "$HMN"
check_text "acme device: hardwareModuleName = {1.3.6.1.4.1.99999.1, 0A0B0C}" \
  'otherName DER: 301006092b06010401868d1f0104030a0b0c' "$HMN"

# Server certificate, SAN from the CSR
new_csr a-srv.csr P-256 "/CN=api.acme.test/O=Acme" -addext "subjectAltName=DNS:api.acme.test"
devid_ok "acme: issue server (SAN from the CSR)" ca issue --org acme --ca devices --template server \
  --csr a-srv.csr --out a-srv.pem
A_SRV_SERIAL=$OUT
check_serial "acme server" a-srv.pem "$A_SRV_SERIAL"
T_SRV=$(cert_text a-srv.pem)
check_text "acme server: EKU is serverAuth" 'TLS Web Server Authentication' "$T_SRV"
check_text "acme server: SAN DNS:api.acme.test" 'DNS:api\.acme\.test' "$T_SRV"
check_no_text "acme server: serial differs from the device's" "$A_DEV_SERIAL" "$(cert_serial a-srv.pem)"

# CRLs
devid_ok "acme: CRL of the root" ca crl --org acme --ca root --out a-root.crl
devid_ok "acme: CRL of the ICA" ca crl --org acme --ca devices --out a-ica.crl
concat a-crls.pem a-ica.crl a-root.crl

verify_chain "acme device" a-root.pem a-ica.pem a-dev.pem a-crls.pem
verify_chain "acme server" a-root.pem a-ica.pem a-srv.pem a-crls.pem
check_out "acme device: openssl verify -purpose sslclient" ': OK$' \
  openssl verify -purpose sslclient -CAfile a-root.pem -untrusted a-ica.pem a-dev.pem
check_out "acme server: certtool --verify-hostname api.acme.test" 'Chain verification output: Verified' \
  certtool --verify --verify-hostname api.acme.test --load-ca-certificate a-root.pem --infile a-srv.pem.chain
check_fails_out "acme device: openssl verify without the root as trust anchor fails (control)" \
  'unable to get issuer certificate' openssl verify -x509_strict -CAfile a-ica.pem a-dev.pem

check_out "acme: ICA CRL verifies with openssl crl -CAfile chain" '^verify OK' \
  openssl crl -in a-ica.crl -CAfile a-chain.pem -noout
check_out "acme: root CRL verifies with openssl crl -CAfile root" '^verify OK' \
  openssl crl -in a-root.crl -CAfile a-root.pem -noout
check_out "acme: certtool --crl-info parses the ICA CRL" 'Issuer: O=Acme,CN=Acme Devices ICA' \
  certtool --crl-info --infile a-ica.crl
check_out "acme: certtool --verify-crl accepts the ICA CRL with the ICA cert" 'Verification output: Verified' \
  certtool --verify-crl --load-ca-certificate a-ica.pem --infile a-ica.crl
check_fails_out "acme: certtool --verify-crl rejects the ICA CRL with the root cert (control)" \
  'Not verified' certtool --verify-crl --load-ca-certificate a-root.pem --infile a-ica.crl
check_out "acme: certtool --load-crl with an empty ICA CRL accepts the device" 'Chain verification output: Verified' \
  certtool --verify --load-ca-certificate a-root.pem --load-crl a-ica.crl --infile a-dev.pem.chain

# DER output
new_csr a-der.csr P-256 "/CN=device-der"
devid_ok "acme: issue device --format der" ca issue --org acme --ca devices --template device \
  --csr a-der.csr --out a-dev.der --format der
openssl x509 -inform der -in a-dev.der -out a-dev-der.pem 2>/dev/null || true
check_serial "acme DER device" a-dev-der.pem "$OUT"
check_out "acme: DER certificate parses with openssl x509 -inform der" 'subject=CN ?= ?device-der' \
  openssl x509 -inform der -in a-dev.der -noout -subject
check_eq "acme: DER certificate is not PEM" "0" "$(grep -c -a 'BEGIN' a-dev.der || true)"
CRLN_BEFORE=$(crl_number a-ica.crl)
devid_ok "acme: ICA CRL --format der" ca crl --org acme --ca devices --out a-ica.der.crl --format der
check_out "acme: DER CRL parses with openssl crl -inform der" 'crlNumber=' \
  openssl crl -inform der -in a-ica.der.crl -noout -crlnumber
check_eq "acme: DER CRL is not PEM" "0" "$(grep -c -a 'BEGIN' a-ica.der.crl || true)"

# Validity: --days and never past the issuer
new_csr a-short.csr P-256 "/CN=device-short"
devid_ok "acme: issue device --days 30" ca issue --org acme --ca devices --template device \
  --csr a-short.csr --out a-short.pem --days 30
LIFE=$(($(enddate_epoch a-short.pem) - $(startdate_epoch a-short.pem)))
check_text "acme: --days 30 gives a validity of 30 days (+/- 1 day)" '^ok$' \
  "$( ((LIFE >= 29 * 86400 && LIFE <= 31 * 86400)) && echo ok || echo "lifetime ${LIFE}s")"
devid_ok "acme: issue device --days 5000 (beyond the ICA's lifetime)" ca issue --org acme --ca devices \
  --template device --csr a-short.csr --out a-long.pem --days 5000
check_text "acme: leaf never outlives its issuing CA" '^ok$' \
  "$( (($(enddate_epoch a-long.pem) <= $(enddate_epoch a-ica.pem) && $(enddate_epoch a-long.pem) > 0)) && echo ok || echo "leaf $(enddate_epoch a-long.pem) > ica $(enddate_epoch a-ica.pem)")"

# --- Revoke the device certificate -------------------------------------------
devid_ok "acme: revoke device (keyCompromise)" ca revoke --org acme --serial "$A_DEV_SERIAL" --reason keyCompromise
devid_ok "acme: regenerate the ICA CRL" ca crl --org acme --ca devices --out a-ica2.crl
CRLN_AFTER=$(crl_number a-ica2.crl)
CRLN_DER=$(crl_number a-ica.der.crl -inform der)
check_eq "acme: each crl call increments the CRL number by one" \
  "$(printf '%d %d %d' "$((16#${CRLN_BEFORE:-0}))" "$((16#${CRLN_BEFORE:-0} + 1))" "$((16#${CRLN_BEFORE:-0} + 2))")" \
  "$(printf '%d %d %d' "$((16#${CRLN_BEFORE:-0}))" "$((16#${CRLN_DER:-0}))" "$((16#${CRLN_AFTER:-0}))")"
check_text "acme: first CRL number is positive" '^[1-9]' "$((16#${CRLN_BEFORE:-0}))"
T_CRL=$(openssl crl -in a-ica2.crl -noout -text 2>/dev/null || true)
check_text "acme: new CRL lists the device serial" "Serial Number: $A_DEV_SERIAL" "$T_CRL"
check_text "acme: new CRL entry has reason Key Compromise" 'Key Compromise' "$T_CRL"
check_no_text "acme: new CRL does not list the server" "$A_SRV_SERIAL" "$T_CRL"
check_out "acme: new ICA CRL verifies (openssl crl)" '^verify OK' openssl crl -in a-ica2.crl -CAfile a-chain.pem -noout
concat a-crls2.pem a-ica2.crl a-root.crl
check_fails_out "acme device: openssl verify -crl_check_all now fails: certificate revoked" 'certificate revoked' \
  openssl verify -x509_strict -crl_check_all -CRLfile a-crls2.pem -CAfile a-root.pem -untrusted a-ica.pem a-dev.pem
check_out "acme server: still verifies with the new CRLs" ': OK$' \
  openssl verify -x509_strict -crl_check_all -CRLfile a-crls2.pem -CAfile a-root.pem -untrusted a-ica.pem a-srv.pem
check_fails_out "acme device: certtool --load-crl rejects the revoked certificate" 'revoked' \
  certtool --verify --load-ca-certificate a-root.pem --load-crl a-ica2.crl --infile a-dev.pem.chain
check_out "acme server: certtool --load-crl still accepts the server" 'Chain verification output: Verified' \
  certtool --verify --load-ca-certificate a-root.pem --load-crl a-ica2.crl --infile a-srv.pem.chain
devid_ok "acme: list --status revoked" ca list --org acme --status revoked
check_text "acme: list --status revoked shows the device as revoked(keyCompromise)" \
  "^$A_DEV_SERIAL +devices +device +revoked\(keyCompromise\) " "$OUT"
check_no_text "acme: list --status revoked omits the server" "$A_SRV_SERIAL" "$OUT"
devid_ok "acme: list --status valid" ca list --org acme --status valid
check_text "acme: list --status valid shows the server as valid" "^$A_SRV_SERIAL +devices +server +valid " "$OUT"
check_no_text "acme: list --status valid omits the revoked device" "$A_DEV_SERIAL" "$OUT"
check_text "acme: list has the header columns" '^SERIAL +CA +TEMPLATE +STATUS +NOT_AFTER +SUBJECT' "$OUT"

# ===========================================================================
# 1b. Org "beta": P-384 root, ICA and device key; passphrase from a file
# ===========================================================================
printf 'beta passphrase\nsecond line is ignored\n' >beta.pass
DV_GLOBAL=(--passphrase-file "$T/beta.pass")
devid_ok "beta: init-root P-384 (--passphrase-file)" ca init-root --org beta --subject "CN=Beta Root,O=Beta" \
  --curve P-384 --crl-url "$CRL_PATTERN"
devid_ok "beta: init-ica P-384 with --crl-url" ca init-ica --org beta --name fleet --subject "CN=Beta Fleet ICA,O=Beta" \
  --curve P-384 --crl-url "$CRL_PATTERN"
devid_ok "beta: export root" ca export --org beta --ca root --out b-root.pem
devid_ok "beta: export ICA" ca export --org beta --ca fleet --out b-ica.pem
devid_ok "beta: export ICA --chain" ca export --org beta --ca fleet --chain --out b-chain.pem
check_eq "beta: exported chain is ICA followed by root" "2 $(cat b-ica.pem b-root.pem 2>/dev/null)" \
  "$(grep -c 'BEGIN CERTIFICATE' b-chain.pem 2>/dev/null) $(cat b-chain.pem 2>/dev/null)"
new_csr b-dev.csr P-384 "/CN=beta-device-1/O=Beta"
devid_ok "beta: issue device (P-384 CSR)" ca issue --org beta --ca fleet --template device --csr b-dev.csr --out b-dev.pem
check_serial "beta device" b-dev.pem "$OUT"
T_BDEV=$(cert_text b-dev.pem)
check_text "beta device: P-384 public key" 'NIST CURVE: P-384' "$T_BDEV"
check_text "beta device: signed with ecdsa-with-SHA384 by the P-384 ICA" 'Signature Algorithm: ecdsa-with-SHA384' "$T_BDEV"
check_text "beta ICA: P-384 key" 'NIST CURVE: P-384' "$(cert_text b-ica.pem)"
check_text "beta device: CDP of the fleet ICA" 'URI:http://crl\.devid\.test/beta/fleet\.crl' "$T_BDEV"
new_csr b-srv.csr P-384 "/CN=beta.test" -addext "subjectAltName=DNS:beta.test,DNS:www.beta.test"
devid_ok "beta: issue server (P-384, two DNS SANs)" ca issue --org beta --ca fleet --template server \
  --csr b-srv.csr --out b-srv.pem --san dns:api.beta.test
check_text "beta server: CSR and --san names present" 'DNS:beta\.test, DNS:www\.beta\.test, DNS:api\.beta\.test' \
  "$(cert_text b-srv.pem)"
devid_ok "beta: CRL of the root" ca crl --org beta --ca root --out b-root.crl
devid_ok "beta: CRL of the ICA" ca crl --org beta --ca fleet --out b-ica.crl
concat b-crls.pem b-ica.crl b-root.crl
verify_chain "beta device" b-root.pem b-ica.pem b-dev.pem b-crls.pem
check_out "beta: ICA CRL verifies with openssl crl -CAfile chain" '^verify OK' \
  openssl crl -in b-ica.crl -CAfile b-chain.pem -noout
check_out "beta: certtool --verify-crl accepts the ICA CRL" 'Verification output: Verified' \
  certtool --verify-crl --load-ca-certificate b-ica.pem --infile b-ica.crl

# The passphrase file, not the environment's passphrase, protects beta's keys.
DV_GLOBAL=()
expect_error "beta: issue with only the env passphrase (another one) is refused" 'passphrase' \
  ca issue --org beta --ca fleet --template device --csr b-dev.csr --out "$T/err-beta-env.pem"
printf 'not the beta passphrase\n' >bad.pass
DV_GLOBAL=(--passphrase-file "$T/bad.pass")
expect_error "beta: issue with a wrong --passphrase-file is refused" 'passphrase' \
  ca issue --org beta --ca fleet --template device --csr b-dev.csr --out "$T/err-beta-bad.pem"
DV_GLOBAL=(--passphrase-file "$T/no-such.pass")
expect_error "beta: issue with a missing --passphrase-file is refused" 'no-such\.pass|passphrase' \
  ca issue --org beta --ca fleet --template device --csr b-dev.csr --out "$T/err-beta-missing.pem"

# --- Revoke beta's ICA under the root ----------------------------------------
DV_GLOBAL=(--passphrase-file "$T/beta.pass")
B_ICA_SERIAL=$(cert_serial b-ica.pem)
devid_ok "beta: revoke the ICA under root (cACompromise)" ca revoke --org beta --serial "$B_ICA_SERIAL" \
  --ca root --reason cACompromise
devid_ok "beta: regenerate the root CRL" ca crl --org beta --ca root --out b-root2.crl
check_text "beta: root CRL lists the ICA" "Serial Number: $B_ICA_SERIAL" \
  "$(openssl crl -in b-root2.crl -noout -text 2>/dev/null || true)"
concat b-crls2.pem b-ica.crl b-root2.crl
check_fails_out "beta device: openssl -crl_check_all fails: ICA certificate revoked (depth 1)" \
  'error 23 at 1 depth lookup: certificate revoked' \
  openssl verify -x509_strict -crl_check_all -CRLfile b-crls2.pem -CAfile b-root.pem -untrusted b-ica.pem b-dev.pem
check_fails_out "beta device: certtool --load-crl with the root CRL rejects the chain" 'revoked' \
  certtool --verify --load-ca-certificate b-root.pem --load-crl b-root2.crl --infile b-dev.pem.chain
devid_ok "beta: list --ca root --status revoked" ca list --org beta --ca root --status revoked
check_text "beta: list shows the ICA as revoked(cACompromise)" "^$B_ICA_SERIAL +root +ica +revoked\(cACompromise\) " "$OUT"
DV_GLOBAL=()

# ===========================================================================
# 2. Bad input against acme/devices (passphrase from env). Nothing may change.
# ===========================================================================
openssl req -in a-der.csr -outform der -out good.der
check "setup: DER CSR is valid" openssl req -inform der -in good.der -noout -verify
head -c 120 good.der >trunc.der
head -c 512 /dev/urandom >garbage.csr
head -n 4 a-der.csr >trunc.pem
: >empty.csr
SZ=$(stat -c %s good.der)
LAST=$(tail -c 1 good.der | od -An -tu1 | tr -d ' ')
{ head -c $((SZ - 1)) good.der; printf '%02x' $((LAST ^ 0x01)) | xxd -r -p; } >badsig.der
check "setup: CSR with a flipped signature byte still parses" openssl req -inform der -in badsig.der -noout
# openssl 3.0 `req -verify` reports the failure but may still exit 0
check_text "setup: CSR with a flipped signature byte fails openssl's self-signature check" 'verify failure' \
  "$(openssl req -inform der -in badsig.der -noout -verify 2>&1 || true)"
new_csr rsa2048.csr rsa:2048 "/CN=rsa-device"
new_csr rsa3072.csr rsa:3072 "/CN=rsa-device"
new_csr p384.csr P-384 "/CN=p384-device"
new_csr email.csr P-256 "/CN=mail-device/emailAddress=dev@acme.test"
new_csr nocn.csr P-256 "/O=Acme/OU=No CN"
new_csr locality.csr P-256 "/CN=loc-device/L=Paris"
new_csr nosan.csr P-256 "/CN=nosan.acme.test"

issue_err() { # DESC ERE CSR [extra args...]
  local d=$1 re=$2 csr=$3; shift 3
  expect_error "$d" "$re" ca issue --org acme --ca devices --template device --csr "$csr" --out "$T/err.pem" "$@"
}
issue_err "issue: truncated DER CSR" 'CSR|request|DER' trunc.der
issue_err "issue: garbage bytes as CSR" 'CSR|request' garbage.csr
issue_err "issue: truncated PEM CSR" 'CSR|request|PEM' trunc.pem
issue_err "issue: empty CSR file" 'CSR|request|empty' empty.csr
issue_err "issue: missing CSR file" 'no-such\.csr' "$T/no-such.csr"
issue_err "issue: CSR whose signature does not match its key" 'signature' badsig.der
issue_err "issue: RSA-2048 CSR for template device" 'RSA' rsa2048.csr
issue_err "issue: RSA-3072 CSR for template device" 'RSA' rsa3072.csr
issue_err "issue: emailAddress in the subject for template device" 'emailAddress' email.csr
issue_err "issue: subject without CN for template device" 'CN' nocn.csr
issue_err "issue: L in the subject for template device" '\bL\b' locality.csr
expect_error "issue: server template without any SAN" 'alternative name|SAN' \
  ca issue --org acme --ca devices --template server --csr nosan.csr --out "$T/err.pem"
expect_error "issue: unknown template" 'nosuchtemplate' \
  ca issue --org acme --ca devices --template nosuchtemplate --csr good.der --out "$T/err.pem"
issue_err "issue: --days beyond the template maximum (99999)" 'days|99999' good.der --days 99999
issue_err "issue: --days 0" 'day' good.der --days 0
issue_err "issue: --san without KIND:" 'garbage' good.der --san garbage
issue_err "issue: --san with an unknown kind" 'bogus' good.der --san bogus:value
issue_err "issue: --san dns: with an empty value" 'dns' good.der --san dns:
issue_err "issue: --san hardwareModuleName with a bad OID" 'OID|notanoid' good.der --san hardwareModuleName:notanoid:0A0B
issue_err "issue: --san hardwareModuleName with bad hex" 'hex|XYZ|serial' good.der --san hardwareModuleName:1.2.3.4:XYZ
issue_err "issue: --san ip: not allowed by template device" 'ip|alternative' good.der --san ip:10.0.0.1
expect_error "issue: --san ip with an invalid address (server)" 'ip|address|999' \
  ca issue --org acme --ca devices --template server --csr a-srv.csr --out "$T/err.pem" --san ip:999.1.1.1
expect_error "issue: organization does not exist" 'nosuchorg' \
  ca issue --org nosuchorg --ca devices --template device --csr good.der --out "$T/err.pem"
expect_error "issue: CA does not exist" 'nosuchca' \
  ca issue --org acme --ca nosuchca --template device --csr good.der --out "$T/err.pem"

DV_ENV=(DEVID_PASSPHRASE=wrong)
issue_err "issue: wrong passphrase (DEVID_PASSPHRASE=wrong)" 'passphrase' good.der
expect_error "crl: wrong passphrase (DEVID_PASSPHRASE=wrong)" 'passphrase' \
  ca crl --org acme --ca devices --out "$T/err.crl"
DV_ENV=(-u DEVID_PASSPHRASE)
issue_err "issue: no passphrase source at all" 'passphrase' good.der
expect_error "crl: no passphrase source at all" 'passphrase' ca crl --org acme --ca devices --out "$T/err.crl"
expect_error "init-ica: no passphrase source at all" 'passphrase' \
  ca init-ica --org acme --name nopass --subject "CN=No Pass ICA"
expect_error "init-root: no passphrase source at all (new org)" 'passphrase' \
  ca init-root --org newco --subject "CN=Newco Root"
DV_ENV=()
DV_GLOBAL=(--no-passphrase)
issue_err "issue: --no-passphrase with an encrypted CA key" 'encrypted|passphrase' good.der
DV_GLOBAL=()

expect_error "revoke: unknown serial" 'serial|no certificate' \
  ca revoke --org acme --serial 4AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA --reason keyCompromise
expect_error "revoke: serial that is not hex" 'hex|serial' ca revoke --org acme --serial xyz --reason keyCompromise
expect_error "revoke: unknown reason" 'reason|bogusReason' \
  ca revoke --org acme --serial "$A_SRV_SERIAL" --reason bogusReason
expect_error "revoke: certificateHold is refused" 'certificateHold' \
  ca revoke --org acme --serial "$A_SRV_SERIAL" --reason certificateHold
expect_error "revoke: already revoked" 'already revoked' \
  ca revoke --org acme --serial "$A_DEV_SERIAL" --reason superseded
expect_error "revoke: organization does not exist" 'nosuchorg' \
  ca revoke --org nosuchorg --serial "$A_SRV_SERIAL" --reason superseded

expect_error "list: organization does not exist" 'nosuchorg' ca list --org nosuchorg
expect_error "list: CA does not exist" 'nosuchca' ca list --org acme --ca nosuchca
expect_error "crl: organization does not exist" 'nosuchorg' ca crl --org nosuchorg --ca root --out "$T/err.crl"
expect_error "crl: CA does not exist" 'nosuchca' ca crl --org acme --ca nosuchca --out "$T/err.crl"
expect_error "export: CA does not exist" 'nosuchca' ca export --org acme --ca nosuchca --out "$T/err-export.pem"
expect_error "export: organization does not exist" 'nosuchorg' ca export --org nosuchorg --ca root --out "$T/err-export.pem"
expect_error "init-ica: organization does not exist (no root to sign with)" 'nosuchorg|root' \
  ca init-ica --org nosuchorg --name fleet --subject "CN=Orphan ICA"
expect_error "init-ica: name already taken" 'devices|exists' \
  ca init-ica --org acme --name devices --subject "CN=Again"
expect_error "init-root: organization already has a root" 'root' \
  ca init-root --org acme --subject "CN=Second Root"
expect_error "init-root: malformed subject for a new org" 'bogus|subject|name' \
  ca init-root --org newco --subject "bogus"
expect_error "init-root: --days beyond the root maximum for a new org" 'days|99999' \
  ca init-root --org newco2 --subject "CN=Newco2 Root" --days 99999

# The positive twin of the key-type checks: P-384 is fine for device.
devid_ok "issue: P-384 CSR for template device is accepted" ca issue --org acme --ca devices --template device \
  --csr p384.csr --out p384.pem
check_out "issue: the P-384 device verifies (openssl)" ': OK$' \
  openssl verify -x509_strict -CAfile a-root.pem -untrusted a-ica.pem p384.pem

# ===========================================================================
# 3b. A --no-passphrase home, end to end
# ===========================================================================
H=$T/home-np
mkdir -p -m 700 "$H"
DV_ENV=(-u DEVID_PASSPHRASE)
DV_GLOBAL=(--no-passphrase)
devid_ok "no-passphrase: init-root" ca init-root --org plain --subject "CN=Plain Root,O=Plain"
devid_ok "no-passphrase: init-ica" ca init-ica --org plain --name ica --subject "CN=Plain ICA,O=Plain" \
  --crl-url "$CRL_PATTERN"
check_eq "no-passphrase: CA keys are stored unencrypted" "0 2" \
  "$(sqlite3 "$H/devid.db" "SELECT sum(key_pem LIKE '%ENCRYPTED%') || ' ' || count(*) FROM cas" 2>&1)"
new_csr np.csr P-256 "/CN=plain-device"
devid_ok "no-passphrase: issue device" ca issue --org plain --ca ica --template device --csr np.csr --out np.pem
NP_SERIAL=$OUT
check_serial "no-passphrase device" np.pem "$NP_SERIAL"
devid_ok "no-passphrase: export chain" ca export --org plain --ca ica --chain --out np-chain.pem
devid_ok "no-passphrase: export root" ca export --org plain --ca root --out np-root.pem
devid_ok "no-passphrase: root CRL" ca crl --org plain --ca root --out np-root.crl
devid_ok "no-passphrase: ICA CRL" ca crl --org plain --ca ica --out np-ica.crl
concat np-crls.pem np-ica.crl np-root.crl
check_out "no-passphrase: device verifies with CRLs (openssl)" ': OK$' \
  openssl verify -x509_strict -crl_check_all -CRLfile np-crls.pem -CAfile np-root.pem -untrusted np-chain.pem np.pem
concat np-full.pem np.pem np-chain.pem
check_out "no-passphrase: certtool --verify-chain" 'Chain verification output: Verified' \
  certtool --verify-chain --infile np-full.pem
devid_ok "no-passphrase: revoke device" ca revoke --org plain --serial "$NP_SERIAL" --reason superseded
devid_ok "no-passphrase: regenerate ICA CRL" ca crl --org plain --ca ica --out np-ica2.crl
concat np-crls2.pem np-ica2.crl np-root.crl
check_fails_out "no-passphrase: revoked device fails openssl -crl_check_all" 'certificate revoked' \
  openssl verify -x509_strict -crl_check_all -CRLfile np-crls2.pem -CAfile np-root.pem -untrusted np-chain.pem np.pem
DV_GLOBAL=()
expect_error "no-passphrase home: issue without --no-passphrase and no passphrase is refused" 'passphrase' \
  ca issue --org plain --ca ica --template device --csr np.csr --out "$T/err-np.pem"
DV_ENV=()

# ===========================================================================
# Keys and signatures the CA must refuse even though OpenSSL's CLI makes them
# (proof of possession that no private key could pass, weak digests, odd encodings).
H=$T/home
DV_ENV=(DEVID_PASSPHRASE="$PASS_MAIN")
DV_GLOBAL=()
new_csr sha1.csr P-256 "/CN=sha1-device" -sha1
issue_err "issue: CSR signed with ECDSA-SHA1 is refused" 'signature algorithm' sha1.csr
openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout -out explicit.key 2>/dev/null
openssl req -new -key explicit.key -subj "/CN=explicit" -out explicit.csr 2>/dev/null
issue_err "issue: EC key with explicit curve parameters is refused" 'explicit' explicit.csr
openssl ecparam -name prime256v1 -genkey -noout -out comp.key 2>/dev/null
openssl ec -in comp.key -conv_form compressed -out comp2.key 2>/dev/null
openssl req -new -key comp2.key -subj "/CN=compressed" -out comp.csr 2>/dev/null
if openssl req -in comp.csr -noout -text 2>/dev/null | grep -q 'pub:' && \
   [ "$(openssl req -in comp.csr -outform DER 2>/dev/null | xxd -p | tr -d '\n' | grep -o '034200' | head -1)" != "034200" ]; then
  issue_err "issue: compressed EC point is refused (RFC 5480 uncompressed only)" 'uncompressed' comp.csr
else
  pass "issue: compressed-point CSR (openssl kept it uncompressed; nothing to refuse)"
fi
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -pkeyopt rsa_keygen_pubexp:3 -out e3.key 2>/dev/null
openssl req -new -key e3.key -subj "/CN=e3.acme.test" -addext "subjectAltName=DNS:e3.acme.test" -out e3.csr 2>/dev/null
expect_error "issue: RSA key with public exponent 3 is refused (e >= 65537)" 'exponent' \
  ca issue --org acme --ca devices --template server --csr e3.csr --out "$T/err.pem"
new_csr sub.csr P-256 "/CN=sneaky sub-CA"
expect_error "issue: a CA template cannot be used to issue from a CSR" 'init-ica' \
  ca issue --org acme --ca root --template ica --csr sub.csr --out "$T/err.pem"

# --out never follows a symbolic link (another user's link could redirect the
# write); a device is written in place; "-" is standard output.
new_csr link.csr P-256 "/CN=device-link"
echo precious >link-target.txt
ln -s link-target.txt link.pem
# (expect_error deletes an existing --out first, so this case is checked by hand.)
state >"$T/.before"
LINK_RC=0
dv ca crl --org acme --ca devices --out link.pem >"$T/.out" 2>"$T/.err" || LINK_RC=$?
state >"$T/.after"
if ((LINK_RC != 0)) && grep -q '^devid: error: .*symbolic link' "$T/.err" && cmp -s "$T/.before" "$T/.after"; then
  pass "crl: --out that is a symbolic link is refused before any change"
else
  fail "crl: --out that is a symbolic link is refused before any change" "exit $LINK_RC" "$(cat "$T/.err")"
fi
if [ -L link.pem ] && [ "$(cat link-target.txt)" = precious ]; then
  pass "the link and the file it names are untouched"
else
  fail "the link and the file it names are untouched" "$(ls -l link.pem link-target.txt)"
fi
devid_ok "export to /dev/null (a device) works" ca export --org acme --ca root --out /dev/null
if [ -c /dev/null ]; then pass "/dev/null is still a character device"; else fail "/dev/null is still a character device"; fi
devid_ok "export --out - writes the PEM to standard output" ca export --org acme --ca root --out -
check_text "standard output holds the root certificate" 'BEGIN CERTIFICATE' "$OUT"
devid_ok "issue --out - writes the certificate to stdout" ca issue --org acme --ca devices --template device \
  --csr link.csr --out -
check_out "the certificate from stdout parses" 'subject=CN = device-link' bash -c 'openssl x509 -noout -subject <<<"$1"' _ "$OUT"
check_text "the serial went to stderr" '^[0-9A-F]{32}$' "$ERR"

# The home and database are private; a home others can write into is refused.
# (SQLite's -wal and -shm files take the database file's mode.)
if [ "$(stat -c %a "$H/devid.db")" = 600 ]; then
  pass "devid.db is 0600"
else
  fail "devid.db is 0600" "$(stat -c '%a %n' "$H"/devid.db*)"
fi
"$DEVID" --home "$T/fresh-home" ca list --org nobody >/dev/null 2>&1 || true
if [ "$(stat -c %a "$T/fresh-home")" = 700 ]; then
  pass "a home devid creates is 0700"
else
  fail "a home devid creates is 0700" "$(stat -c '%a %n' "$T/fresh-home")"
fi
mkdir -p "$T/shared-home" && chmod 777 "$T/shared-home"
H=$T/shared-home
expect_error "a world-writable home is refused" 'group or others' ca list --org acme
chmod 755 "$T/shared-home"
expect_error "a world-readable home is refused (the database holds CA keys)" 'group or others' ca list --org acme
H=$T/home

# Control characters from a CSR subject never reach the terminal.
new_csr esc.csr P-256 "/CN=evil$(printf '\033')[31mred"
devid_ok "issue: subject with an escape character" ca issue --org acme --ca devices --template device --csr esc.csr --out esc.pem
devid_ok "list with an escape character in a subject" ca list --org acme
if grep -q $'\033' <<<"$OUT"; then fail "list shows no raw escape character"; else pass "list shows no raw escape character"; fi
check_text "list shows the escape as \\x1B" 'x1B' "$OUT"
DV_ENV=()

# ===========================================================================
FINISHED=1
echo
if ((FAILS == 0)); then
  echo "# all $CHECKS checks passed"
  exit 0
fi
echo "# $FAILS of $CHECKS checks FAILED"
exit 1
