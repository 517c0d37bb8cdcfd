#!/bin/sh
# Generate ./configure from configure.ac and Makefile.am.
set -e
cd "$(dirname "$0")"
mkdir -p m4 build-aux
autoreconf -fi
# 'make check' runs the Criterion suites through automake's TAP driver,
# which autoreconf does not install by itself.
cp -f "$(automake --print-libdir)/tap-driver.sh" build-aux/
