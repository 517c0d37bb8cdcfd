# SPDX-License-Identifier: MIT
# bigdict.py - a Python program with a large heap, for the tests that run
# real programs under `upager run` and compare the output with a plain run.
#
#   python3 bigdict.py N     builds dicts, lists, strings and bytes of
#                            about N * 200 bytes, mutates them, checks
#                            them, prints digests (deterministic)
import hashlib
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000

# a dict of strings to tuples, and a list of lists
d = {}
for i in range(n):
    d["key-%09d" % i] = (i, i * i, "v" * (i % 40))
rows = [[j * i for j in range(i % 13)] for i in range(n)]
blobs = [bytes([i % 251]) * (i % 3000) for i in range(0, n, 7)]

# mutate: delete a third, grow a tenth, rebuild some
for i in range(0, n, 3):
    del d["key-%09d" % i]
for i in range(0, n, 10):
    rows[i].extend(range(5))
words = sorted(d.keys(), key=lambda k: k[::-1])[: n // 2]

# check everything against what it must be
bad = 0
for i in range(n):
    k = "key-%09d" % i
    if i % 3 == 0:
        bad += k in d
    else:
        bad += d[k] != (i, i * i, "v" * (i % 40))
    want = [j * i for j in range(i % 13)] + (list(range(5)) if i % 10 == 0 else [])
    bad += rows[i] != want
for b, i in zip(blobs, range(0, n, 7)):
    bad += b != bytes([i % 251]) * (i % 3000)

h = hashlib.sha256()
for k in words:
    h.update(k.encode())
for r in rows[::97]:
    h.update(repr(r).encode())
print("dict", len(d), "rows", len(rows), "blobs", len(blobs), "bad", bad)
print("digest", h.hexdigest())
sys.exit(1 if bad else 0)
