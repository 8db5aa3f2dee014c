/*
 * tandem: one binary, one subcommand per role. The engine commands run a
 * model once, time it or classify images; the service commands run the HTTP
 * proxy, the worker pool, or the whole system on one machine.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"up", cli_up, "start redis (unless REDIS_HOST is set), the proxy and the workers"},
    {"proxy", cli_proxy, "serve the HTTP API: fast model inline, jobs queued in Redis"},
    {"worker", cli_worker, "supervise NUM_WORKERS processes running the slow model"},
    {"models", cli_models, "put the default model pair in place (mirror, download or export)"},
    {"classify", cli_classify, "print the top labels of image files"},
    {"run-model", cli_run_model, "run a model once on raw input bytes"},
    {"bench", cli_bench, "time a model and print JSON figures"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: tandem <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'tandem <command> --help' describes a command's options and environment.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tandem: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
