/* plot.h — pictures of CSV files drawn by gnuplot, run without a shell, with
 * every string from an input escaped for gnuplot's quoting (cli/plot.c). */
#ifndef TG_CLI_PLOT_H
#define TG_CLI_PLOT_H

/* One curve of a plot: the CSV column (1-based) for x and for y, and its key title. */
typedef struct cli_plot_series {
    int x_col, y_col;
    const char *title;
} cli_plot_series;

/* Draws series from the CSV file csv (a header line, then numbers; empty fields are
 * skipped) into out (.svg or .png) with gnuplot, run without a shell.  Every string that
 * reaches the gnuplot script (file names, title, labels) is escaped for its quoting and drawn
 * `noenhanced`.  Returns 0, or -1 after printing a warning "tapegrad CMD: warning: ..." on
 * stderr (gnuplot missing or failing is a warning, not an error; nothing of gnuplot's output
 * reaches stdout).  Callers check `out` with cli_check_outputs() before any work. */
int cli_plot_csv(const char *cmd, const char *csv, const char *out, const char *title,
                 const char *xlabel, const char *ylabel, int log_y,
                 const cli_plot_series *series, int n_series);

#endif
