# Across processes (Linux): this process serves a bus (the hub) and starts a second process that
# attaches to it; they publish both ways, in one seq order, and make a request. Exits 0 only if
# right.
import json
import multiprocessing
import os
import sys

import jsonbus


def peer(name):
    """The second process: attach, take the hub's news, ask for a quote, place orders."""
    with jsonbus.attach(name, {"connect_timeout_ms": 5000}) as bus:   # a Bus like any other
        with bus.subscribe_pull("news.>") as news:
            bus.publish("peer.ready", json.dumps({"pid": os.getpid()}))
            headline = news.next(timeout_ms=5000)                     # published by the hub
        quote = bus.request("prices.quote", '{"item": "tea"}', timeout_ms=5000)
        for i in range(3):
            bus.publish("orders.new", json.dumps({"id": i}))
        bus.flush()                  # the hub's callbacks (in the other process) have run
    ok = headline is not None and headline.data == {"text": "open"}
    sys.exit(0 if ok and json.loads(quote) == {"item": "tea", "price": 3} else 1)


def main():
    name = "across-processes-%d" % os.getpid()   # in $XDG_RUNTIME_DIR/jsonbus/
    orders = []
    with jsonbus.Bus() as bus:
        bus.serve(name)                           # this process is the hub
        bus.subscribe("orders.>", lambda msg: orders.append((msg.seq, msg.data["id"])))
        bus.subscribe("prices.quote", lambda msg: bus.reply(msg, json.dumps(dict(msg.data, price=3))))
        with bus.subscribe_pull("peer.ready") as ready:
            # "spawn": a fresh interpreter that attaches itself (a forked child must not use
            # its parent's buses).
            child = multiprocessing.get_context("spawn").Process(target=peer, args=(name,))
            child.start()
            hello = ready.next(timeout_ms=30000)
            if hello is not None:
                bus.publish("news.market", '{"text": "open"}')
            child.join(60)
    if child.exitcode is None:
        child.kill()
    seqs = [seq for seq, _ in orders]
    print("hub %d served %r; peer %s exited %s; orders at the hub (seq, id): %s"
          % (os.getpid(), name, hello and hello.data["pid"], child.exitcode, orders))
    right = (hello is not None and hello.data["pid"] == child.pid and child.exitcode == 0
             and [i for _, i in orders] == [0, 1, 2] and seqs == sorted(seqs)
             and seqs[0] > hello.seq)
    return 0 if right else 1


if __name__ == "__main__":
    sys.exit(main())
