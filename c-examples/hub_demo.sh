#!/bin/sh
# hub_demo.sh BUILD_DIR - the hub.c / peer.c demo (HUB.md) in one go: starts the hub, a
# watcher and the order peer together, waits for them, and checks that the watcher saw the
# hub's ticks and the peer's orders, that the peer got its quote and that the hub got the
# orders. Builds nothing: BUILD_DIR is the CMake build directory (or the directory holding
# hub and peer). Runs in a private XDG_RUNTIME_DIR. Exits 0 on success, 1 otherwise.
set -u
if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
BIN="$1"
[ -x "$BIN/c-examples/hub" ] && BIN="$BIN/c-examples"
for p in hub peer; do
  if [ ! -x "$BIN/$p" ]; then
    echo "hub_demo: no $BIN/$p (build the examples first)" >&2
    exit 1
  fi
done

T="$(mktemp -d /tmp/jsonbus-hub-demo-XXXXXX)"
chmod 700 "$T"
export XDG_RUNTIME_DIR="$T"
HUB_PID=""
WATCH_PID=""
cleanup() {
  [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null
  [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

# the watcher first: it waits (up to 5 s) for the hub to serve "prices"
"$BIN/peer" watch 3 >"$T/watch.log" 2>&1 &
WATCH_PID=$!
"$BIN/hub" 4 >"$T/hub.log" 2>&1 &
HUB_PID=$!

# the orders once the watcher has subscribed (its "watching" line)
i=0
until grep -q '^peer: watching' "$T/watch.log" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 100 ]; then
    echo "hub_demo: the watcher did not subscribe within 10 s" >&2
    cat "$T/watch.log" "$T/hub.log" >&2
    exit 1
  fi
  sleep 0.1
done
sleep 0.5 # a few ticks first
"$BIN/peer" orders >"$T/orders.log" 2>&1
orders_rc=$?

wait "$WATCH_PID"
watch_rc=$?
WATCH_PID=""
wait "$HUB_PID"
hub_rc=$?
HUB_PID=""

echo "---- hub"
cat "$T/hub.log"
echo "---- peer orders"
cat "$T/orders.log"
echo "---- peer watch"
cat "$T/watch.log"
echo "----"

ok=1
fail() {
  echo "hub_demo: $*" >&2
  ok=0
}
[ "$hub_rc" -eq 0 ] || fail "hub exited with $hub_rc"
[ "$orders_rc" -eq 0 ] || fail "peer orders exited with $orders_rc"
[ "$watch_rc" -eq 0 ] || fail "peer watch exited with $watch_rc"
ticks=$(grep -c ' prices\.ACME ' "$T/watch.log")
orders=$(grep -c ' orders\.new ' "$T/watch.log")
[ "$ticks" -ge 5 ] || fail "the watcher saw $ticks ticks (at least 5 expected)"
[ "$orders" -eq 3 ] || fail "the watcher saw $orders orders (3 expected)"
grep -q 'quote.ACME -> {"symbol":"ACME","price":[0-9]' "$T/orders.log" || fail "no quote for the order peer"
hub_orders=$(grep -c '^hub: order ' "$T/hub.log")
[ "$hub_orders" -eq 3 ] || fail "the hub printed $hub_orders orders (3 expected)"
left=$(ls -A "$T/jsonbus" 2>/dev/null | wc -l)
[ "$left" -eq 0 ] || fail "the name directory still holds: $(ls -A "$T/jsonbus")"

if [ $ok -eq 1 ]; then
  echo "hub_demo: ok ($ticks ticks and $orders orders seen by the watcher, quote answered)"
  exit 0
fi
exit 1
