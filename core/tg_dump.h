/* tg_dump.h — what the debugging views of a tape share (internal): a bounded
 * string builder, value summaries and entry names (core/anomaly.c), and what
 * a dump knows about a tape — each entry's step, its role, the parameters it
 * reads (core/dump.c), which the gradient norms reuse (core/gradnorms.c). */
#ifndef TG_DUMP_H
#define TG_DUMP_H

#include "tg_internal.h"

#ifdef TG_REAL_DOUBLE
#define TGD_JSON_DIGITS 17
#else
#define TGD_JSON_DIGITS 9
#endif
#define TGD_SHOW_DIGITS 4    /* significant digits in text, DOT and messages */
#define TGD_DEFAULT_VALUES 4 /* tensors this small are shown value by value */

/* ---- a bounded string builder: appends, truncates, never overflows (anomaly.c) ---- */
typedef struct tgd_sbuf {
    char *p;
    size_t len, pos;
} tgd_sbuf;

void tgd_sb_init(tgd_sbuf *b, char *p, size_t len);
__attribute__((format(printf, 2, 3))) void tgd_sb_printf(tgd_sbuf *b, const char *fmt, ...);
/* Appends a string from an input (a label, a file name) escaped as TG_ESC_TEXT, so
 * that no name can put a line break or a control character into a message or a dump. */
void tgd_sb_esc(tgd_sbuf *b, const char *s);

/* ---- numbers and summaries (anomaly.c) -------------------------------------------- */
const char *tgd_fmt_num(char *buf, size_t len, double v, int digits);
typedef struct tgd_stats {
    size_t n, bad, first_bad; /* bad: NaN or Inf, the first at first_bad */
    double min, max, sum, sumsq;
} tgd_stats;
void tgd_stats_of(const tg_real *v, size_t n, tgd_stats *s);
size_t tgd_count_bad(const tg_real *v, size_t n);
/* A summary of n values: the values themselves when n <= max_values, else
 * min, max and mean of the finite ones and how many are not finite.  Styles:
 * TEXT has no spaces ("[0.5,-1]", "{min=..,max=..,mean=..}") so the text
 * dump's fields split on whitespace; DOT is for a graph label; MSG for an
 * error message ("{min 1, max 2, mean 1.5, 3 of 9 non-finite, ...}"). */
enum { TGD_SUM_TEXT, TGD_SUM_DOT, TGD_SUM_MSG };
void tgd_sb_summary(tgd_sbuf *b, const tg_real *v, size_t n, int max_values, int style);
void tgd_sb_shape(tgd_sbuf *b, const tg_tensor *t, int compact);
/* "h[t=3]", a parameter's name, a label; escaped */
void tgd_sb_name(tgd_sbuf *b, const tg_tensor *t);

/* ---- what a dump knows about the tape (dump.c) ------------------------------------- */
enum { ROLE_OP, ROLE_INPUT, ROLE_TARGET, ROLE_LOSS };

typedef struct tgd_view {
    tg_tape *tp;
    int n;               /* entries */
    int *step;           /* per entry: its step, inferred for unlabelled ones */
    unsigned char *role; /* per entry: ROLE_* */
    tg_tensor **params;  /* parameters the tape reads, in order of first use */
    int n_params, cap_params;
    int loss;            /* index of the loss entry, -1 if none */
    int first_bad;       /* first entry with a non-finite value or gradient, -1 */
    int fold;            /* steps fold_lo..fold_hi are drawn as one box */
    int fold_lo, fold_hi, fold_steps, fold_entries;
} tgd_view;

int tgd_param_find(const tgd_view *v, const tg_tensor *p);
tg_status tgd_param_add(tgd_view *v, tg_tensor *p);
/* Parameters in the order of their tg_params, not the order the tape read them. */
void tgd_params_sort(tgd_view *v);
/* The step of each of the first n entries of tp into s (see dump.c). */
void tgd_infer_steps(tg_tape *tp, int n, int *s);

#endif
