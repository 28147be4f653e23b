/* main.c — `tapegrad COMMAND [options]`: finds the subcommand in the table
 * generated from commands.def and hands it the rest of the command line. */
#include <stdio.h>
#include <string.h>
#include "cli.h"

#define CLI_CMD(name) extern const cli_cmd cli_cmd_##name;
#include "commands.def"
#undef CLI_CMD

static const cli_cmd *const commands[] = {
#define CLI_CMD(name) &cli_cmd_##name,
#include "commands.def"
#undef CLI_CMD
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void help(FILE *f)
{
    fprintf(f, "usage: tapegrad COMMAND [options]\n"
               "       tapegrad COMMAND --help\n\n"
               "Exact gradients of recurrent models written in YAML, by back-propagation\n"
               "through time on a tape (the model format: models/README.md).\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\noptions:\n"
               "  -h, --help     show this help\n"
               "  --version      print the version and precision\n\n" CLI_EXIT_CODES);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        help(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        if (argc > 2 && strcmp(name, "help") == 0) {
            for (int i = 0; i < N_COMMANDS; i++)
                if (!strcmp(argv[2], commands[i]->name)) {
                    char *hv[] = {argv[2], "--help", NULL};
                    return commands[i]->run(commands[i], 2, hv) == CLI_OK ? CLI_OK : CLI_USAGE;
                }
            fprintf(stderr, "tapegrad: no command '%s'\n", argv[2]);
            return CLI_USAGE;
        }
        help(stdout);
        return CLI_OK;
    }
    if (!strcmp(name, "--version")) {
#ifdef TG_REAL_DOUBLE
        printf("tapegrad %s (double)\n", TG_VERSION);
#else
        printf("tapegrad %s (float)\n", TG_VERSION);
#endif
        return CLI_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(name, commands[i]->name)) return commands[i]->run(commands[i], argc - 1, argv + 1);

    /* a near miss gets a suggestion */
    const char *names[N_COMMANDS];
    for (int i = 0; i < N_COMMANDS; i++) names[i] = commands[i]->name;
    const char *best = cli_suggest(name, names, N_COMMANDS);
    if (name[0] == '-') fprintf(stderr, "tapegrad: unknown option '%s' (a command comes first)\n", name);
    else if (best) fprintf(stderr, "tapegrad: unknown command '%s' (did you mean '%s'?)\n", name, best);
    else fprintf(stderr, "tapegrad: unknown command '%s'\n", name);
    fprintf(stderr, "Try 'tapegrad --help'.\n");
    return CLI_USAGE;
}
