/* fuzz_params.c — the params loader (path-based: the input goes into a
 * memfd read as /proc/self/fd/N).  For each of three models, into fresh
 * params and into initialised ones: success sets finite values; failure
 * leaves a "FILE:LINE:COL: message" (or "params: ..." for a shape clash)
 * and every value as it was ("a bad file changes nothing"). */
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
    char path[64];
    int fd = fz_memfd(data, size, path, sizeof path);
    for (int i = 0; i < FZ_N_MODELS; i++)
        for (int init = 0; init < 2; init++) {
            tg_params *ps = tg_params_new(ctx);
            if (init && tg_model_init_params(models[i], ps, 3) != TG_OK) abort();
            size_t total = tg_params_total(ps);
            tg_real *before = malloc((total ? total : 1) * sizeof(tg_real));
            if (total) memcpy(before, tg_params_values(ps), total * sizeof(tg_real));
            int count = tg_params_count(ps);
            tg_clear_error(ctx);
            tg_status st = tg_params_load(ps, models[i], path);
            if (st) {
                fz_expect_message(ctx, "tg_params_load");
                if (st != TG_ERR_NOMEM && strncmp(tg_errmsg(ctx), path, strlen(path)) &&
                    strncmp(tg_errmsg(ctx), "params: ", 9)) {
                    fprintf(stderr, "fuzz_params: unpositioned message: %s\n", tg_errmsg(ctx));
                    abort();
                }
                if (tg_params_count(ps) != count ||
                    (total && memcmp(before, tg_params_values(ps), total * sizeof(tg_real)))) {
                    fprintf(stderr, "fuzz_params: a failed load changed the parameters\n");
                    abort();
                }
            } else {
                for (size_t k = 0; k < tg_params_total(ps); k++)
                    if (!isfinite((double)tg_params_values(ps)[k])) {
                        fprintf(stderr, "fuzz_params: a non-finite value was loaded\n");
                        abort();
                    }
            }
            free(before);
            tg_params_free(ps);
        }
    close(fd);
    return 0;
}
