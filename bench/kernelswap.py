# SPDX-License-Identifier: MIT
"""bench/kernelswap.py - the kernel's swap, set up and always taken down.

Shared by the drivers that run something under the kernel's own swap, for
comparison with upager (bench/compare, bench/programs): a swap file
(fallocate, mkswap, swapon; swapoff and rm at the end), a memory cgroup
limited to the budget (cgroup v2 where a cgroup2 hierarchy has the memory
controller, else v1's memory hierarchy with memory.swappiness set in it),
an undo stack that runs once, last first, also on Ctrl-C, SIGTERM or an
error, the guest's idle polling (--guest-halt-poll, see halt_poll_set()),
and the removal of what a SIGKILLed run left behind.  Everything is
named PREFIX-*, so one driver's --cleanup finds the other's leftovers.

Python 3 standard library only.
"""

import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import time

PREFIX = "upager-bench"
# The driver's name, for messages.
NAME = os.path.basename(sys.argv[0]) or "bench"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMGT]?)(i?B)?", s.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError("bad size %r (e.g. 256M, 1G)" % s)
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(m.group(1)) * mult[m.group(2).upper()]


def fmt_size(n):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return ("%.0f%s" if v == int(v) else "%.1f%s") % (v, unit)
    return str(int(n))


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def vmstat():
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            out[k] = int(v)
    return out


def active_swaps():
    lines = (read("/proc/swaps", "") or "").splitlines()[1:]
    return [l.split()[0] for l in lines if l.strip()]


# ------------------------------------------------------------- cleanup ----

class Undo:
    """A stack of undo actions, run once, last first, whatever happens."""

    def __init__(self):
        self.actions = []
        self.done = False

    def push(self, what, fn):
        self.actions.append((what, fn))

    def run(self):
        if self.done:
            return
        self.done = True
        # A second Ctrl-C must not leave swap on half-way through.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        while self.actions:
            what, fn = self.actions.pop()
            try:
                fn()
            except Exception as e:  # keep undoing the rest
                log(NAME + ": cleanup: %s: %s" % (what, e))


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


# -------------------------------------------------------------- cgroup ----

def find_mounts(fstype):
    res = []
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, typ, opts = line.split()[:4]
            if typ == fstype:
                res.append((mnt.replace("\\040", " "), opts.split(",")))
    return res


class Cgroup:
    """A memory cgroup limited to @limit bytes: v2 if it can, else v1."""

    def __init__(self, limit, swappiness, undo):
        self.limit = limit
        self.undo = undo
        self.path = None
        self.version = None
        name = "%s-%d" % (PREFIX, os.getpid())
        for mnt, _ in find_mounts("cgroup2"):
            if "memory" in (read(os.path.join(mnt, "cgroup.controllers"), "")
                            or "").split():
                self.version = 2
                parent = mnt
                break
        if self.version is None:
            for mnt, opts in find_mounts("cgroup"):
                if "memory" in opts:
                    self.version = 1
                    parent = mnt
                    break
        if self.version is None:
            raise RuntimeError("no memory cgroup hierarchy is mounted")
        if self.version == 2:
            ctl = os.path.join(parent, "cgroup.subtree_control")
            if "memory" not in (read(ctl, "") or "").split():
                write(ctl, "+memory")
        self.path = os.path.join(parent, name)
        os.mkdir(self.path)
        self.undo.push("rmdir " + self.path, self.remove)
        if self.version == 2:
            write(self.file("memory.max"), limit)
            write(self.file("memory.swap.max"), "max")
            # v2 has no per-cgroup swappiness: the global one applies.
            old = read("/proc/sys/vm/swappiness")
            if old == "0":
                write("/proc/sys/vm/swappiness", swappiness)
                self.undo.push("restore vm.swappiness",
                               lambda: write("/proc/sys/vm/swappiness", old))
            self.swappiness = read("/proc/sys/vm/swappiness")
        else:
            write(self.file("memory.limit_in_bytes"), limit)
            # With swappiness 0 a v1 memcg at its limit would OOM rather
            # than swap anonymous memory.
            write(self.file("memory.swappiness"), swappiness)
            self.swappiness = read(self.file("memory.swappiness"))

    def file(self, name):
        return os.path.join(self.path, name)

    def set_limit(self, limit):
        """A new limit, between runs (the kernel reclaims down to it)."""
        write(self.file("memory.limit_in_bytes" if self.version == 1
                        else "memory.max"), limit)
        self.limit = limit

    def enter(self):
        """Runs in the child between fork and exec."""
        write(self.file("cgroup.procs"), os.getpid())

    def reset_peak(self):
        if self.version == 1:
            try:
                write(self.file("memory.max_usage_in_bytes"), 0)
            except OSError:
                pass

    def peak(self):
        f = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        v = read(self.file(f))
        return int(v) if v and v.isdigit() else None

    def oom_kills(self):
        """How many tasks the cgroup's OOM killer has killed so far."""
        f = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in (read(self.file(f), "") or "").splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill" and v.strip().isdigit():
                return int(v)
        return 0

    def remove(self):
        # The last task may still be exiting: rmdir fails with EBUSY a while.
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        os.rmdir(self.path)


# ----------------------------------------------------------- swap file ----

class SwapFile:
    def __init__(self, directory, size, undo):
        self.path = os.path.join(directory, "%s-swap.%d" % (PREFIX, os.getpid()))
        # Undo first: a failure half-way still removes what was made.
        undo.push("remove swap file " + self.path, self.remove)
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        subprocess.run(["mkswap", self.path], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        subprocess.run(["swapon", self.path], check=True,
                       stderr=subprocess.PIPE)
        if os.path.realpath(self.path) not in map(os.path.realpath,
                                                  active_swaps()):
            raise RuntimeError("swapon %s did not take" % self.path)

    def remove(self):
        remove_swap(self.path)


def remove_swap(path):
    if os.path.realpath(path) in map(os.path.realpath, active_swaps()):
        subprocess.run(["swapoff", path], check=True)
    if os.path.exists(path):
        os.unlink(path)


# ------------------------------------------------- guest idle polling ----

# A KVM guest's cpuidle-haltpoll driver spins an idle vCPU for up to
# guest_halt_poll_ns before it halts (Linux's default: 200000).  A halted
# vCPU is woken through the host: on the 2-vCPU guests this project is
# measured on, whose images set 0, that made every wake-up across vCPUs
# cost tens of microseconds, and a run 1.3-2x slower (README, *Guest idle
# polling*).  upager wakes across vCPUs more often than the kernel's own
# swap (a fault goes to a handler thread and back), so the setting moves
# the ratios: the drivers record it, and --guest-halt-poll sets it for a
# run and restores it at the end.
HALT_POLL = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"
# The parameter polls only while haltpoll is the active cpuidle driver.
CPUIDLE_DRIVER = "/sys/devices/system/cpu/cpuidle/current_driver"
# The value to restore, kept on disk until restored, for --cleanup after a
# SIGKILLed run: "<pid> <value>".
HALT_POLL_SAVED = "/var/tmp/%s-halt-poll" % PREFIX


def halt_poll_config():
    """One config line: the idle driver and its polling, or why none."""
    driver = read(CPUIDLE_DRIVER, "none")
    ns = read(HALT_POLL)
    return "cpuidle=%s guest_halt_poll_ns=%s" % (
        driver, ns if ns is not None else "n/a")


def halt_poll_add_argument(ap):
    """The drivers' --guest-halt-poll option."""
    ap.add_argument("--guest-halt-poll", type=int, default=None,
                    metavar="NS",
                    help="on a KVM guest, set guest_halt_poll_ns (how long "
                         "an idle vCPU polls before it halts; Linux's "
                         "default 200000) for this run, restored at the end")


def halt_poll_check(ap, args):
    """Refuse a bad --guest-halt-poll before anything is changed."""
    if args.guest_halt_poll is not None and (args.guest_halt_poll < 0 or
                                             os.geteuid() != 0):
        ap.error("--guest-halt-poll takes nanoseconds (>= 0) and needs root")


def halt_poll_set(ns, undo):
    """Set guest_halt_poll_ns to @ns for this run; restored by @undo."""
    old = read(HALT_POLL)
    if old is None:
        log(NAME + ": --guest-halt-poll: %s does not exist (not a KVM guest "
            "with the cpuidle-haltpoll driver); left as it is" % HALT_POLL)
        return
    driver = read(CPUIDLE_DRIVER, "none")
    if driver != "haltpoll":
        log(NAME + ": --guest-halt-poll: the cpuidle driver is %s, not "
            "haltpoll, so %s has no effect: idle vCPUs halt without polling "
            "whatever it says" % (driver, HALT_POLL))
    if old == str(ns):
        return
    if os.path.exists(HALT_POLL_SAVED):
        raise RuntimeError("%s exists: another run changed %s (or was "
                           "killed: --cleanup restores it)"
                           % (HALT_POLL_SAVED, HALT_POLL))
    write(HALT_POLL_SAVED, "%d %s\n" % (os.getpid(), old))
    undo.push("restore %s to %s" % (HALT_POLL, old),
              lambda: halt_poll_restore(old))
    write(HALT_POLL, ns)
    log(NAME + ": guest_halt_poll_ns %s -> %d for this run" % (old, ns))


def halt_poll_restore(old):
    write(HALT_POLL, old)
    os.unlink(HALT_POLL_SAVED)


def cleanup_leftovers(swap_dir):
    """What a SIGKILLed run left behind: swap files, cgroups, idle polling."""
    n = 0
    saved = (read(HALT_POLL_SAVED, "") or "").split()
    if len(saved) == 2 and not os.path.exists("/proc/" + saved[0]):
        log(NAME + ": restoring %s to %s" % (HALT_POLL, saved[1]))
        halt_poll_restore(saved[1])
        n += 1
    for path in glob.glob(os.path.join(swap_dir, PREFIX + "-swap.*")):
        pid = path.rsplit(".", 1)[-1]
        if pid.isdigit() and os.path.exists("/proc/" + pid):
            continue  # a run in progress
        log(NAME + ": removing " + path)
        remove_swap(path)
        n += 1
    for mnt, _ in find_mounts("cgroup2") + find_mounts("cgroup"):
        for path in glob.glob(os.path.join(mnt, PREFIX + "-*")):
            pid = path.rsplit("-", 1)[-1]
            if pid.isdigit() and os.path.exists("/proc/" + pid):
                continue
            log(NAME + ": removing " + path)
            os.rmdir(path)
            n += 1
    log(NAME + ": %d leftovers removed" % n)
