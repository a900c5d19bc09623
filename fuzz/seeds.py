#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/<target>/ (small, hand-picked inputs
in each target's input format; see the comments at the top of fuzz_targets/*.rs).
Re-running it is idempotent; libFuzzer runs never write into these folders (smoke.sh and the
README's commands give them a scratch folder first)."""
import hashlib, os, random

HERE = os.path.dirname(os.path.abspath(__file__))

def write(target, blobs):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for b in blobs:
        with open(os.path.join(d, "seed-" + hashlib.sha1(b).hexdigest()[:16]), "wb") as f:
            f.write(b)

REC, FIELD = b"\xf5", b"\xf6"

def pub(flags, depth, maxb, records):
    head = bytes([flags, depth - 1]) + (maxb - 1).to_bytes(2, "little")
    return head + REC.join(records)

payloads = [b"1", b"-0.5e+10", b'"x"', b'"caf\xc3\xa9 \\u00e9 \\n"', b"true", b"null", b"[]", b"{}",
            b' {"a": [1, {"b": null}]} \n', b"[[[[[1]]]]]", b"[[[[[[1]]]]]]", b'{"a":{"a":{"a":{}}}}',
            b"", b" ", b"{", b"[1,]", b"01", b"1.", b"NaN", b"'a'", b'"\\x"', b'"a\tb"', b"1 2",
            b"\x00", b'["a\x00b"]', b"\xff", b'"\xc3"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"',
            b'"abcdefgh\xe2\x82"', b"[1, \xc3\xa9]", b'"\\ud800"', b"\xef\xbb\xbf1",
            b'"' + b"a" * 300 + b'"', b'"0123456\\"[[[["', b"[" * 40 + b"]" * 40]
topics = [b"a.b", b"a", b"orders.eu.new", b"!~#$%&'()+,-/:;<=?@[]^_`{|}", b"x" * 256, b"x" * 257,
          b"", b"a..b", b".a", b"a.", b"a b", b"caf\xc3\xa9", b"a*b", b"a.*", b">", b"a\x00.*", b"a.>x"]
seeds = []
for i, p in enumerate(payloads):
    seeds.append(pub(0, 5, 200, [p]))
seeds.append(pub(0, 5, 200, [t + FIELD + b"1" for t in topics]))
seeds.append(pub(0, 1, 2, [b"1", b"12", b"123", b"[]", b"[1]", b"[[]]"]))
seeds.append(pub(0, 16, 1024, payloads))
seeds.append(pub(1, 5, 200, payloads[:12]))
seeds.append(pub(1, 3, 20, [b"[[[1]]]", b"[[[[1]]]]", b"1\x00garbage", b"\xff\x00"]))
seeds.append(pub(2, 5, 200, [b"1", b"2"]))
seeds.append(pub(4, 5, 200, [b"1", b"2"]))
seeds.append(pub(8, 8, 64, [b"a.b" + FIELD + b'{"k":[1,2,3]}'] * 5))
write("publish", seeds)

# validate: max_depth byte, then the payload; long documents so that strings, escapes and
# numbers straddle the 64-byte blocks
item = b'{"id":7919,"ok":true,"v":"abc\\"d\\\\e\\u00e9f","n":-1.5e+3,"z":null}'
long_docs = [b"[" + b",".join([item] * n) + b"]" for n in (1, 3, 10, 40)]
long_docs += [b'"' + b"x" * n + b'\\"' + b"y" * n + b'"' for n in (30, 62, 63, 64, 65, 200)]
long_docs += [b"[" * 70 + b"]" * 70, b"[" * 70 + b"]" * 69, b'{"a":' * 40 + b"1" + b"}" * 40]
write("validate", [bytes([d]) + p for d in (128, 3) for p in payloads + long_docs])

opts = [b"", b"{}", b" { } ", b"null", b"[]", b"[1]", b"{", b"1", b'"{}"',
        b'{"dispatcher_threads":0}', b'{"dispatcher_threads":256}', b'{"dispatcher_threads":257}',
        b'{"dispatcher_threads":-1}', b'{"dispatcher_threads":2}',
        b'{"queue_capacity":1,"publish_timeout_ms":0}', b'{"queue_capacity":3,"publish_timeout_ms":0,"max_depth":1}',
        b'{"queue_capacity":0}', b'{"queue_capacity":16777216}', b'{"queue_capacity":16777217}',
        b'{"publish_timeout_ms":-1}', b'{"publish_timeout_ms":-2}', b'{"publish_timeout_ms":2147483647}',
        b'{"publish_timeout_ms":2147483648}', b'{"max_message_bytes":1}', b'{"max_message_bytes":0}',
        b'{"max_message_bytes":1073741824}', b'{"max_message_bytes":1073741825}', b'{"max_depth":1}',
        b'{"max_depth":0}', b'{"max_depth":65535}', b'{"max_depth":65536}', b'{"max_depth":2.5}',
        b'{"max_depth":1e3}', b'{"max_depth":1.0}', b'{"max_depth":-0}', b'{"max_depth":"4"}',
        b'{"max_depth":99999999999999999999}', b'{"max_depth":18446744073709551615}',
        b'{"max_depth":null}', b'{"max_depth":[1]}', b'{"max_depth":{}}', b'{"max_depth":true}',
        b'{"dispatcher_spin_us":0}', b'{"dispatcher_spin_us":1000001}', b'{"queue_capacty":5}',
        b'{"":1}', b'{"max_depth":4,"max_depth":5}', b'{"max_depth":0,"max_depth":5}',
        b'{"max_message_bytes":40,"max_depth":30}', b'{"max_depth":3}\x00garbage', b'{"max_depth":3,}',
        b'{"max_\xc3\xa9":3}', b'{"max_depth":3}\xff', b'\xef\xbb\xbf{}',
        b'{"dispatcher_threads":1,"queue_capacity":2,"publish_timeout_ms":0,"max_message_bytes":64,"max_depth":2,"dispatcher_spin_us":0}']
# subscription options (the same target gives every text to jsonbus_subscribe_with/_pull too)
opts += [b'{"queue_limit":0}', b'{"queue_limit":1}', b'{"queue_limit":3,"on_full":"drop_oldest"}',
         b'{"queue_limit":2,"on_full":"drop_new"}', b'{"queue_limit":4,"on_full":"end"}',
         b'{"queue_limit":64,"on_full":"block"}', b'{"queue_limit":16777216}', b'{"queue_limit":16777217}',
         b'{"queue_limit":-1}', b'{"queue_limit":-0}', b'{"queue_limit":1.0}', b'{"queue_limit":"1"}',
         b'{"on_full":"drop"}', b'{"on_full":"END"}', b'{"on_full":1}', b'{"on_full":null}',
         b'{"on_full":"blo\\u0063k"}', b'{"max_failures":2147483647}', b'{"max_failures":2147483648}',
         b'{"max_failures":-1}', b'{"group":"g"}', b'{"group":"workers-1_x"}', b'{"group":"a.b"}',
         b'{"group":"*"}', b'{"group":">"}', b'{"group":"a*"}', b'{"group":"a>b"}', b'{"group":""}',
         b'{"group":" a"}', b'{"group":"caf\xc3\xa9"}', b'{"group":"\\u0041"}', b'{"group":"\\u0000"}',
         b'{"group":null}', b'{"group":1}', b'{"group":"' + b"x" * 256 + b'"}', b'{"group":"' + b"x" * 257 + b'"}',
         b'{"group":"!~#$%&\'()+,-/:;<=?@[]^_`{|}"}', b'{"group":"g","group":"g"}', b'{"limit":1}',
         b'{"queue_limit":2,"on_full":"end","max_failures":1,"group":"g"}', b'{"queue_limit":1,"queue_capacity":1}']
write("options", opts)

def pat(records):
    return REC.join(records)
pats = [b">", b"a", b"a.*", b"a.>", b"*.b", b"*", b"a.b.c", b"*.*.>", b"b.>", b"a.*.>", b"*.>",
        b"a.>.b", b"a*", b"", b"a.", b"..", b">.a", b"a.>x", b"\xc3\xa9", b"a b", b"x" * 256, b"x" * 257]
tops = [b"a", b"a.b", b"a.b.c", b"b", b"x.y", b"x", b"q.b", b"a.q.c", b"a.*", b">", b"", b"a..b"]
ps = []
ps.append(pat([b"\x00" + p for p in pats] + [b"\x02" + t for t in tops]))
ps.append(pat([b"\x00" + p for p in pats[:11]] + [b"\x02" + t for t in tops] +
              [b"\x03" + bytes([i]) for i in range(0, 12, 2)] + [b"\x02" + t for t in tops] +
              [b"\x03\x00", b"\x03\x00", b"\x03\x63"]))
for p in pats:
    ps.append(pat([b"\x00" + p] + [b"\x02" + t for t in tops]))
ps.append(pat([b"\x00a.>", b"\x00a.>", b"\x00a.>", b"\x02a.b", b"\x03\x01", b"\x02a.b", b"\x00a.>", b"\x02a.b.c"]))
ps.append(pat([b"\x00" + b".".join([b"*"] * 100) + b".>", b"\x02" + b".".join([b"a"] * 128)]))
write("patterns", ps)

# sequence: op bytes (call (op/20*10 + op%10) % 20: 0 new, 1-3 publish, 4-5 subscribe, 6 unsub,
# 7 flush, 8 close, 9 free, 10/19 subscribe_with, 11 subscribe_pull, 12 next, 13 release,
# 14 pull_fd, 15 subscription_stats, 16 publish burst, 17 drain, 18 reason names;
# op/10%2 = slot), each followed by two argument bytes (subscribe_with: three).
def seq(ops):
    return b"".join(bytes(o) for o in ops)
ss = [
    seq([(0, 0, 0), (4, 0, 0), (1, 1, 0), (1, 1, 1), (7, 0, 0)]),                       # basic
    seq([(0, 0x0c, 0), (4, 0, 2), (1, 1, 0), (1, 2, 0), (1, 4, 0), (7, 0, 0), (1, 1, 0), (7, 0, 0)]),  # k=1
    seq([(0, 0x04, 0), (4, 3, 3), (5, 1, 0x80), (1, 1, 0), (1, 1, 1), (1, 2, 2), (6, 0, 0), (7, 0, 0)]),
    seq([(0, 0x24, 0), (4, 0, 0)] + [(1, 1, i) for i in range(16)] + [(8, 2, 0), (1, 0, 0), (4, 0, 0), (7, 0, 0)]),
    seq([(0, 0, 0), (10, 0, 0), (4, 0, 0), (14, 0, 0), (6, 8, 0), (16, 8, 0), (1, 0, 0), (11, 0, 0), (7, 0, 0), (17, 0, 0)]),
    seq([(0, 0, 0), (4, 3, 4), (1, 1, 0), (1, 1, 0), (1, 1, 0), (1, 1, 0), (1, 1, 0), (1, 1, 0), (6, 0, 0), (6, 0, 0), (9, 0, 0)]),
    seq([(0, 0x30, 0), (4, 0, 0), (4, 1, 0)] + [(1, 0, 1)] * 10 + [(8, 3, 0), (9, 0, 0), (4, 0, 0), (1, 0, 0), (7, 0, 0)]),
    seq([(0, 0x40, 0), (4, 0, 0)] + [(1, i, j) for i in range(6) for j in (0, 4, 5, 8, 10)] + [(7, 0, 0)]),
    seq([(4, i, 0) for i in range(14)] + [(1, t, 0) for t in range(10)] + [(7, 0, 0)] + [(6, 8 * i, 0) for i in range(14)] + [(7, 0, 0)]),
    seq([(0, 0x1c, 0), (4, 0, 5), (4, 0, 3), (4, 2, 2)] + [(1, 1, 0)] * 8 + [(7, 1, 0), (6, 0, 0), (6, 8, 0), (6, 16, 0), (7, 0, 0)]),
]
rng = random.Random(20240601)
for n in range(30):
    ops = []
    for _ in range(rng.randint(5, 40)):
        op = rng.choice([0, 1, 1, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9]) + 10 * rng.randint(0, 1)
        ops.append((op, rng.randint(0, 255), rng.randint(0, 255)))
    ss.append(seq(ops))

# The 2A calls (subscription options, end notices, pull subscriptions).
def op(call, slot=0):
    """The opcode byte of `call` (0-19) on bus `slot`."""
    return call + 10 * slot if call < 10 else 20 + 10 * slot + call - 10
NEW, PUB, SUB, UNSUB, FLUSH, CLOSE, FREE = 0, 1, 4, 6, 7, 8, 9
WITH, PULL, NEXT, RELEASE, FD, STATS, BURST, DRAIN, NAMES = 10, 11, 12, 13, 14, 15, 16, 17, 18
def o(call, a=0, b=0, c=None, slot=0):
    return (op(call, slot), a, b) + (() if c is None else (c,))
def opts(limit=0, policy=0, mf=0, group=0):
    """Options byte: limit 0/1/2/4, policy block/drop_oldest/drop_new/end, max_failures
    0/1/2/explicit defaults, group none/g/h/'{}'."""
    return [0, 1, 2, 4].index(limit) | policy << 2 | mf << 4 | group << 6
BIG, BIG_T0, CAP1_T0 = 0x0c, 0x2c, 0x20  # bus options bytes: capacity 65536 (timeout -1 / 0); capacity 1, timeout 0
FIVE_A = 100  # burst: 5 publishes on topic "a"
s2 = [
    # pull basics: next (released / held), descriptor, stats, drain
    seq([o(NEW, BIG), o(PULL, 1), o(PUB, 0, 0), o(PUB, 0, 1), o(PUB, 0, 2), o(FD), o(NEXT), o(NEXT, 0, 4),
         o(FD), o(STATS), o(DRAIN), o(FD), o(NEXT, 0, 3), o(FLUSH, 1), o(FLUSH), o(CLOSE)]),
    # a pull subscription per policy, limit 2, publish_timeout_ms 0 ("block" -> FULL)
    *[seq([o(NEW, BIG_T0), o(PULL, 1, opts(2, pol)), o(FD), o(BURST, FIVE_A), o(STATS), o(FD), o(NEXT),
           o(NEXT), o(NEXT), o(STATS), o(PUB, 0, 0), o(STATS), o(UNSUB), o(NEXT), o(STATS), o(FLUSH)])
      for pol in range(4)],
    # callback subscriptions per policy, limit 1, with end notices
    seq([o(NEW, BIG)] + [o(WITH, 0, 0, opts(1, pol)) for pol in range(4)] +
        [o(BURST, FIVE_A), o(BURST, FIVE_A), o(STATS, 0), o(STATS, 8), o(FLUSH), o(STATS, 16), o(UNSUB, 0),
         o(UNSUB, 8), o(BURST, FIVE_A), o(FLUSH), o(CLOSE)]),
    seq([o(NEW, BIG_T0 + 1)] + [o(WITH, 0, 0, opts(2, pol)) for pol in range(4)] +
        [o(BURST, FIVE_A)] * 4 + [o(FLUSH), o(STATS, 24), o(FREE)]),
    # groups: pull members (one with a limit) and a callback member
    seq([o(NEW, BIG), o(PULL, 0, opts(group=1)), o(PULL, 0, opts(1, 2, group=1)), o(WITH, 0, 0, opts(group=1)),
         o(PULL, 1, opts(group=2)), o(BURST, FIVE_A), o(BURST, FIVE_A), o(STATS, 0), o(STATS, 8), o(DRAIN, 16),
         o(DRAIN, 24), o(FLUSH), o(UNSUB, 16), o(BURST, FIVE_A), o(FLUSH), o(CLOSE)]),
    seq([o(NEW, BIG), o(PULL, 0, opts(1, 0, group=1)), o(PULL, 0, opts(1, 3, group=1)), o(BURST, FIVE_A),
         o(STATS), o(STATS, 8), o(NEXT), o(NEXT, 8), o(BURST, FIVE_A), o(FLUSH)]),
    seq([o(NEW, BIG + 1)] + [o(WITH, 3, 0, opts(pol % 3, pol, group=1)) for pol in range(4)] +
        [o(BURST, FIVE_A + 1)] * 3 + [o(FLUSH), o(STATS), o(UNSUB, 8), o(BURST, FIVE_A + 1), o(CLOSE, 3)]),
    # max_failures and self-unsubscribing callbacks with end notices
    seq([o(NEW, BIG), o(WITH, 1, 0x80, opts(mf=1)), o(WITH, 1, 0x80, opts(mf=2)), o(WITH, 1, 0xc0, opts(mf=3)),
         o(WITH, 1, 2), o(WITH, 1, 0x43), o(WITH, 1, 0x20)] + [o(PUB, 0, i) for i in range(6)] +
        [o(FLUSH), o(UNSUB, 0), o(UNSUB, 8), o(UNSUB, 16), o(STATS, 24), o(UNSUB, 24), o(FLUSH), o(CLOSE)]),
    # held messages outlive their bus's close and free; capacity 1 with a pulled message -> FULL
    seq([o(NEW, BIG), o(PULL, 0), o(PUB), o(PUB), o(NEXT, 0, 12), o(CLOSE, 2), o(NEXT), o(FD), o(STATS),
         o(UNSUB), o(FREE)]),
    seq([o(NEW, CAP1_T0), o(PULL, 0), o(PUB), o(PUB), o(NEXT, 0, 12), o(PUB), o(RELEASE), o(PUB), o(NEXT),
         o(FLUSH, 1), o(DRAIN), o(FLUSH, 1), o(FREE)]),
    # names, bad options, closed bus, another bus's ids
    seq([o(NAMES, a, b) for a in range(4) for b in (0, 3, 7, 200)]),
    seq([o(NEW, BIG), o(WITH, 0, 0, 0x3f), o(WITH, 0, 0, 0x7f), o(PULL, 0, 0xbf), o(PULL, 11, 0xff), o(WITH, 11, 0, 1),
         o(CLOSE), o(WITH, 0, 0, 1), o(PULL, 0, 0x3f), o(PUB)]),
    seq([o(NEW, BIG), o(NEW, BIG, slot=1), o(PULL, 0), o(WITH, 0, slot=1), o(PUB), o(PUB, slot=1), o(NEXT, slot=1),
         o(FD, slot=1), o(STATS, slot=1), o(NEXT, 8), o(FD, 8), o(UNSUB, 0, slot=1), o(NEXT), o(FREE), o(NEXT, slot=1)]),
]
ss += s2
calls = [0, 1, 1, 1, 2, 3, 4, 6, 7, 7, 8, 9, 10, 10, 11, 11, 12, 12, 12, 13, 14, 15, 16, 17, 18, 19]
for n in range(20):
    ops = []
    for _ in range(rng.randint(10, 50)):
        call = rng.choice(calls)
        ops.append(o(call, rng.randint(0, 255), rng.randint(0, 255),
                     rng.randint(0, 255) if call in (10, 19) else None, rng.randint(0, 1)))
    ss.append(seq(ops))

# The 2C calls: opcode 250/251 = jsonbus_serve of slot 0/1, 252-255 = jsonbus_attach (slot 1
# becomes a handle attached to slot 0's bus; see fuzz_targets/sequence.rs).
SERVE0, SERVE1, ATTACH = 250, 251, 252
def x(op, a=0, b=0):
    return (op, a, b)
REQ, ASYNC, AFTER, CANCEL = 20, 21, 22, 23
def o2(call, a=0, b=0, c=None, slot=0):
    """The opcode of calls 20-23 too (op/20*10 + op%10 = call)."""
    if call < 20:
        return o(call, a, b, c, slot)
    return (40 + 10 * slot + call - 20, a, b) + (() if c is None else (c,))
LINK = 0x0d  # attach byte: slot 0 capacity 65536 (timeout -1), peer publish_timeout_ms 20, max_peers 2
s3 = [
    # serve: valid, twice (NAME_IN_USE), the other slot's name, bad names and options, closed
    seq([x(SERVE0), x(SERVE0), x(SERVE1, 10), x(SERVE1), x(SERVE1)] + [x(SERVE0, 12 + 16 * i) for i in range(7)] +
        [x(SERVE0, 11), x(SERVE0, 11, 0x80)] + [x(SERVE1, 0, 0x18 + 0x20 * i) for i in range(8)] +
        [o(CLOSE), x(SERVE0), o(FREE), x(SERVE0), o(FLUSH)]),
    # attach: NULL, malformed, unserved names, bad options; then for real, LIMIT, once more
    seq([x(ATTACH, 10), x(ATTACH, 11), x(ATTACH, 12), x(ATTACH, 13), x(ATTACH, 14), x(ATTACH, 14, 8), x(ATTACH, 15),
         x(ATTACH, 0, 0xe0), x(ATTACH, 0, 0xf8), x(SERVE0, 0, 0), x(ATTACH, 0, 0x01), x(ATTACH, 9, 0x01),
         x(SERVE1, 0), o(PUB, 0, 0), o(PUB, 0, 0, slot=1), o(FLUSH)]),
    seq([x(ATTACH, 0, LINK), x(ATTACH, 9, LINK), x(ATTACH, 9, LINK + 2), o(FLUSH, slot=1), x(ATTACH, 0, LINK), o(FLUSH)]),
    # one logical bus: subscriptions on both handles, publishes through both, flushes
    seq([x(ATTACH, 0, LINK), o(SUB, 0, 0), o(SUB, 0, 0, slot=1), o(SUB, 1, 2, slot=1), o(PUB, 1, 0), o(PUB, 1, 1, slot=1),
         o(BURST, FIVE_A), o(BURST, FIVE_A, slot=1), o(FLUSH), o(STATS, 0), o(STATS, 8, slot=1), o(PUB, 3, 2, slot=1),
         o(PUB, 8, 0, slot=1), o(PUB, 0, 8, slot=1), o(FLUSH, slot=1), o(UNSUB, 0, slot=1), o(PUB, 0, 0), o(FLUSH)]),
    # pull subscriptions in the attached process (policies), next, drain, held messages, fds
    *[seq([x(ATTACH, 0, LINK), o(PULL, 1, opts(2, pol), slot=1), o(FD, slot=1), o(BURST, FIVE_A), o(STATS, slot=1),
           o(NEXT, 0, 4, slot=1), o(BURST, FIVE_A, slot=1), o(FD, slot=1), o(DRAIN, 0, 1, slot=1), o(FLUSH, 1),
           o(FLUSH), o(UNSUB, 0, slot=1), o(FLUSH)]) for pol in (1, 2, 3)],
    # callback subscriptions with policies and end notices in the attached process
    seq([x(ATTACH, 0, LINK)] + [o(WITH, 0, 0, opts(1, pol), slot=1) for pol in range(4)] +
        [o(WITH, 1, 0x80, opts(mf=1), slot=1), o(WITH, 1, 2, 0, slot=1), o(BURST, FIVE_A), o(BURST, FIVE_A, slot=1),
         o(FLUSH), o(STATS, 0, slot=1), o(STATS, 8, slot=1), o(UNSUB, 0, slot=1), o(BURST, FIVE_A), o(FLUSH, slot=1)]),
    # groups across the two processes
    seq([x(ATTACH, 0, LINK), o(PULL, 0, opts(group=1)), o(WITH, 0, 0, opts(group=1), slot=1), o(WITH, 0, 0, opts(group=1)),
         o(BURST, FIVE_A), o(BURST, FIVE_A, slot=1), o(DRAIN), o(FLUSH)]),
    # the hub closes: the attached handle answers DISCONNECTED, its subscriptions end PEER_GONE
    seq([x(ATTACH, 0, LINK), o(PULL, 0, slot=1), o(WITH, 0, 0, 0, slot=1), o(SUB, 0, 0, slot=1), o(PUB), o(PUB, 0, 1),
         o(NEXT, 0, 4, slot=1), o(CLOSE, 2), o(PUB, slot=1), o(PUB, 8, slot=1), o(SUB, 0, slot=1), o(FLUSH, slot=1),
         o(NEXT, slot=1), o(NEXT, slot=1), o(NEXT, slot=1), o(STATS, 8, slot=1), o(UNSUB, 0, slot=1), o(CLOSE, slot=1)]),
    seq([x(ATTACH, 0, LINK), o(WITH, 0, 0, 0, slot=1), o(BURST, FIVE_A), o(FREE), o(PUB, slot=1), o(NEW, 0, LINK),
         x(ATTACH, 0, LINK), o(PUB, slot=1), o(FREE, slot=1), o(PUB), o(FLUSH)]),
    # the attached handle closes or is freed: the hub lets it go
    seq([x(ATTACH, 0, LINK), o(PULL, 0, slot=1), o(SUB, 0, 0, slot=1), o(PUB), o(PUB), o(CLOSE, 3, slot=1), o(PUB),
         o(FLUSH), o(STATS, 0), o(FREE, slot=1), o(PUB), o(FLUSH)]),
    # requests, timers through the attached handle; a small hub (capacity 2) with its credit
    seq([x(ATTACH, 0, LINK), o(SUB, 1, slot=0), o2(REQ, 1, 0, slot=1), o2(REQ, 3, 0, slot=1), o2(ASYNC, 1, 0, slot=1),
         o2(ASYNC, 0x83, 0, slot=1), o2(AFTER, 1, 0, slot=1), o2(CANCEL, 0, slot=1), o2(AFTER, 1, 0, slot=1), o(FLUSH),
         o(CLOSE, 2, slot=1), o(FLUSH)]),
    seq([x(ATTACH, 0, 0x24), o(PULL, 0), o(PUB), o(PUB), o(PUB, slot=1), o(PUB, slot=1), o(NEXT), o(PUB, slot=1),
         o(DRAIN), o(FLUSH), o(PUB, slot=1), o(FLUSH, slot=1)]),
    seq([x(ATTACH, 0, 0x05), o(PULL, 0, opts(1)), o(PUB), o(PUB, slot=1), o(PUB), o(NEXT), o(PUB, slot=1), o(FLUSH)]),
]
ss += s3
for n in range(12):
    ops = [x(ATTACH, 0, rng.choice([LINK, 0x0c, 0x0d, 0x2d, 0x24, 0x01]))]
    for _ in range(rng.randint(10, 50)):
        call = rng.choice(calls)
        ops.append(o(call, rng.randint(0, 255), rng.randint(0, 255),
                     rng.randint(0, 255) if call in (10, 19) else None, rng.randint(0, 1)))
    ss.append(seq(ops))
write("sequence", ss)

# hostile_peer: a hello byte, then ops (op % 14, a, b, then the op's own bytes; see the
# table at the top of fuzz_targets/hostile_peer.rs).
POKE, HPUB, HACK, HFLUSH, HSUB, HUNSUB, BAD, INDEX, SIGNAL, SOCK, SLEEP, READ, BIGPUB, WANTS = range(14)
def hp(hello, *ops):
    return bytes([hello]) + b"".join(bytes(o) for o in ops)
def hpub(topic=0, payload=0, c=0):
    return (HPUB, topic, payload, c)
def hsub(pattern=0, b=0):
    return (HSUB, pattern, b)
hs = [
    hp(0),
    hp(11, 2, 0, 0, 0), hp(12, 5, 1, 2, 3, 4, 5, 6), hp(13), hp(14), hp(15), hp(15, (SOCK, 11, 0) + tuple(b"JSONBUS\x00\x01\x00\x00\x00")),
    # a subscriber to everything that reads and acks, publishes within its credit
    hp(0, hsub(0), hpub(0, 0), hpub(1, 1), (READ, 1, 0), hpub(2, 2), (SLEEP, 0, 200), (READ, 1, 0), (HFLUSH, 0, 7), (READ, 1, 0)),
    # ... that never acks (holds the hub's capacity) and never reads (stalls: dropped after 50 ms)
    hp(0, hsub(0), hsub(1, 1), *[(SLEEP, 0, 250)] * 30),
    hp(0, hsub(0), *[(READ, 0, 0), (SLEEP, 0, 250)] * 20),
    # acks of real, repeated and unknown tokens; a parent token
    hp(0, hsub(1), (SLEEP, 0, 100), (READ, 0, 0), hpub(0, 0, 0x20), (HACK, 0, 0), (HACK, 2, 0), (HACK, 3, 9)),
    # invalid publishes (bad topic / payload / reply) and beyond the credit
    *[hp(0, hpub(t, 0)) for t in (8, 9, 10, 11, 12, 13)],
    *[hp(0, hpub(0, p)) for p in range(5, 11)],
    hp(0, hpub(0, 0, 0xc0)), hp(0, *[hpub(0, 0, 1)] * 8),
    # subscribes: every pattern and group, an id used twice, unsubscribes
    hp(0, *[hsub(p + 16 * g, p) for p in range(11) for g in range(4)]),
    hp(0, hsub(0, 5), hsub(1, 0x80), (HUNSUB, 0, 0), (HUNSUB, 1, 200), hpub(0, 0)),
    # a big publish in two fragments, within and beyond the credit
    hp(0, (BIGPUB, 0, 0), (BIGPUB, 7, 255), hsub(0), (READ, 1, 0)),
    # every malformed-record variant
    *[hp(0, (BAD, v, b) + tuple(range(1, 60))) for v in range(12) for b in (0, 1, 2, 3)],
    # indices set to random or nearby values, pokes at every area, signals, socket garbage
    *[hp(0, hsub(0), (INDEX, w, v, 8, 0, 3), hpub(0, 0), (READ, 0, 0)) for w in range(4) for v in range(4)],
    *[hp(0, (POKE, area, 7, 1, 2, 3, 4, 5, 6, 7, 8, 0x10, 0), hpub(0, 0), (READ, 1, 0)) for area in range(8)],
    hp(0, (POKE, 0x82, 15) + (0xff,) * 16 + (0, 0), hpub()),
    hp(0, (SIGNAL, 0, 3), (SIGNAL, 2, 3), (SIGNAL, 3, 1), (WANTS, 3, 0), (WANTS, 0, 0)),
    hp(0, (SOCK, 11, 7) + tuple(b"JSONBUS\x00\x01\x00\x00\x00"), hpub()),
    hp(0, (SOCK, 3, 2, 1, 2, 3, 4)),
]
write("hostile_peer", hs)
# a peer that takes its own big deliveries but never reads them: its down ring fills and the hub
# drops it after peer_stall_timeout_ms (50 ms)
write("hostile_peer", [hp(0, hsub(0), (BIGPUB, 0, 0), (SLEEP, 0, 100), (BIGPUB, 2, 0), *[(SLEEP, 0, 250)] * 40),
                       hp(0, hsub(3), (BIGPUB, 0, 9), (READ, 0, 0), (BIGPUB, 2, 0), (BIGPUB, 4, 0), *[(SLEEP, 0, 250)] * 40)])
# the down ring's head set past the hub's tail: the hub finds it once the ring seems full
write("hostile_peer", [hp(0, hsub(0), (INDEX, 2, 3, 5), (BIGPUB, 0, 0), (SLEEP, 0, 100), (BIGPUB, 2, 0), (SLEEP, 0, 200), (BIGPUB, 4, 0), *[(SLEEP, 0, 250)] * 10),
                       hp(0, hsub(0), (INDEX, 2, 0, 40), (BIGPUB, 0, 0), (SLEEP, 0, 100), (BIGPUB, 2, 0), (SLEEP, 0, 200), (BIGPUB, 4, 0), *[(SLEEP, 0, 250)] * 10)])
