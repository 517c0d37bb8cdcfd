/* SPDX-License-Identifier: MIT */
/*
 * fork.c - placeholder: fork support comes next (see ChangeLog).
 */
#include "pager.h"

int fork_handlers_install(struct upg_runtime *rt)
{
	(void)rt;
	return 0;
}

void fork_handlers_remove(struct upg_runtime *rt)
{
	(void)rt;
}
