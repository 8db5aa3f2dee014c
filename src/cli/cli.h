/*
 * cli: the engine's subcommands (the service's are in commands.h). Each takes the arguments after its own name
 * (argv[0] is the subcommand) and returns the process exit status: 0 on
 * success, 1 on a runtime failure, 2 on a usage error (after a message on stderr).
 */
#ifndef TANDEM_CLI_H
#define TANDEM_CLI_H

int cli_run_model(int argc, char **argv); /* cli_engine.c */
int cli_bench(int argc, char **argv);     /* cli_engine.c */
int cli_classify(int argc, char **argv);  /* cli_classify.c */

#endif
