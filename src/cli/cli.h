/*
 * cli: the tandem subcommands. Each takes the arguments after its own name
 * (argv[0] is the subcommand) and returns the process exit status: 0 on
 * success, 1 on a runtime failure, 2 on a usage error (after a message on stderr).
 */
#ifndef TANDEM_CLI_H
#define TANDEM_CLI_H

int cli_run_model(int argc, char **argv); /* cli_engine.c */
int cli_bench(int argc, char **argv);     /* cli_engine.c */
int cli_classify(int argc, char **argv);  /* cli_classify.c */
int cli_proxy(int argc, char **argv);     /* proxy.c */
int cli_worker(int argc, char **argv);    /* supervisor.c */
int cli_up(int argc, char **argv);        /* up.c */
int cli_models(int argc, char **argv);    /* models.c */

#endif
