/* fuzz_csv.c — the CSV reader (train/trainset.c): any bytes, as a CSV series
 * for each of three models, give a training set whose every value is finite,
 * or a message that starts with the file's name; never a crash, a hang or a
 * leak.  A set that loads is also split for validation. */
#include "fuzz_util.h"

static tg_ctx *ctx;
static tg_model *models[FZ_N_MODELS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ctx = tg_ctx_new(NULL);
    for (int i = 0; i < FZ_N_MODELS; i++) models[i] = fz_model(ctx, i);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int i = 0; i < FZ_N_MODELS; i++) {
        tg_clear_error(ctx);
        tg_trainset *s = tg_trainset_csv_parse(ctx, models[i], "fuzz.csv", (const char *)data, size);
        if (!s) {
            fz_expect_message(ctx, "tg_trainset_csv_parse");
            if (tg_status_last(ctx) != TG_ERR_NOMEM && strncmp(tg_errmsg(ctx), "fuzz.csv", 8)) {
                fprintf(stderr, "fuzz_csv: a message without the file's name: %s\n", tg_errmsg(ctx));
                abort();
            }
            continue;
        }
        if (tg_trainset_length(s) < 1 || tg_trainset_is_text(s)) abort();
        tg_trainset *v = tg_trainset_split(s, 0.5);
        tg_trainset_free(v);
        tg_trainset_free(s);
    }
    return 0;
}
