/* `broker policy lint [--json] PATH...`: load documents like `broker policy apply`, run the linter,
 * print findings per file. Also the printer `broker policy apply` uses for its warnings. */
#ifndef BROKER_CLI_LINT_H
#define BROKER_CLI_LINT_H
#include <stdio.h>
#include "lint.h"

/* argv holds the arguments after "lint". Exit status: 1 when any error-level finding exists
 * (invalid JSON files included), 0 otherwise, 2 on usage or I/O errors. */
int cli_policy_lint(int argc, char **argv);

/* "FILE: identity N policy P: error[rule]: message\n    fix: ...\n"; file NULL leaves the
 * "FILE: " part out. */
void cli_lint_print(FILE *out, const char *file, const struct lint_finding *f);

#endif
