/* SPDX-License-Identifier: MIT */
/*
 * test_programs.c - real, unmodified programs under `upager run', with a
 * budget below their peak, must print exactly what they print without it:
 * python3 building and checking big dicts and lists, GNU sort on a file of
 * several hundred MiB with a large -S buffer, and tests/progs/mtheap (many
 * threads, cross-thread frees, fork without exec, exit with threads
 * running).  Also the command line of `upager' itself.
 *
 * Each paged run writes its statistics to a file (--stats=FILE), and the
 * test checks from them that pages really went to swap: a budget that was
 * never exceeded would prove nothing.  Programs that take their memory
 * from mmap (gcc's cc1, CPython's arenas) run with the shim's mmap
 * interception (on by default), and their peak RSS is held to the budget
 * plus a slack.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "upager.h"

static char dir[256];
static char upager[512];

static void need_userfaultfd(void)
{
	struct upg_options o;
	struct upg_runtime *rt;
	char why[300];

	upg_options_init(&o);
	o.verbose = 0;
	cr_assert_eq(upg_runtime_create(&o, &rt), 0);
	if (!upg_runtime_is_paged(rt)) {
		snprintf(why, sizeof(why), "userfaultfd unavailable: %s",
			 upg_runtime_unpaged_reason(rt));
		upg_runtime_destroy(rt);
		cr_skip_test("%s", why);
	}
	upg_runtime_destroy(rt);
}

static void setup(void)
{
	const char *tools = getenv("UPAGER_TEST_TOOLS");
	const char *tmp = getenv("TMPDIR");

#if defined(__SANITIZE_ADDRESS__)
	/*
	 * A preloaded library under ASan needs the ASan runtime first in
	 * LD_PRELOAD, which unmodified programs do not have: these tests run
	 * in the non-sanitizer build (.ci/run runs both).
	 */
	cr_skip_test("preload tests run in the non-sanitizer build, not under ASan");
#endif

	snprintf(upager, sizeof(upager), "%s/upager",
		 tools ? tools : UPG_TEST_BUILDDIR "/tools");
	snprintf(dir, sizeof(dir), "%s/upager-progs.XXXXXX", tmp ? tmp : "/tmp");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[400];

	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			cr_log_warn("could not remove %s", dir);
	}
}

/* Run a shell command; its exit status, 128+N for signal N. */
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	cr_assert_neq(st, -1, "system(%s)", cmd);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

static bool have(const char *prog)
{
	return sh("command -v %s >/dev/null 2>&1", prog) == 0;
}

/* Pages written to swap, summed over the "swap: N pages written" lines. */
static unsigned long long pages_written(const char *stats)
{
	unsigned long long total = 0, n;
	char line[512];
	FILE *f = fopen(stats, "r");
	const char *p;

	cr_assert_not_null(f, "no statistics in %s", stats);
	while (fgets(line, sizeof(line), f))
		if ((p = strstr(line, "swap: ")) &&
		    sscanf(p, "swap: %llu pages written", &n) == 1)
			total += n;
	fclose(f);
	return total;
}

/* Intercepted mmap calls, summed over the "mmap ... (N served" lines. */
static unsigned long long mmaps_served(const char *stats)
{
	unsigned long long total = 0, n;
	char line[512];
	FILE *f = fopen(stats, "r");
	const char *p;

	cr_assert_not_null(f, "no statistics in %s", stats);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "  mmap ", 7) && (p = strchr(line, '(')) &&
		    sscanf(p, "(%llu served", &n) == 1)
			total += n;
	fclose(f);
	return total;
}

/* The peak RSS in KiB that GNU time wrote to @path. */
static long rss_kib(const char *path)
{
	FILE *f = fopen(path, "r");
	long kib = -1;

	cr_assert_not_null(f, "no %s", path);
	cr_assert_eq(fscanf(f, "%ld", &kib), 1, "%s: no number", path);
	fclose(f);
	return kib;
}

/*
 * Run @cmd plainly and under upager with @budget; same stdout and exit
 * status, and the paged run must really have paged.  A paged run that
 * hangs is killed after @limit seconds (a failure, not a stuck suite).
 * With @slack_mib >= 0 and GNU time installed, the paged run's peak RSS
 * must also stay within the budget plus that slack (the program's text,
 * stacks and the few mappings upager leaves to the kernel).
 */
static void compare_rss(const char *env, const char *budget, int limit,
			const char *cmd, long slack_mib)
{
	bool rss = slack_mib >= 0 && access("/usr/bin/time", X_OK) == 0;
	char stats[300], path[300];
	int plain, paged;

	plain = sh("cd '%s' && %s %s %s > plain.out 2> plain.err", dir, env,
		   rss ? "/usr/bin/time -f %M -o plain.rss" : "", cmd);
	paged = sh("cd '%s' && %s timeout -k 10 %d %s '%s' run --budget %s"
		   " --stats='%s/stats' -- %s > paged.out 2> paged.err", dir, env,
		   limit, rss ? "/usr/bin/time -f %M -o paged.rss" : "", upager,
		   budget, dir, cmd);
	cr_assert_neq(paged, 124, "%s: still running after %d s under upager",
		      cmd, limit);
	if (paged != plain)
		sh("cat '%s/paged.err' >&2", dir);
	cr_assert_eq(paged, plain, "exit status %d under upager, %d without", paged,
		     plain);
	cr_assert_eq(sh("cmp -s '%s/plain.out' '%s/paged.out'", dir, dir), 0,
		     "%s: output differs under upager", cmd);
	snprintf(stats, sizeof(stats), "%s/stats", dir);
	cr_assert_gt(pages_written(stats), 0,
		     "%s: nothing was written to swap: the budget was never exceeded",
		     cmd);
	if (rss) {
		size_t b = 0;
		long plain_kib, paged_kib;

		cr_assert_eq(upg_parse_size(budget, &b), 0);
		snprintf(path, sizeof(path), "%s/plain.rss", dir);
		plain_kib = rss_kib(path);
		snprintf(path, sizeof(path), "%s/paged.rss", dir);
		paged_kib = rss_kib(path);
		cr_log_info("%s: peak RSS %ld KiB plain, %ld KiB under a budget of %s",
			    cmd, plain_kib, paged_kib, budget);
		cr_assert_leq(paged_kib, (long)(b >> 10) + slack_mib * 1024,
			      "%s: peak RSS %ld KiB, over the budget %s + %ld MiB",
			      cmd, paged_kib, budget, slack_mib);
	}
}

static void compare(const char *env, const char *budget, int limit,
		    const char *cmd)
{
	compare_rss(env, budget, limit, cmd, -1);
}

TestSuite(programs, .init = setup, .fini = teardown, .timeout = 900);

Test(programs, python_dicts_and_lists)
{
	need_userfaultfd();
	if (!have("python3"))
		cr_skip_test("python3 not installed");
	/* PYTHONMALLOC=malloc: Python's small-object arenas come from mmap,
	 * not malloc; this way every object is on upager's heap */
	compare("PYTHONMALLOC=malloc", "128M", 300,
		"python3 " UPG_TEST_SRCDIR "/tests/progs/bigdict.py 300000");
}

/*
 * CPython's own small-object allocator (the default, without
 * PYTHONMALLOC=malloc) takes its arenas from mmap: paged only through the
 * shim's mmap interception.
 */
Test(programs, python_pymalloc_arenas_mmap)
{
	char stats[300];

	need_userfaultfd();
	if (!have("python3"))
		cr_skip_test("python3 not installed");
	compare_rss("", "48M", 300,
		    "python3 " UPG_TEST_SRCDIR "/tests/progs/bigdict.py 100000", 40);
	snprintf(stats, sizeof(stats), "%s/stats", dir);
	cr_assert_gt(mmaps_served(stats), 0, "no arena was mapped by upager");
}

/*
 * gcc's cc1 keeps its garbage-collected heap in mmap()ed pages: a large
 * generated source compiled at -O2 (about 125 MiB at its peak) under a
 * budget of 48 MiB, its assembler output compared.
 */
Test(programs, gcc_large_source_mmap)
{
	char stats[300];

	need_userfaultfd();
	if (!have("gcc"))
		cr_skip_test("gcc not installed");
	cr_assert_eq(sh("cd '%s' && awk -v N=200 -f " UPG_TEST_SRCDIR
			"/tests/progs/gen_c.awk > big.c", dir), 0);
	compare_rss("", "48M", 600, "gcc -O2 -S -o - big.c", 40);
	snprintf(stats, sizeof(stats), "%s/stats", dir);
	cr_assert_gt(mmaps_served(stats), 0, "cc1's heap was not mapped by upager");
}

Test(programs, gnu_sort_big_file)
{
	need_userfaultfd();
	if (sh("sort --version 2>/dev/null | grep -q GNU"))
		cr_skip_test("GNU sort not installed");
	/*
	 * ~310 MiB of lines, made without a big heap.  The keys are nearly
	 * in order (each is off by up to 5000 lines), so that sort's passes
	 * over its buffer have some locality: with random keys every
	 * comparison would be a major fault and the test would take many
	 * minutes without testing anything more.
	 */
	cr_assert_eq(sh("cd '%s' && awk 'BEGIN { srand(7); for (i = 0; i < 5000000; i++)"
			" printf \"%%010d %%08x %%s\\n\", i + int(rand() * 5000),"
			" int(rand() * 4294967295), substr(\"abcdefghijklmnopqrstuvwxyz"
			"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz\","
			" 1 + i %% 40, 30 + i %% 23) }' > big.txt", dir), 0);
	compare("LC_ALL=C", "128M", 300, "sort -S 1G --parallel=2 big.txt");
}

Test(programs, threads)
{
	need_userfaultfd();
	compare("", "64M", 300, UPG_TEST_BUILDDIR "/tests/progs/mtheap work 4 160");
}

Test(programs, fork_without_exec)
{
	need_userfaultfd();
	compare("", "32M", 120, UPG_TEST_BUILDDIR "/tests/progs/mtheap fork 128");
}

Test(programs, exit_with_threads_running)
{
	need_userfaultfd();
	compare("", "32M", 300, UPG_TEST_BUILDDIR "/tests/progs/mtheap exit 3 96");
}

Test(programs, exec_and_shell_pipeline)
{
	need_userfaultfd();
	/* the shell, its children and what they exec are all preloaded */
	compare("", "32M", 300,
		"sh -c '" UPG_TEST_BUILDDIR "/tests/progs/mtheap work 2 96 | sort | cat'");
}

/* ------------------------------------------------------- command line */

TestSuite(command, .init = setup, .fini = teardown);

Test(command, help_and_version)
{
	cr_assert_eq(sh("'%s' --help | grep -q 'upager run'", upager), 0);
	cr_assert_eq(sh("'%s' run --help | grep -q budget", upager), 0);
	cr_assert_eq(sh("'%s' --version | grep -q '^upager " UPG_VERSION_STRING "'",
			upager), 0);
}

Test(command, bad_arguments_exit_2)
{
	cr_assert_eq(sh("'%s' >/dev/null 2>&1", upager), 2);
	cr_assert_eq(sh("'%s' frobnicate 2>/dev/null", upager), 2);
	cr_assert_eq(sh("'%s' run 2>/dev/null", upager), 2);
	cr_assert_eq(sh("'%s' run --no-such-option -- true 2>/dev/null", upager), 2);
	cr_assert_eq(sh("'%s' run -o nosuch=1 -- true 2>/dev/null", upager), 2);
	cr_assert_eq(sh("'%s' run -o budget -- true 2>/dev/null", upager), 2);
	/* the message names the variable, the value and a good example */
	cr_assert_eq(sh("'%s' run --budget 12Q -- true 2>&1 | grep UPAGER_BUDGET"
			" | grep -q 12Q", upager), 0);
	cr_assert_eq(sh("'%s' run --budget 12Q -- true 2>/dev/null", upager), 2);
	cr_assert_eq(sh("'%s' run --page-size 3K -- true 2>/dev/null", upager), 2);
	cr_assert_eq(sh("UPAGER_BUDGET=lots '%s' run -- true 2>/dev/null", upager), 2);
}

/*
 * --cpus: the program runs on the CPUs given, and the pager's threads with
 * it (they inherit the affinity); a bad list or a CPU it may not use is a
 * usage error.  swap-irq either finds the CPUs of the swap device's
 * interrupts, which the program then runs on, or says why it cannot.
 */
Test(command, cpus_pin_the_program)
{
	int ret;

	/* the first CPU this test may run on */
	cr_assert_eq(sh("cpu=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*\\([0-9]*\\).*/\\1/p'"
			" /proc/self/status) && test -n \"$cpu\" &&"
			" '%s' run --cpus $cpu -- grep Cpus_allowed_list /proc/self/status"
			" | grep -qx \"Cpus_allowed_list:[[:space:]]*$cpu\"", upager), 0);
	cr_assert_eq(sh("'%s' run --cpus x -- true 2>/dev/null", upager), 2);
	cr_assert_eq(sh("'%s' run --cpus 3-1 -- true 2>/dev/null", upager), 2);
	cr_assert_eq(sh("'%s' run --cpus 1,, -- true 2>/dev/null", upager), 2);
	cr_assert_eq(sh("'%s' run --cpus 99999 -- true 2>/dev/null", upager), 2);
	/* CPU 1023 exists on no machine these tests run on */
	cr_assert_eq(sh("'%s' run --cpus 1023 -- true 2>&1 | grep -q 'may run on'",
			upager), 0);
	cr_assert_eq(sh("'%s' run --cpus 1023 -- true 2>/dev/null", upager), 2);
	if (sh("test \"$(stat -f -c %%T /dev/shm 2>/dev/null)\" = tmpfs") == 0)
		cr_assert_eq(sh("'%s' run --swap-dir /dev/shm --cpus swap-irq -- true"
				" 2>&1 | grep -q 'no block device'", upager), 0);
	ret = sh("out=$('%s' run -v --cpus swap-irq -- grep Cpus_allowed_list"
		 " /proc/self/status 2>&1); rc=$?; echo \"$out\" >&2;"
		 " if [ $rc = 0 ]; then"
		 "  want=$(echo \"$out\" | sed -n 's/^upager: running on CPUs \\([0-9,-]*\\).*/\\1/p');"
		 "  got=$(echo \"$out\" | sed -n 's/^Cpus_allowed_list:[[:space:]]*//p');"
		 "  test -n \"$want\" && test \"$want\" = \"$got\" && exit 0; exit 1;"
		 " fi;"
		 " test $rc = 2 && echo \"$out\" | grep -q 'swap-irq' && exit 3; exit 1",
		 upager);
	cr_assert(ret == 0 || ret == 3, "swap-irq: exit %d", ret);
	if (ret == 3)
		cr_log_info("swap-irq found no interrupt here (the message is above)");
}

Test(command, exit_status_passes_through)
{
	cr_assert_eq(sh("'%s' run -- sh -c 'exit 7' 2>/dev/null", upager), 7);
	cr_assert_eq(sh("'%s' run -- true", upager), 0);
	cr_assert_eq(sh("'%s' run -- sh -c 'kill -9 $$' 2>/dev/null", upager), 137);
	cr_assert_eq(sh("'%s' run -- /nonexistent/program 2>/dev/null", upager), 127);
	cr_assert_eq(sh("'%s' run -- /etc/passwd 2>/dev/null", upager), 126);
}

Test(command, preloaded_and_stats)
{
	need_userfaultfd();
	/* the program's malloc is upager's: its heap has statistics */
	cr_assert_eq(sh("'%s' run --stats -- " UPG_TEST_BUILDDIR
			"/tests/progs/mtheap work 1 4 2>&1 >/dev/null"
			" | grep -q 'allocator:'", upager), 0);
	cr_assert_eq(sh("'%s' run -- sh -c 'echo \"$LD_PRELOAD\"'"
			" | grep -q libupager-preload.so", upager), 0);
	/* a bad UPAGER_ value reaching the shim directly: message, exit 2 */
	cr_assert_eq(sh("shim=$('%s' run -- sh -c 'echo $LD_PRELOAD' | cut -d: -f1) &&"
			" UPAGER_PAGE_SIZE=5K LD_PRELOAD=$shim /bin/ls / >/dev/null 2>&1",
			upager), 2);
}
