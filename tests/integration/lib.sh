# Shared by the integration scripts: a check counter and its verdicts.
# pass DESC / fail DESC [DETAIL...] / ok DESC CMD... (passes when CMD exits 0) / finish
FAILS=0
CHECKS=0
pass() { CHECKS=$((CHECKS + 1)); echo "ok - $1"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL - $1"; [ $# -gt 1 ] && printf '#   %s\n' "${@:2}"; }
ok() { local d=$1; shift; if out=$("$@" 2>&1); then pass "$d"; else fail "$d" "$*" "$out"; fi; }
finish() {
  echo
  if ((FAILS > 0)); then echo "# $FAILS of $CHECKS checks failed"; exit 1; fi
  echo "# all $CHECKS checks passed"
}
