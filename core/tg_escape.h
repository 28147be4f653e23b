/* tg_escape.h — the one place that writes a string from an input (a model's
 * file name, a label, a title) into an output with its own quoting: text
 * dumps and messages, JSON, Graphviz DOT, CSV and gnuplot scripts.  Internal
 * (the dumps, the gradient norms and the command-line tool use it).
 *
 * Whatever the string holds, the output stays well-formed and on its line:
 * no kind lets a newline, a control character or a quote of the enclosing
 * syntax through unescaped.  Shown as \xNN (a literal backslash, 'x' and two
 * hex digits): control characters (bytes below 0x20 and 0x7f), the C1
 * controls U+0080..U+009F (terminals obey some) and bytes that are not valid
 * UTF-8; where each kind differs, its comment says. */
#ifndef TG_ESCAPE_H
#define TG_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

typedef enum tg_esc_kind {
    TG_ESC_TEXT,    /* a message or a line of text: as is, but \xNN as above */
    TG_ESC_TOKEN,   /* one whitespace-free field of a text dump: TEXT, and a space is \x20 */
    TG_ESC_JSON,    /* "..." by RFC 8259: \" \\ \n \t \r \b \f, other controls \u00NN, invalid
                     * UTF-8 replaced by U+FFFD (JSON cannot hold raw bytes) */
    TG_ESC_DOT,     /* "..." for Graphviz: \" and \\; a newline is the label's line break \n */
    TG_ESC_CSV,     /* an RFC 4180 field: quoted ("" for ") when it holds a comma, a quote, a
                     * space at either end or an escaped byte; never a line break */
    TG_ESC_GNUPLOT  /* '...' for gnuplot, where only '' is special (a backslash is literal) and
                     * a line break would end the command */
} tg_esc_kind;

/* Writes s (NULL: nothing) to out escaped for kind, with the quotes the kind
 * needs.  Returns 0, or EOF if writing failed. */
int tg_esc_write(FILE *out, const char *s, tg_esc_kind kind);
/* The same into buf (len bytes, truncated at a whole escape, always
 * NUL-terminated when len > 0); returns buf. */
char *tg_esc_str(char *buf, size_t len, const char *s, tg_esc_kind kind);
/* Does s hold a byte that TG_ESC_TEXT would escape? */
int tg_esc_needed(const char *s);

#endif
