/* SPDX-License-Identifier: MIT */
/*
 * upager.c - the `upager' command: run an unmodified program paged.
 *
 *   upager run --budget 256M -- sort -S 2G big.txt
 *
 * A launcher, nothing more (the paging is done in the program's own
 * process, by libupager-preload.so): it checks the options with the same
 * code the library uses, puts them in UPAGER_* variables, puts the shim in
 * LD_PRELOAD, runs the program and passes its exit status through.
 *
 * Exit status: the program's; 128+N if it was killed by signal N; 2 for a
 * bad command line; 125 when upager itself fails (no shim found, fork
 * failed); 126 when the program cannot be executed, 127 when not found.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "upager.h"
#include "cpus.h"

#define EXIT_USAGE 2
#define EXIT_UPAGER 125
#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND 127

#define SHIM "libupager-preload.so"

static const char usage_text[] =
	"Usage: upager run [OPTION]... [--] PROGRAM [ARGUMENT]...\n"
	"       upager --help | --version\n"
	"\n"
	"Run PROGRAM with its heap paged by upager: at most the budget of it stays\n"
	"in memory, the rest goes to a swap file.\n"
	"\n"
	"Options of run (each sets the UPAGER_* variable named in brackets):\n"
	"  -b, --budget SIZE       resident memory limit, e.g. 256M, 2G [BUDGET]\n"
	"  -s, --swap PATH         existing swap file or block device [SWAP]\n"
	"      --swap-dir DIR      directory of the anonymous swap file [SWAP_DIR]\n"
	"  -p, --page-size SIZE    pager page: 4K to 2M, a power of two [PAGE_SIZE]\n"
	"  -t, --threads N         fault-handler threads [THREADS]\n"
	"      --cpus LIST|swap-irq  run the program, and the pager's threads in it,\n"
	"                          on these CPUs only (as taskset -c LIST), or on\n"
	"                          those that take the swap device's interrupts\n"
	"      --mmap, --no-mmap   page the program's anonymous mmap()s too, or\n"
	"                          leave them to the kernel (default: page) [MMAP]\n"
	"      --mmap-min SIZE     only mappings of at least SIZE (default 16K)\n"
	"                          [MMAP_MIN]\n"
	"  -o, --option NAME=VALUE any option by name, e.g. -o evict=copy\n"
	"      --stats[=FILE]      print what the pager did when the program ends,\n"
	"                          on stderr or appended to FILE [STATS]\n"
	"  -v, --verbose           more messages (repeat for debug) [VERBOSE]\n"
	"\n"
	"SIZE takes the suffixes K, M, G, T (binary).  Options not given keep the\n"
	"values of UPAGER_* variables already in the environment, else defaults.\n"
	"\n"
	"Exit status: PROGRAM's, or 128+N if a signal N killed it; 2 for a bad\n"
	"command line, 125 if upager fails, 126 if PROGRAM cannot be run, 127 if\n"
	"it is not found.  See upager(1).\n";

static _Noreturn __attribute__((format(printf, 1, 2))) void
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "upager: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'upager --help'.\n");
	exit(EXIT_USAGE);
}

/* "page-size" -> "UPAGER_PAGE_SIZE" */
static void env_name(const char *name, char *out, size_t outlen)
{
	size_t n = 0;

	if (strncasecmp(name, "UPAGER_", 7) && strncasecmp(name, "upager-", 7))
		n = (size_t)snprintf(out, outlen, "UPAGER_");
	else
		name += 7;
	for (; *name && n + 1 < outlen; name++)
		out[n++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
	out[n] = '\0';
}

/* Check NAME=VALUE with the library's parser, then export it. */
static void set_option(struct upg_options *o, const char *name,
		       const char *value)
{
	char err[256], env[64];
	int ret;

	/* the allocator's options are read by the shim, not the pager */
	ret = upg_alloc_option_check(name, value, err, sizeof(err));
	if (ret == -ENOENT)
		ret = upg_options_set(o, name, value, err, sizeof(err));
	if (ret == -ENOENT)
		usage_error("unknown option '%s'", name);
	if (ret < 0) {
		fprintf(stderr, "upager: %s\n", err);
		exit(EXIT_USAGE);
	}
	env_name(name, env, sizeof(env));
	setenv(env, value, 1);
}

static bool readable(const char *path)
{
	return access(path, R_OK) == 0;
}

/* Where libupager-preload.so is: override, installed, or build tree. */
static const char *find_shim(void)
{
	static char path[PATH_MAX + 64];
	const char *rel[] = { "/../lib/" SHIM, "/../.libs/" SHIM,
			      "/../../.libs/" SHIM };
	char exe[PATH_MAX];
	const char *env = getenv("UPAGER_PRELOAD");
	ssize_t n;
	unsigned i;

	if (env && *env) {
		if (!readable(env)) {
			fprintf(stderr, "upager: UPAGER_PRELOAD=%s: not readable\n", env);
			exit(EXIT_UPAGER);
		}
		return env;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;

		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
		for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			snprintf(path, sizeof(path), "%s%s", exe, rel[i]);
			if (readable(path))
				return path;
		}
	}
	snprintf(path, sizeof(path), "%s/%s", UPG_LIBDIR, SHIM);
	if (readable(path))
		return path;
	fprintf(stderr,
		"upager: cannot find %s next to the upager binary nor in %s;\n"
		"        set UPAGER_PRELOAD=/path/to/%s\n", SHIM, UPG_LIBDIR, SHIM);
	exit(EXIT_UPAGER);
}

static void set_preload(const char *shim)
{
	const char *old = getenv("LD_PRELOAD");
	char *v;

	if (!old || !*old) {
		setenv("LD_PRELOAD", shim, 1);
		return;
	}
	/* first, so that its malloc is the one the program gets */
	if (asprintf(&v, "%s:%s", shim, old) < 0) {
		fprintf(stderr, "upager: out of memory\n");
		exit(EXIT_UPAGER);
	}
	setenv("LD_PRELOAD", v, 1);
	free(v);
}

static pid_t child;

/* Pass on signals sent to upager by kill(2); those from the terminal
 * reached the program already (same process group). */
static void forward(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (child > 0 && si->si_code <= 0)
		kill(child, sig);
}

static int run(char **argv)
{
	const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
	struct sigaction sa;
	unsigned i;
	int status;

	fflush(NULL);
	child = fork();
	if (child < 0) {
		perror("upager: fork");
		return EXIT_UPAGER;
	}
	if (child == 0) {
		execvp(argv[0], argv);
		fprintf(stderr, "upager: %s: %s\n", argv[0], strerror(errno));
		_exit(errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = forward;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR) {
			perror("upager: waitpid");
			return EXIT_UPAGER;
		}
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return EXIT_UPAGER;
}

/*
 * --cpus: this process's affinity, which the program inherits, and the
 * pager's threads it starts with it (cpus.c says why one would).
 */
static int pin(const char *cpus, const struct upg_options *o, unsigned verbose)
{
	const char *store = o->swap_path ? o->swap_path : o->swap_dir;
	char err[512], what[256] = "", list[128];
	cpu_set_t set;
	int ret;

	if (!strcmp(cpus, "swap-irq"))
		ret = cpus_of_swap_irq(store, &set, what, sizeof(what), err,
				       sizeof(err));
	else
		ret = cpus_parse_list(cpus, &set, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "upager: %s\n", err);
		return ret;
	}
	cpus_format(&set, list, sizeof(list));
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		int e = errno;
		char may[128] = "?";
		cpu_set_t now;

		if (sched_getaffinity(0, sizeof(now), &now) == 0)
			cpus_format(&now, may, sizeof(may));
		fprintf(stderr, "upager: --cpus %s: CPUs %s: %s (this process may "
			"run on %s)\n", cpus, list, strerror(e), may);
		return -e;
	}
	if (verbose)
		fprintf(stderr, "upager: running on CPUs %s%s%s%s\n", list,
			*what ? " (interrupts " : "", what, *what ? ")" : "");
	return 0;
}

enum {
	OPT_SWAP_DIR = 256, OPT_STATS, OPT_MMAP, OPT_NO_MMAP, OPT_MMAP_MIN,
	OPT_CPUS
};

static int cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "budget", required_argument, NULL, 'b' },
		{ "swap", required_argument, NULL, 's' },
		{ "swap-dir", required_argument, NULL, OPT_SWAP_DIR },
		{ "page-size", required_argument, NULL, 'p' },
		{ "threads", required_argument, NULL, 't' },
		{ "option", required_argument, NULL, 'o' },
		{ "stats", optional_argument, NULL, OPT_STATS },
		{ "mmap", no_argument, NULL, OPT_MMAP },
		{ "no-mmap", no_argument, NULL, OPT_NO_MMAP },
		{ "mmap-min", required_argument, NULL, OPT_MMAP_MIN },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct upg_options o;
	char err[256], num[16];
	const char *cpus = NULL;
	unsigned verbose = 0;
	int c, ret;

	upg_options_init(&o);
	/* inherited UPAGER_* count too: report a bad one here, not in the program */
	ret = upg_options_from_env(&o, err, sizeof(err));
	if (ret == 0 && getenv("UPAGER_MMAP"))
		ret = upg_alloc_option_check("mmap", getenv("UPAGER_MMAP"), err,
					     sizeof(err));
	if (ret == 0 && getenv("UPAGER_MMAP_MIN"))
		ret = upg_alloc_option_check("mmap_min", getenv("UPAGER_MMAP_MIN"),
					     err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "upager: %s\n", err);
		return EXIT_USAGE;
	}
	verbose = o.verbose;
	optind = 1;
	/* '+': stop at PROGRAM, its own options are its own */
	while ((c = getopt_long(argc, argv, "+b:s:p:t:o:vh", longopts, NULL)) != -1) {
		char *eq;

		switch (c) {
		case 'b':
			set_option(&o, "budget", optarg);
			break;
		case 's':
			set_option(&o, "swap", optarg);
			break;
		case OPT_SWAP_DIR:
			set_option(&o, "swap_dir", optarg);
			break;
		case 'p':
			set_option(&o, "page_size", optarg);
			break;
		case 't':
			set_option(&o, "threads", optarg);
			break;
		case 'o':
			eq = strchr(optarg, '=');
			if (!eq || eq == optarg)
				usage_error("-o wants NAME=VALUE, not '%s'", optarg);
			*eq = '\0';
			set_option(&o, optarg, eq + 1);
			break;
		case OPT_MMAP:
			set_option(&o, "mmap", "1");
			break;
		case OPT_NO_MMAP:
			set_option(&o, "mmap", "0");
			break;
		case OPT_MMAP_MIN:
			set_option(&o, "mmap_min", optarg);
			break;
		case OPT_CPUS:
			cpus = optarg;
			break;
		case OPT_STATS:
			setenv("UPAGER_STATS", optarg && *optarg ? optarg : "1", 1);
			break;
		case 'v':
			verbose++;
			snprintf(num, sizeof(num), "%u", verbose);
			set_option(&o, "verbose", num);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'upager --help'.\n");
			return EXIT_USAGE;
		}
	}
	if (upg_options_validate(&o, err, sizeof(err)) < 0) {
		fprintf(stderr, "upager: %s\n", err);
		return EXIT_USAGE;
	}
	if (optind >= argc)
		usage_error("run: no PROGRAM given");
	if (cpus && pin(cpus, &o, verbose) < 0)
		return EXIT_USAGE;
	set_preload(find_shim());
	return run(argv + optind);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("upager %s\n", UPG_VERSION_STRING);
		return 0;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	usage_error("unknown command '%s'", argv[1]);
}
