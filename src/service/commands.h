/*
 * commands: the service's subcommands, as src/cli/main.c dispatches them.
 * Each takes the arguments after its own name (argv[0] is the subcommand)
 * and returns the process exit status: 0 on success, 1 on a runtime failure,
 * 2 on a usage error (after a message on stderr). Declared here, in the
 * layer that defines them, so that the service never includes the cli layer.
 */
#ifndef TANDEM_COMMANDS_H
#define TANDEM_COMMANDS_H

int cli_proxy(int argc, char **argv);  /* proxy_main.c */
int cli_worker(int argc, char **argv); /* supervisor.c */
int cli_up(int argc, char **argv);     /* up.c */
int cli_models(int argc, char **argv); /* models.c */

#endif
