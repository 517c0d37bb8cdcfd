#!/bin/sh
# SPDX-License-Identifier: MIT
#
# test_real_programs.sh - two programs of bench/programs, small, under
# `upager run' with a budget below their peak: sqlite3 building and
# querying an in-memory database (bench/programs.d/sqlite.sql) and python3
# running bench/programs.d/pywork.py (dicts, a sort, a JSON round trip).
# Each must print exactly what it prints without upager, exit the same, and
# must really have paged (pages written to swap).  Correctness only, no
# timing: bench/programs does the timing.
#
# TAP on stdout, for automake's tap-driver.  Skipped, with the reason,
# without userfaultfd permission, in the ASan build (unmodified programs do
# not have the ASan runtime first in LD_PRELOAD), or without the programs.
set -u

tools=${UPAGER_TEST_TOOLS:-tools}
libs=${UPAGER_TEST_LIBS:-.libs}
src=${srcdir:-.}
upager=$tools/upager

skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

[ -x "$upager" ] || skip_all "no $upager (build first)"
if ldd "$libs/libupager-preload.so" 2>/dev/null | grep -q libasan; then
	skip_all "preload tests run in the non-sanitizer build, not under ASan"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/upager-real.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT INT TERM

# Does the shim page at all here?  (no permission: it runs unpaged, saying so)
"$upager" run --stats="$dir/probe" -- /bin/sh -c : 2>"$dir/probe.err"
if grep -qs unpaged "$dir/probe" "$dir/probe.err"; then
	skip_all "userfaultfd unavailable: $(grep -hs -m1 unpaged "$dir/probe.err" "$dir/probe")"
fi

echo "1..2"
n=0

# compare NAME BUDGET COMMAND...: plain and paged, same stdout and status,
# and the paged run wrote pages to swap.
compare() {
	name=$1 budget=$2
	shift 2
	n=$((n + 1))
	"$@" >"$dir/plain.out" 2>"$dir/plain.err"
	plain=$?
	rm -f "$dir/stats"
	timeout -k 10 300 "$upager" run --budget "$budget" --stats="$dir/stats" \
		-- "$@" >"$dir/paged.out" 2>"$dir/paged.err"
	paged=$?
	written=$(sed -n 's/.*swap: \([0-9]*\) pages written.*/\1/p' "$dir/stats" 2>/dev/null |
		awk '{ s += $1 } END { print s + 0 }')
	if [ $paged -eq 124 ]; then
		echo "not ok $n - $name: still running after 300 s under upager"
	elif [ $paged -ne $plain ]; then
		echo "not ok $n - $name: exit status $paged under upager, $plain without"
		sed 's/^/# /' "$dir/paged.err" | tail -20
	elif ! cmp -s "$dir/plain.out" "$dir/paged.out"; then
		echo "not ok $n - $name: output differs under upager"
	elif [ "$written" -eq 0 ]; then
		echo "not ok $n - $name: nothing written to swap: the budget was never exceeded"
	else
		echo "ok $n - $name ($written pages written to swap, budget $budget)"
	fi
}

if [ -x /usr/bin/sqlite3 ]; then
	sed 's/@ROWS@/100000/g' "$src/bench/programs.d/sqlite.sql" >"$dir/db.sql"
	compare "sqlite3 in-memory database of 100000 rows under a 16M budget" 16M \
		/usr/bin/sqlite3 -batch -bail :memory: ".read $dir/db.sql"
else
	n=$((n + 1)); echo "ok $n # SKIP sqlite3 not installed"
fi

if [ -x /usr/bin/python3 ]; then
	# PYTHONMALLOC=malloc: every Python object on upager's heap
	compare "python3 pywork.py 30000 (about 50 MB) under a 32M budget" 32M \
		env PYTHONMALLOC=malloc PYTHONHASHSEED=0 \
		/usr/bin/python3 -S "$src/bench/programs.d/pywork.py" 30000
else
	n=$((n + 1)); echo "ok $n # SKIP python3 not installed"
fi
exit 0
