#!/bin/sh
# SPDX-License-Identifier: MIT
#
# test_kernelswap.sh - the guest idle-polling helpers of bench/kernelswap.py
# (bench/compare and bench/programs --guest-halt-poll): a run sets the
# value and its undo restores it; a run killed with SIGKILL leaves a saved
# value that --cleanup restores, unless that run is still alive; a machine
# without the parameter is left alone.  Against a scratch file standing in
# for /sys/module/haltpoll/parameters/guest_halt_poll_ns, never the real one.
#
# TAP on stdout, for automake's tap-driver.
set -u

src=${srcdir:-.}
py=$(command -v python3) || { echo "1..0 # SKIP no python3"; exit 0; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/upager-kernelswap.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT INT TERM

"$py" - "$src/bench" "$dir" <<'PY'
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[1])
import kernelswap as k  # noqa: E402

d = sys.argv[2]
k.HALT_POLL = os.path.join(d, "guest_halt_poll_ns")
k.HALT_POLL_SAVED = os.path.join(d, "saved")
k.CPUIDLE_DRIVER = os.path.join(d, "current_driver")
k.write(k.CPUIDLE_DRIVER, "haltpoll")
k.find_mounts = lambda fstype: []  # leave the machine's cgroups alone
logged = []
k.log = logged.append
tests = []


def test(fn):
    tests.append(fn)
    return fn


def value():
    with open(k.HALT_POLL) as f:
        return f.read().strip()


def setup(v, saved=None):
    k.write(k.HALT_POLL, v)
    if saved is None:
        if os.path.exists(k.HALT_POLL_SAVED):
            os.unlink(k.HALT_POLL_SAVED)
    else:
        k.write(k.HALT_POLL_SAVED, saved)


def dead_pid():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


@test
def set_then_undo_restores():
    setup("0")
    undo = k.Undo()
    k.halt_poll_set(200000, undo)
    assert value() == "200000", value()
    assert os.path.exists(k.HALT_POLL_SAVED), "no saved value while set"
    undo.run()
    assert value() == "0", value()
    assert not os.path.exists(k.HALT_POLL_SAVED), "saved value left behind"


@test
def same_value_changes_nothing():
    setup("200000")
    undo = k.Undo()
    k.halt_poll_set(200000, undo)
    assert not os.path.exists(k.HALT_POLL_SAVED)
    assert not undo.actions, "an undo for nothing"


@test
def second_run_refused_while_one_holds_it():
    setup("5000", saved="%d 0\n" % os.getpid())
    try:
        k.halt_poll_set(200000, k.Undo())
    except RuntimeError:
        pass
    else:
        raise AssertionError("a second run changed it over the first")
    assert value() == "5000", value()


@test
def cleanup_restores_a_killed_run():
    setup("200000", saved="%d 0\n" % dead_pid())
    k.cleanup_leftovers(d)
    assert value() == "0", value()
    assert not os.path.exists(k.HALT_POLL_SAVED)


@test
def cleanup_leaves_a_live_run_alone():
    setup("200000", saved="%d 0\n" % os.getpid())
    k.cleanup_leftovers(d)
    assert value() == "200000", value()
    assert os.path.exists(k.HALT_POLL_SAVED)


@test
def no_parameter_no_change():
    setup("0")
    os.unlink(k.HALT_POLL)
    undo = k.Undo()
    k.halt_poll_set(200000, undo)
    assert not os.path.exists(k.HALT_POLL)
    assert not os.path.exists(k.HALT_POLL_SAVED)
    assert "guest_halt_poll_ns=n/a" in k.halt_poll_config()


@test
def parameter_without_its_driver_is_named():
    """A guest with the module loaded but no cpuidle driver (PVM) never
    polls: the run still sets and restores the value, and says so."""
    setup("0")
    k.write(k.CPUIDLE_DRIVER, "none")
    del logged[:]
    try:
        undo = k.Undo()
        k.halt_poll_set(200000, undo)
        assert value() == "200000", value()
        undo.run()
        assert value() == "0", value()
        assert any("has no effect" in m for m in logged), logged
        assert "cpuidle=none" in k.halt_poll_config()
        del logged[:]
        k.write(k.CPUIDLE_DRIVER, "haltpoll")
        k.halt_poll_set(0, k.Undo())
        assert not any("has no effect" in m for m in logged), logged
    finally:
        k.write(k.CPUIDLE_DRIVER, "haltpoll")


print("1..%d" % len(tests))
failed = 0
for i, fn in enumerate(tests, 1):
    try:
        fn()
        print("ok %d - %s" % (i, fn.__name__))
    except Exception as e:
        failed += 1
        print("not ok %d - %s: %s: %s" % (i, fn.__name__,
                                          type(e).__name__, e))
sys.exit(1 if failed else 0)
PY
