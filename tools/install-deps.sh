#!/usr/bin/env bash
# Install what upager needs to build, test and benchmark on Debian/Ubuntu.
# Does nothing for packages already there; needs root to install.
#
#   tools/install-deps.sh           build and make check (what CI installs)
#   tools/install-deps.sh --bench   also the programs bench/programs runs
#                                   (redis, zstd, GNU time)
set -euo pipefail
pkgs=(build-essential autoconf automake libtool pkg-config liburing-dev
      libcriterion-dev libjemalloc-dev python3
      sqlite3)                            # tests/test_real_programs.sh
bench_pkgs=(redis-server redis-tools zstd xz-utils time)
for arg in "$@"; do
	case $arg in
	--bench) pkgs+=("${bench_pkgs[@]}") ;;
	-h|--help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "install-deps: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
	esac
done
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: need root to install: ${missing[*]}" >&2
	echo "  run: sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
