/* `broker exchange` and `broker run`: the client side. Find the ambient OIDC token (file,
 * environment variable, GitHub Actions, AWS, Kubernetes, GCP metadata), exchange it at
 * SERVER/v1/token (RFC 8693) and print the access token or run a command with it. */
#ifndef BROKER_CLI_EXCHANGE_H
#define BROKER_CLI_EXCHANGE_H

int cli_exchange(int argc, char **argv);
int cli_run(int argc, char **argv);

#endif
