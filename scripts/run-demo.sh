#!/usr/bin/env bash
# `make run`: devid's main job on embedded defaults. Until the CMS server
# exists this demonstrates the CA: a home under ./var/, an organization with a
# root and an issuing CA, one device certificate, CRLs, and a check of it all
# by OpenSSL. Re-running reuses the hierarchy and issues one more device.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVID=${DEVID:-build/src/devid}
VAR=${VAR:-var}
HOME_DIR=${DEVID_HOME:-$VAR/devid}
OUT=$VAR/demo
ORG=demo
mkdir -p "$VAR" "$OUT"
chmod 700 "$VAR"

# CA keys are encrypted with a passphrase. For the demo only, one is made up
# and kept in var/passphrase (mode 0600); a real deployment supplies its own
# through DEVID_PASSPHRASE or --passphrase-file and keeps it away from the keys.
PASSFILE=$VAR/passphrase
if [ -z "${DEVID_PASSPHRASE:-}" ]; then
  if [ ! -s "$PASSFILE" ]; then
    (umask 077 && openssl rand -base64 24 >"$PASSFILE")
  fi
  PASS=(--passphrase-file "$PASSFILE")
else
  PASS=()
fi
devid() { "$DEVID" --home "$HOME_DIR" "${PASS[@]}" "$@"; }

echo "== devid demo: organization '$ORG' in $HOME_DIR"
if ! devid ca list --org "$ORG" >/dev/null 2>&1; then
  devid ca init-root --org "$ORG" --subject "CN=Demo Root CA,O=Demo Devices" \
    --crl-url "http://pki.demo.example/crl/{org}/{ca}.crl"
  devid ca init-ica --org "$ORG" --name devices --subject "CN=Demo Device ICA,O=Demo Devices" \
    --crl-url "http://pki.demo.example/crl/{org}/{ca}.crl" --ocsp-url "http://pki.demo.example/ocsp/{org}/{ca}"
else
  echo "   (root and issuing CA already exist; reusing them)"
fi

# The device's key: made here by OpenSSL; in the full system it is made inside the chip.
n=$(($(find "$OUT" -name 'device-*.pem' | wc -l) + 1))
DEVICE=device-$n
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$OUT/$DEVICE.key" \
  -subj "/CN=$DEVICE/O=Demo Devices" -out "$OUT/$DEVICE.csr" 2>/dev/null
chmod 600 "$OUT/$DEVICE.key"
serial=$(devid ca issue --org "$ORG" --ca devices --template device --csr "$OUT/$DEVICE.csr" \
  --san "uri:urn:demo:device:$n" --out "$OUT/$DEVICE.pem")
devid ca export --org "$ORG" --ca root --out "$OUT/root.pem"
devid ca export --org "$ORG" --ca devices --chain --out "$OUT/devices-chain.pem"
devid ca crl --org "$ORG" --ca devices --out "$OUT/devices.crl" >/dev/null
devid ca crl --org "$ORG" --ca root --out "$OUT/root.crl" >/dev/null
cat "$OUT/devices.crl" "$OUT/root.crl" >"$OUT/crls.pem"

echo "== issued $DEVICE, serial $serial"
echo "== OpenSSL checks the chain and both CRLs (x509_strict):"
openssl verify -x509_strict -crl_check_all -CAfile "$OUT/root.pem" -untrusted "$OUT/devices-chain.pem" \
  -CRLfile "$OUT/crls.pem" "$OUT/$DEVICE.pem"
echo
devid ca list --org "$ORG"
cat <<TXT

Where everything is:
  state (SQLite, CA keys encrypted)  $HOME_DIR/devid.db
  demo passphrase                    $PASSFILE
  root certificate                   $OUT/root.pem
  issuing CA chain                   $OUT/devices-chain.pem
  device key / CSR / certificate     $OUT/$DEVICE.key  $OUT/$DEVICE.csr  $OUT/$DEVICE.pem
  CRLs                               $OUT/devices.crl  $OUT/root.crl

Try:  $DEVID --home $HOME_DIR ca revoke --org $ORG --serial $serial --reason keyCompromise
      $DEVID --home $HOME_DIR --passphrase-file $PASSFILE ca crl --org $ORG --ca devices --out $OUT/devices.crl
TXT
