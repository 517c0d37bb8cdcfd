# SPDX-License-Identifier: MIT
# gen_c.awk - a large, deterministic C source for the compiler test of
# tests/test_programs.c:  awk -v N=200 -f gen_c.awk > big.c
# N functions of 40 statements each; cc1 at -O2 needs about 0.6 MiB of
# heap per function, most of it in its mmap()ed garbage-collected pages.
BEGIN {
	srand(5)
	print "#include <stdio.h>"
	for (f = 0; f < N; f++) {
		printf "static int f%d(int x, int y) {\n  int a = x, b = y, c = %d;\n", f, f
		for (k = 0; k < 40; k++)
			printf "  a = (a + %d) ^ (b >> %d); b = b * (a + c + %d) - %d; if (a > %d) c += a & %d;\n",
			       int(rand() * 999) + 1, k % 7, k, int(rand() * 99),
			       int(rand() * 9999), k + 1
		print "  return a + b + c;\n}"
	}
	print "int main(void) {\n  long s = 0;"
	for (f = 0; f < N; f++)
		printf "  s += f%d(%d, %d);\n", f, f, f * 3
	print "  printf(\"%ld\\n\", s);\n  return 0;\n}"
}
