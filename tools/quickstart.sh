#!/usr/bin/env bash
# Set everything up and run the main job: install the dependencies, build,
# and run a program that uses four times more memory than its budget under
# upager, printing what the pager did.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
[ -x configure ] || ./autogen.sh >/dev/null
[ -f Makefile ] || ./configure >/dev/null
make -j2 >/dev/null
exec ./tools/upager-demo 64M 256M
