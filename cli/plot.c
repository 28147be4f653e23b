/* plot.c — CSV columns drawn by gnuplot.  gnuplot is an interpreter (it
 * runs `system`, backquotes, '<command' data files and '|command' outputs),
 * so nothing from an input reaches it unquoted: it is started with
 * fork/exec, never a shell; every string is written in single quotes by
 * tg_esc (a quote doubled, control characters shown as \xNN, since a line
 * break would end the command); relative file names get a "./" so that no
 * name is read as a command or a special file; text is drawn noenhanced.
 * gnuplot's stdout goes to /dev/null (it writes an SVG there when it cannot
 * open the output) and its stderr is kept for the warning. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli.h"
#include "plot.h"
#include "tg_escape.h"

/* The executable `name` somewhere on PATH? */
static int on_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[4096];
    for (const char *p = path && *path ? path : "/usr/bin:/bin"; *p;) {
        const char *c = strchr(p, ':');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, n ? p : ".", name);
        if (access(buf, X_OK) == 0) return 1;
        p += n + (c ? 1 : 0);
    }
    return 0;
}

__attribute__((format(printf, 2, 3))) static int warn(const char *cmd, const char *fmt, ...)
{
    char msg[2048], shown[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "tapegrad %s: warning: %s\n", cmd, tg_esc_str(shown, sizeof shown, msg, TG_ESC_TEXT));
    return -1;
}

/* A file name as a gnuplot string: quoted, "./" before a relative one.  A
 * name that quoting would change (a control character, invalid UTF-8) could
 * only name another file, so it is refused (returns 0). */
static int put_file(FILE *g, const char *path)
{
    if (tg_esc_needed(path)) return 0;
    char buf[8192];
    if (path[0] != '/') snprintf(buf, sizeof buf, "./%s", path);
    else snprintf(buf, sizeof buf, "%s", path);
    tg_esc_write(g, buf, TG_ESC_GNUPLOT);
    return 1;
}

static void write_script(FILE *g, const char *csv, const char *out, const char *title, const char *xlabel,
                         const char *ylabel, int log_y, const cli_plot_series *series, int n_series)
{
    const char *dot = strrchr(out, '.');
    int png = dot && !strcmp(dot, ".png");
    fprintf(g, "set terminal %s noenhanced\nset output ", png ? "pngcairo size 800,480" : "svg size 800,480 dynamic");
    put_file(g, out);
    fputs("\nset datafile separator ','\n", g);
    const char *const what[3] = {"title", "xlabel", "ylabel"}, *text[3] = {title, xlabel, ylabel};
    for (int i = 0; i < 3; i++) {
        if (!text[i]) continue;
        fprintf(g, "set %s ", what[i]);
        tg_esc_write(g, text[i], TG_ESC_GNUPLOT);
        fputs(" noenhanced\n", g);
    }
    if (log_y) fputs("set logscale y\nset format y '%g'\n", g);
    fprintf(g, "set grid\nset key %s\nplot ", n_series > 1 ? "top right" : "off");
    for (int i = 0; i < n_series; i++) {
        if (i) fputs(", \\\n     ", g);
        put_file(g, csv);
        fprintf(g, " every ::1 using %d:%d title ", series[i].x_col, series[i].y_col);
        tg_esc_write(g, series[i].title ? series[i].title : "", TG_ESC_GNUPLOT);
        fputs(" noenhanced with lines lw 1.5", g);
    }
    fputs("\nunset output\n", g);
}

/* What gnuplot said: the first line naming a script line ("line 3: cannot
 * open file; output not changed"), else its first non-blank line. */
static void gnuplot_said(FILE *err, char *buf, size_t len)
{
    char line[512], first[512] = "";
    buf[0] = 0;
    rewind(err);
    while (fgets(line, sizeof line, err)) {
        line[strcspn(line, "\n")] = 0;
        char *p = line + strspn(line, " \t");
        char *l = strstr(p, "line ");
        if (l && strchr(l, ':')) {
            const char *m = strchr(l, ':') + 1;
            snprintf(buf, len, "%s", m + strspn(m, " \t"));
            return;
        }
        if (!first[0] && *p && *p != '^') snprintf(first, sizeof first, "%s", p);
    }
    snprintf(buf, len, "%s", first);
}

int cli_plot_csv(const char *cmd, const char *csv, const char *out, const char *title, const char *xlabel,
                 const char *ylabel, int log_y, const cli_plot_series *series, int n_series)
{
    if (!csv || !out || !series || n_series < 1) return warn(cmd, "no plot: nothing to draw");
    for (int i = 0; i < n_series; i++)
        if (series[i].x_col < 1 || series[i].y_col < 1) return warn(cmd, "no plot: column numbers start at 1");
    if (tg_esc_needed(csv) || tg_esc_needed(out))
        return warn(cmd, "no plot: the file name %s holds a control character or invalid UTF-8, which gnuplot "
                         "cannot be given safely", tg_esc_needed(out) ? out : csv);
    if (!on_path("gnuplot")) return warn(cmd, "gnuplot is not installed, so no %s (%s is plain CSV)", out, csv);

    FILE *err = tmpfile();
    int fd[2] = {-1, -1};
    if (!err || pipe(fd) != 0) {
        int e = errno;
        if (err) fclose(err);
        return warn(cmd, "cannot run gnuplot: %s", strerror(e));
    }
    fcntl(fd[1], F_SETFD, FD_CLOEXEC);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fd[0]);
        close(fd[1]);
        fclose(err);
        return warn(cmd, "cannot run gnuplot: %s", strerror(e));
    }
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (dup2(fd[0], 0) < 0 || null < 0 || dup2(null, 1) < 0 || dup2(fileno(err), 2) < 0) _exit(126);
        close(fd[0]);
        close(null);
        char *const argv[] = {"gnuplot", NULL};
        execvp("gnuplot", argv);
        _exit(127);
    }
    close(fd[0]);
    /* gnuplot may exit before it has read the script: a write then fails
     * with EPIPE instead of killing the tool */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old);
    FILE *g = fdopen(fd[1], "w");
    if (g) {
        write_script(g, csv, out, title, xlabel, ylabel, log_y, series, n_series);
        fclose(g);
    } else
        close(fd[1]);
    sigaction(SIGPIPE, &old, NULL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    char said[512];
    gnuplot_said(err, said, sizeof said);
    fclose(err);
    struct stat st;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return warn(cmd, "cannot run gnuplot, so no %s", out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || stat(out, &st) != 0 || st.st_size == 0)
        return warn(cmd, "gnuplot failed%s%s; no %s", said[0] ? ": " : "", said, out);
    return 0;
}
