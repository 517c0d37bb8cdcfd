-- SPDX-License-Identifier: MIT
-- sqlite.sql - the sqlite3 workload of bench/programs: an in-memory
-- database of @ROWS@ rows, a large page cache, an index build, joins,
-- group-bys and an update.  Deterministic: no random(), the rows come from
-- a multiplicative hash of their number.  bench/programs runs
-- the text with @ROWS@ replaced by a number.
PRAGMA cache_size = -2000000;
PRAGMA temp_store = MEMORY;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, grp INTEGER, name TEXT, pad BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @ROWS@)
INSERT INTO t SELECT x, (x * 2654435761) % 4294967291, (x * 40503) % 1009,
       printf('name-%08x', (x * 69069) % 4294967291),
       zeroblob(60 + x % 120) FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_name ON t(name);
CREATE TABLE g AS SELECT grp, count(*) AS n, sum(k % 1000) AS s FROM t GROUP BY grp;
UPDATE t SET k = (k * 7 + id) % 4294967291 WHERE id % 3 = 0;
SELECT count(*), sum(k % 1000003), min(name), max(name) FROM t;
SELECT grp, n, s FROM g ORDER BY s DESC LIMIT 5;
SELECT count(*) FROM t a JOIN t b ON b.id = (a.k % @ROWS@) + 1 WHERE a.grp < 200 AND b.name > 'name-8';
SELECT sum(length(pad)), count(DISTINCT grp) FROM t WHERE k BETWEEN 1000000000 AND 3000000000;
SELECT name FROM t ORDER BY k LIMIT 3 OFFSET 12345;
PRAGMA integrity_check;
