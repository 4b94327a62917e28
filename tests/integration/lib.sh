# Shared by the integration scripts: a check counter and its verdicts.
# pass DESC / fail DESC [DETAIL...] / ok DESC CMD... (passes when CMD exits 0) / finish
FAILS=0
CHECKS=0
pass() { CHECKS=$((CHECKS + 1)); echo "ok - $1"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL - $1"; [ $# -gt 1 ] && printf '#   %s\n' "${@:2}"; return 0; }
ok() { local d=$1; shift; if out=$("$@" 2>&1); then pass "$d"; else fail "$d" "$*" "$out"; fi; }
finish() {
  echo
  if ((FAILS > 0)); then echo "# $FAILS of $CHECKS checks failed"; exit 1; fi
  echo "# all $CHECKS checks passed"
}

# A scratch directory to work in; it and every background process listed in
# PIDS go away when the script exits.
PIDS=()
enter_scratch_dir() {
  T=$(mktemp -d)
  trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"' EXIT
  cd "$T"
}

# start_tls_server CERT KEY [VERSION-FLAG]: openssl s_server on a free port
# (PORT), requiring a client certificate that chains to chain.pem; one
# connection, output in server.out.
start_tls_server() {
  rm -f server.out
  (sleep 20 | openssl s_server -accept 0 -cert "$1" -key "$2" -CAfile chain.pem -Verify 1 \
    "${3:--tls1_2}" -cipher ECDHE-ECDSA-AES128-GCM-SHA256 -naccept 1 >server.out 2>&1) &
  PIDS+=($!)
  PORT=""
  for _ in $(seq 50); do
    PORT=$(grep -o 'ACCEPT.*:[0-9]*' server.out 2>/dev/null | grep -o '[0-9]*$' || true)
    [ -n "$PORT" ] && break
    sleep 0.1
  done
}

# flip_byte FILE OFFSET: inverts one byte in place (a tampered image).
flip_byte() {
  local b
  b=$(xxd -s "$2" -l 1 -p "$1")
  printf '%02x' $((0x$b ^ 0xff)) | xxd -r -p | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

# start_serve DEVID HOME: `devid serve` on a free port in the background;
# sets SERVER (pid), PORT and URL; output in out.txt, log in log.txt.
start_serve() {
  "$1" --home "$2" serve --listen 127.0.0.1:0 >out.txt 2>log.txt &
  SERVER=$!
  PIDS+=("$SERVER")
  PORT=""
  for _ in $(seq 100); do
    PORT=$(sed -n 's/.*:\([0-9]*\) (clients.*/\1/p' out.txt 2>/dev/null || true)
    [ -n "$PORT" ] && break
    sleep 0.1
  done
  URL="https://127.0.0.1:$PORT"
}

# start_hub CMD...: CMD (a `devid hub start`) in the background until it prints
# "hub ready on 127.0.0.1:PORT (mosquitto pid N)"; sets HUB (pid), MQTT (PORT,
# empty if it never got ready) and MOSQ (N). Output in hub.out; errors appended
# to hub.err, so a restarted hub's log follows the first one's.
start_hub() {
  "$@" >hub.out 2>>hub.err &
  HUB=$!
  PIDS+=("$HUB")
  MQTT="" MOSQ=""
  for _ in $(seq 200); do
    read -r MQTT MOSQ < <(sed -n 's/^hub ready on 127\.0\.0\.1:\([0-9]*\) (mosquitto pid \([0-9]*\))$/\1 \2/p' \
      hub.out 2>/dev/null) || true
    [ -n "$MQTT" ] && break
    kill -0 "$HUB" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$MOSQ" ] && PIDS+=("$MOSQ")
  return 0
}
