#!/usr/bin/env bash
# Set everything up and run the main job: install the dependencies, build,
# and run a real program (python3 building ~150 MB of dicts and lists;
# PYTHONMALLOC=malloc hands its small objects to malloc, hence to upager)
# under upager with a 64 MiB budget, printing what the pager did.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
[ -x configure ] || ./autogen.sh >/dev/null
[ -f Makefile ] || ./configure >/dev/null
make -j2 >/dev/null
# Debian's python3 itself, not a version manager's wrapper script
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
echo "== $py tests/progs/bigdict.py 150000, heap paged by upager, budget 64M"
PYTHONMALLOC=malloc exec ./tools/upager run --budget 64M --stats -- \
	"$py" tests/progs/bigdict.py 150000
