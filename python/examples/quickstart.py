# Quickstart: publish JSON, receive it with a callback and by pulling; exits 0 only if right.
import json
import sys

import jsonbus

seen = []
with jsonbus.Bus() as bus:
    bus.subscribe("orders.*", lambda msg: seen.append(json.loads(msg.json)["id"]))
    with bus.subscribe_pull("orders.>") as sub:
        for i in range(3):
            bus.publish("orders.eu", json.dumps({"id": i}))      # validated and copied
        pulled = [sub.next(timeout_ms=1000).seq for _ in range(3)]
    bus.flush()                                                # every callback has run
print("callback saw ids", seen, "- pulled seqs", pulled)
sys.exit(0 if seen == [0, 1, 2] and pulled == [1, 2, 3] else 1)
