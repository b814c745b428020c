#!/usr/bin/env bash
# Boots the test guest under TCG and checks what it prints. Usage:
#   guest_boot_test.sh <case> <guest.elf> [tandem-guest-check]
# cases: counts | full | selftest | rate | image. Every wait is bounded; only our own QEMU is killed, by pid.
set -euo pipefail
case_name=$1
guest=$2
checker=${3:-}
qemu=${QEMU:-qemu-system-x86_64}
[ -f "$guest" ] || { echo "FAIL: no test guest at $guest"; exit 1; }

work=$(mktemp -d /tmp/tandem-guest-test.XXXXXX)
qpid=
cleanup() {
  if [ -n "$qpid" ]; then kill -CONT "$qpid" 2>/dev/null || true; kill "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
log=$work/serial.log
fail() { echo "FAIL: $*"; echo "--- serial log (last 20 lines):"; tail -n 20 "$log" 2>/dev/null || true; exit 1; }

# boot <append> [extra qemu args...]
boot() {
  local append=$1; shift
  "$qemu" -machine q35 -accel tcg -nodefaults -vga none -display none -serial "file:$log" \
    -kernel "$guest" -append "$append" "$@" </dev/null >"$work/qemu.out" 2>&1 &
  qpid=$!
}
alive() { kill -0 "$qpid" 2>/dev/null || fail "QEMU exited: $(cat "$work/qemu.out")"; }
ok_counters() { grep -aoE '^counter=[0-9]+ ok$' "$log" 2>/dev/null | sed -E 's/counter=([0-9]+) ok/\1/' || true; }
last_counter() { grep -aoE '^counter=[0-9]+' "$log" 2>/dev/null | tail -n 1 | cut -d= -f2 || true; }
# wait_for <seconds> <command...>: polls every 0.1 s
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do alive; ((SECONDS < deadline)) || return 1; sleep 0.1; done
}
have_ok_lines() { (($(ok_counters | wc -l) >= $1)); }
counter_above() { local c; c=$(last_counter); [ -n "$c" ] && ((c > $1)); }
# The ok counters never go down and end higher than they started.
check_rising() {
  local prev=-1 first= n
  for n in $(ok_counters); do
    ((n >= prev)) || fail "counter went down: $prev then $n"
    [ -n "$first" ] || first=$n
    prev=$n
  done
  ((prev > first)) || fail "counter did not rise ($first .. $prev)"
}
expect_banner() {
  grep -aqxF "tandem-guest boot pages=$1 rate=$2" "$log" || fail "no banner 'tandem-guest boot pages=$1 rate=$2'"
}
no_broken() { ! grep -aq 'INVARIANT BROKEN' "$log" || fail "guest reports INVARIANT BROKEN"; }

case $case_name in
  counts)
    boot "pages=256"
    wait_for 20 have_ok_lines 6 || fail "fewer than 6 'counter=<n> ok' lines within 20 s"
    expect_banner 256 0; check_rising; no_broken
    echo "PASS: guest boots and counts: $(ok_counters | head -n 1) .. $(ok_counters | tail -n 1)"
    ;;
  full)
    boot "pages=4096 fill=full"
    wait_for 20 have_ok_lines 6 || fail "fewer than 6 'counter=<n> ok' lines within 20 s"
    expect_banner 4096 0; check_rising; no_broken
    grep -aq 'fill=full' "$log" || fail "guest did not take fill=full"
    echo "PASS: whole-page fill counts: $(ok_counters | head -n 1) .. $(ok_counters | tail -n 1)"
    ;;
  selftest)
    boot "pages=64 selftest=break"
    broken_status() { (($(grep -aoE '^counter=[0-9]+ INVARIANT BROKEN$' "$log" 2>/dev/null | wc -l) >= 3)); }
    wait_for 20 broken_status || fail "no 'counter=<n> INVARIANT BROKEN' lines within 20 s"
    grep -aqE '^INVARIANT BROKEN at page 16: [0-9]+ vs [0-9]+$' "$log" || fail "no 'INVARIANT BROKEN at page 16'"
    have_ok_lines 1 || fail "no ok line before the deliberate corruption"
    # Once broken, never ok again; and the guest keeps running (counter still rises).
    after=$(sed -n '/^INVARIANT BROKEN at page/,$p' "$log")
    ! grep -qE ' ok$' <<<"$after" || fail "'ok' printed after the invariant broke"
    first=$(grep -oE '^counter=[0-9]+ INVARIANT BROKEN$' <<<"$after" | head -n 1 | grep -oE '[0-9]+')
    wait_for 5 counter_above "$first" || fail "guest stopped counting after the break"
    echo "PASS: deliberate corruption detected: $(grep -a '^INVARIANT BROKEN at' "$log")"
    ;;
  rate)
    # 400 pages/s over 100 pages: 4 rounds per second of host wall time.
    boot "pages=100 rate=400"
    wait_for 20 have_ok_lines 2 || fail "no 'counter=<n> ok' lines within 20 s"
    expect_banner 100 400
    c0=$(last_counter); t0=$(date +%s%N)
    sleep 4; alive
    c1=$(last_counter); t1=$(date +%s%N)
    per_s=$(( (c1 - c0) * 1000000000 * 10 / (t1 - t0) ))  # rounds per second, times 10
    # Status lines come every 250 ms, so the sampled counters are up to one round off: allow 2.5 .. 5.5 /s.
    ((per_s >= 25 && per_s <= 55)) || fail "rate=400 pages=100 ran at $((per_s / 10)).$((per_s % 10)) rounds/s, want ~4"
    no_broken
    echo "PASS: rate limit: $((per_s / 10)).$((per_s % 10)) rounds/s for 4 expected"
    ;;
  image)
    [ -x "$checker" ] || { echo "FAIL: no checker at $checker"; exit 1; }
    ram=$work/ram
    boot "pages=512" -m 64M -object "memory-backend-file,id=ram0,size=64M,mem-path=$ram,share=on" \
      -machine memory-backend=ram0
    wait_for 20 have_ok_lines 4 || fail "fewer than 4 'counter=<n> ok' lines within 20 s"
    # A stopped VM's RAM is one instant of the guest: consistent, at or past what it last printed.
    snapshot() {
      local printed; printed=$(last_counter)
      kill -STOP "$qpid"; sleep 0.2
      out=$("$checker" "$ram") || { kill -CONT "$qpid"; fail "stopped VM's RAM: $out"; }
      cp "$ram" "$1"
      kill -CONT "$qpid"
      local c; c=$(grep -oE 'counter=[0-9]+' <<<"$out" | cut -d= -f2)
      ((c >= printed)) || fail "image counter $c is older than the printed $printed"
      echo "stopped VM: $out"
    }
    snapshot "$work/a"
    old=$(grep -oE 'counter=[0-9]+' <<<"$out" | cut -d= -f2)
    wait_for 10 counter_above $((old + 2)) || fail "guest did not move on after SIGCONT"
    snapshot "$work/b"
    no_broken
    # Mixed epochs: image b with one page taken from image a must be caught.
    page=$(( (0x200000 >> 12) + 300 ))
    dd if="$work/a" of="$work/b" bs=4096 skip=$page seek=$page count=1 conv=notrunc status=none
    if out=$("$checker" "$work/b"); then fail "checker accepted a mixed-epoch image: $out"; fi
    grep -qE '^BROKEN: page (299|300|301): ' <<<"$out" || fail "unexpected checker verdict: $out"
    echo "PASS: mixed-epoch image: $out"
    ;;
  *) echo "unknown case $case_name"; exit 2 ;;
esac
