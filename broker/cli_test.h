/* `broker policy test`: explain offline how a token would be decided, against documents from
 * files or the database, at any time. */
#ifndef BROKER_CLI_TEST_H
#define BROKER_CLI_TEST_H
#include <stdio.h>
#include <jansson.h>

/* argv holds the arguments after "test": --token FILE [--identity N] [--at TIME] [--json]
 * [--issuer-url URL] [--scope S] [--audience A] [--source ADDR] [--database-url URL] [PATH...].
 * Exit status: 0 issued, 1 denied, 2 usage or I/O error. */
int cli_policy_test(int argc, char **argv);
/* The same writing the result to out and diagnostics to err (tests). */
int cli_policy_test_io(int argc, char **argv, FILE *out, FILE *err);


#endif
