/* `broker audit show REQUEST_ID [--json]`: one decision, explained for an admin. */
#ifndef BROKER_CLI_AUDIT_H
#define BROKER_CLI_AUDIT_H

int cli_audit(int argc, char **argv);

#endif
