# SPDX-License-Identifier: MIT
# pywork.py - the python3 workload of bench/programs: a dict of records,
# a sort, churn, a JSON round trip and random lookups over a heap of about
# N * 1 KiB.  Deterministic (seeded): the same N prints the same lines, so
# bench/programs can compare a paged run's output with a plain one.
#
#   PYTHONMALLOC=malloc python3 pywork.py N
import hashlib
import json
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
rnd = random.Random(12345)

# a dict of records, as a program that loads a table builds
table = {}
for i in range(n):
    k = "user-%08d" % rnd.randrange(n * 4)
    table[k] = [i, rnd.random(), ("%08x" % (i * 2654435761 % 2**32)) * (20 + i % 80),
                [(i * 31 + j) % 1000 for j in range(i % 7)]]

# an index in score order (touches every record again, in another order)
order = sorted(table, key=lambda k: (table[k][1], k))
rank = {k: r for r, k in enumerate(order)}

# churn: drop a quarter, grow another quarter
for k in order[::4]:
    del table[k]
for k in order[1::4]:
    table[k][2] += "grown"
    table[k][3].extend(range(10))

# JSON round trip of a third of the table
part = {k: table[k] for k in order[1::3] if k in table}
text = json.dumps(part, sort_keys=True)
back = json.loads(text)
assert back == part
del back, part

# random lookups all over the heap
hits = 0
for _ in range(n * 2):
    k = order[rnd.randrange(len(order))]
    r = table.get(k)
    if r is not None:
        hits += len(r[2]) + len(r[3]) + rank[k] % 3

h = hashlib.sha256(text.encode())
for k in order[::101]:
    h.update(repr(table.get(k)).encode())
print("records", len(table), "json", len(text), "hits", hits)
print("digest", h.hexdigest())
