/* test_backprop.c — tg_model_backprop against one recording swept by
 * tg_backward (tg_model_unroll + tg_backward, the reference): parameter
 * gradients, loss and final states on every shipped model, with and without
 * a memory budget; the plan's numbers; the budget kept; anomaly detection,
 * dropout and the segment hook under a budget; hostile arguments; and
 * tg_parse_size. */
#include <stdint.h>
#include <tapegrad.h>
#include "models_testutil.h"

static tg_ctx *ctx_new(void)
{
    mt_chdir_root();
    tg_ctx *ctx = tg_ctx_new(NULL);
    cr_assert(ctx);
    return ctx;
}

/* ---- tg_parse_size --------------------------------------------------------------------- */
MT_TEST(backprop, parse_size_reads_sizes)
{
    tg_ctx *ctx = ctx_new();
    static const struct { const char *text; size_t want; } ok[] = {
        {"0", 0},           {"4096", 4096},        {"4096B", 4096},         {"64K", 65536},
        {"64k", 65536},     {"64KB", 65536},       {"64KiB", 65536},        {"256M", 256u << 20},
        {"1.5G", (size_t)3 << 29}, {"0.5K", 512},  {".5K", 512},            {"1.0009765625K", 1025},
        {"1T", (size_t)1 << 40},   {"3.3K", 3379}, /* 3379.2 rounded down */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t got = 7;
        cr_expect_eq(tg_parse_size(ctx, ok[i].text, &got), TG_OK, "%s: %s", ok[i].text, tg_errmsg(ctx));
        cr_expect_eq(got, ok[i].want, "%s gave %zu, not %zu", ok[i].text, got, ok[i].want);
    }
    static const struct { const char *text, *why; } bad[] = {
        {"", "it is empty"},
        {"-1M", "a size cannot be negative"},
        {"M", "it does not start with a digit"},
        {" 1M", "it does not start with a digit"},
        {"1M ", "unexpected characters after the number"},
        {"12X", "unexpected characters after the number"},
        {"1.5", "a number of bytes must be whole"},
        {"1.M", "a digit must follow the point"},
        {"1e6", "unexpected characters after the number"},
        {"99999999999999999999", "it is too large"},
        {"16777216T", "it is too large"},
        {"18446744073709551615.9K", "it is too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t got = 7;
        cr_expect_eq(tg_parse_size(ctx, bad[i].text, &got), TG_ERR_ARG, "%s was accepted", bad[i].text);
        cr_expect_eq(got, 7, "%s: the result was written on failure", bad[i].text);
        char want[512];
        snprintf(want, sizeof want,
                 "size '%s': %s; a size is a number of bytes with an optional K, M, G or T (powers of 1024) and "
                 "an optional B, such as 4096, 64K, 256M or 1.5G",
                 bad[i].text, bad[i].why);
        cr_expect_str_eq(tg_errmsg(ctx), want);
    }
    size_t b;
    cr_expect_eq(tg_parse_size(ctx, NULL, &b), TG_ERR_ARG);
    cr_expect_str_eq(tg_errmsg(ctx), "parse_size: text and bytes are required");
    cr_expect_eq(tg_parse_size(ctx, "1K", NULL), TG_ERR_ARG);
    cr_expect_eq(tg_parse_size(NULL, "1K", &b), TG_ERR_ARG);
    tg_ctx_free(ctx);
}
