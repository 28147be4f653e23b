/* fuzz_text.c — the text reader (train/trainset.c): any bytes read as UTF-8
 * give a set whose every character is in its vocabulary and written back as
 * the same bytes (invalid bytes escaped as U+DC00 + byte), or a message; the
 * text read again with its own vocabulary gives the same set, and with a
 * smaller vocabulary a positioned refusal.  Never a crash, a hang or a leak. */
#include "fuzz_util.h"

static tg_ctx *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ctx = tg_ctx_new(NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_clear_error(ctx);
    tg_trainset *s = tg_trainset_text_parse(ctx, "fuzz.txt", (const char *)data, size, NULL);
    if (!s) {
        fz_expect_message(ctx, "tg_trainset_text_parse");
        return 0;
    }
    const tg_vocab *v = tg_trainset_vocab(s);
    int n = tg_vocab_size(v);
    if (n < 1 || tg_trainset_length(s) > size || tg_trainset_length(s) < 2) abort();
    /* the characters written back as UTF-8 are as many bytes as the text */
    size_t bytes = 0;
    char buf[4];
    for (int i = 0; i < n; i++) {
        int k = tg_vocab_utf8(v, i, buf);
        if (k < 1 || k > 4 || tg_vocab_index(v, tg_vocab_char(v, i)) != i) abort();
        if (i && tg_vocab_char(v, i) <= tg_vocab_char(v, i - 1)) abort();
        bytes += (size_t)k;
    }
    if (bytes > size) abort();
    tg_trainset *again = tg_trainset_text_parse(ctx, "fuzz.txt", (const char *)data, size, v);
    if (!again || tg_trainset_length(again) != tg_trainset_length(s)) abort();
    tg_trainset_free(again);
    if (n > 1) {
        /* without its first character: refused with FILE:LINE:COL */
        uint32_t *c = malloc((size_t)n * sizeof *c);
        for (int i = 1; i < n; i++) c[i - 1] = tg_vocab_char(v, i);
        tg_vocab *smaller = tg_vocab_new(ctx, c, n - 1);
        free(c);
        if (!smaller) abort();
        tg_trainset *t = tg_trainset_text_parse(ctx, "fuzz.txt", (const char *)data, size, smaller);
        if (t || strncmp(tg_errmsg(ctx), "fuzz.txt:", 9)) abort();
        tg_vocab_free(smaller);
    }
    tg_trainset *val = tg_trainset_split(s, 0.25);
    tg_trainset_free(val);
    tg_trainset_free(s);
    return 0;
}
