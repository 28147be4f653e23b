/* fuzz_data.c — the data loader: any bytes, as a data file for each of four
 * models (elman; mlp with two targets; a model with [1]- and [3]-row
 * inputs; index variables and a target per sequence), give a dataset whose
 * every value is finite (an index: whole, in its vocabulary) and in its
 * place, or a "FILE:LINE:COL: message"; never a crash, a hang or a leak. */
#include "fuzz_util.h"
#include <math.h>

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
        tg_dataset *d = tg_dataset_parse(ctx, models[i], "fuzz.yaml", (const char *)data, size);
        if (!d) {
            fz_expect_message(ctx, "tg_dataset_parse");
            if (tg_status_last(ctx) != TG_ERR_NOMEM && strncmp(tg_errmsg(ctx), "fuzz.yaml:", 10)) {
                fprintf(stderr, "fuzz_data: unpositioned message: %s\n", tg_errmsg(ctx));
                abort();
            }
            continue;
        }
        int n = tg_dataset_count(d);
        if (n < 1) abort();
        for (int q = 0; q < n; q++) {
            int T = tg_dataset_steps(d, q), B = tg_dataset_batch(d, q);
            if (T < 1 || B < 1) abort();
            for (int role = TG_ROLE_INPUT; role <= TG_ROLE_TARGET; role++)
                for (int v = 0; v < tg_model_count(models[i], role); v++) {
                    int rows, cols;
                    tg_model_var(models[i], role, v, &rows, &cols);
                    const tg_real *x = tg_dataset_values(d, q, role, v);
                    if (!x) {
                        if (role == TG_ROLE_INPUT) abort(); /* every input is required */
                        continue;
                    }
                    int vocab, flags = tg_model_var_flags(models[i], role, v, &vocab);
                    size_t steps = flags & TG_VAR_PER_SEQUENCE ? 1 : (size_t)T;
                    for (size_t k = 0; k < steps * (size_t)rows * (size_t)B; k++) {
                        if ((flags & TG_VAR_INDEX) && !(x[k] >= 0 && x[k] < vocab && x[k] == (tg_real)(long)x[k])) {
                            fprintf(stderr, "fuzz_data: an index out of range was loaded\n");
                            abort();
                        }
                        if (!isfinite((double)x[k])) {
                            fprintf(stderr, "fuzz_data: a non-finite value was loaded\n");
                            abort();
                        }
                    }
                }
        }
        tg_dataset_free(d);
    }
    return 0;
}
