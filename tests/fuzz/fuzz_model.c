/* fuzz_model.c — the model loader: any bytes, as a YAML model file, must give
 * a checked model or a "FILE:LINE:COL: message" error; never a crash, a hang
 * or a leak.  A model that loads is also queried and its parameters set
 * (when they are small), which walks every declaration. */
#include "fuzz_util.h"
#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    if (!ctx) abort();
    /* also a --dim override for a dim the model may or may not have */
    tg_dim dims[1] = {{"hidden", 3}};
    int n_dims = size > 0 && (data[0] & 1);
    tg_model *m = tg_model_parse(ctx, "fuzz.yaml", (const char *)data, size, dims, n_dims);
    if (!m) {
        fz_expect_message(ctx, "tg_model_parse");
        if (tg_status_last(ctx) != TG_ERR_NOMEM && strncmp(tg_errmsg(ctx), "fuzz.yaml:", 10) != 0 &&
            tg_status_last(ctx) != TG_ERR_NOTFOUND) {
            fprintf(stderr, "fuzz: unpositioned message: %s\n", tg_errmsg(ctx));
            abort();
        }
    } else {
        size_t total = 0;
        for (int r = TG_ROLE_PARAM; r <= TG_ROLE_OUTPUT; r++)
            for (int i = 0; i < tg_model_count(m, r); i++) {
                int rows, cols;
                const char *name = tg_model_var(m, r, i, &rows, &cols);
                if (!name || rows < 1) abort();
                if (r == TG_ROLE_PARAM) total += (size_t)rows * (size_t)(cols > 0 ? cols : 1);
            }
        if (total <= 100000) {
            tg_params *ps = tg_params_new(ctx);
            if (tg_model_init_params(m, ps, 1) != TG_OK) fz_expect_message(ctx, "init_params");
            else
                for (size_t k = 0; k < tg_params_total(ps); k++)
                    if (!isfinite((double)tg_params_values(ps)[k])) {
                        fprintf(stderr, "fuzz_model: an init gave a non-finite value\n");
                        abort();
                    }
            tg_params_free(ps);
        }
        tg_model_free(m);
    }
    tg_ctx_free(ctx);
    return 0;
}
