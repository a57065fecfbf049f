/* STUB: replaced by the module's owner. */
#include "config.h"
#include <stdio.h>
#include "postern.h"
int
cmd_cat(int argc, char **argv)
{
	(void)argc;
	fprintf(stderr, "postern: %s: not built yet\n", argv[0]);
	return 2;
}
int
cmd_queue(int argc, char **argv)
{
	(void)argc;
	fprintf(stderr, "postern: %s: not built yet\n", argv[0]);
	return 2;
}
