/* `broker policy apply`: read documents from files, validate the resulting whole set, store. */
#ifndef BROKER_CLI_POLICY_H
#define BROKER_CLI_POLICY_H

int cli_policy(int argc, char **argv);

#endif
