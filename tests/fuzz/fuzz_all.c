/* fuzz_all.c — a model, its data and its params together, through the whole
 * path a training program takes: load, init, load params, load data (or
 * make random data), unroll in two truncated-BPTT chunks, backward, an
 * optimizer step, the finiteness check and the three dumps.  The input is
 *   MODEL [\n#%data\n DATA] [\n#%params\n PARAMS]
 * The context's allocator refuses to hold more than 64 MiB, so a model that
 * asks for huge tensors ends in TG_ERR_NOMEM, which is what an embedding
 * program would see, rather than in the fuzzer's RSS limit. */
#include "fuzz_util.h"
#include <math.h>

#define BUDGET ((size_t)64 << 20)
#define MAX_STEPS 16

typedef struct budget { size_t live; } budget;
static void *b_alloc(size_t n, void *u)
{
    budget *b = u;
    if (n > BUDGET - b->live) return NULL;
    void *p = malloc(n);
    if (p) b->live += n;
    return p;
}
static void *b_realloc(void *p, size_t old, size_t n, void *u)
{
    budget *b = u;
    if (n > old && n - old > BUDGET - b->live) return NULL;
    void *q = realloc(p, n);
    if (q) b->live = b->live - old + n;
    return q;
}
static void b_free(void *p, size_t n, void *u)
{
    if (p) ((budget *)u)->live -= n;
    free(p);
}

static FILE *devnull;
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    devnull = fopen("/dev/null", "w");
    return 0;
}

static const char *find(const char *s, size_t len, const char *sep)
{
    size_t n = strlen(sep);
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(s + i, sep, n)) return s + i;
    return NULL;
}

static void check_failed(tg_ctx *ctx, tg_status st, const char *what)
{
    if (st == TG_OK) return;
    fz_expect_message(ctx, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
    const char *text = (const char *)bytes;
    static const char SEP_DATA[] = "\n#%data\n", SEP_PARAMS[] = "\n#%params\n";
    /* each part runs to the next separator after its start (the two may
     * share a newline: "\n#%data\n#%params\n" has an empty data part) */
    const char *end = text + size;
    const char *dsep = find(text, size, SEP_DATA), *psep = find(text, size, SEP_PARAMS);
    const char *data = dsep ? dsep + strlen(SEP_DATA) : NULL, *params = psep ? psep + strlen(SEP_PARAMS) : NULL;
    size_t model_len = (size_t)((dsep && (!psep || dsep < psep) ? dsep : psep ? psep : end) - text);
    size_t data_len = 0, params_len = 0;
    if (data) {
        const char *stop = psep && psep >= data ? psep : end;
        data_len = stop > data ? (size_t)(stop - data) : 0;
        if (data > end) data = end;
    }
    if (params) {
        const char *stop = dsep && dsep >= params ? dsep : end;
        params_len = stop > params ? (size_t)(stop - params) : 0;
        if (params > end) params = end;
    }

    budget b = {0};
    tg_allocator a = {b_alloc, b_realloc, b_free, &b};
    tg_ctx *ctx = tg_ctx_new(&a);
    if (!ctx) abort();
    tg_model *m = tg_model_parse(ctx, "fuzz.yaml", text, model_len, NULL, 0);
    tg_params *ps = NULL;
    tg_dataset *d = NULL;
    tg_tape *tape = NULL;
    tg_optim *opt = NULL;
    tg_real **carry = NULL;
    int n_states = 0;
    if (!m) goto out;
    ps = tg_params_new(ctx);
    if (!ps) goto out;
    tg_status st = tg_model_init_params(m, ps, 5);
    check_failed(ctx, st, "init_params");
    if (st) goto out;
    if (params) {
        char path[64];
        int fd = fz_memfd((const uint8_t *)params, params_len, path, sizeof path);
        check_failed(ctx, tg_params_load(ps, m, path), "params_load");
        close(fd);
    }
    d = data ? tg_dataset_parse(ctx, m, "data.yaml", data, data_len) : tg_dataset_random(ctx, m, 3, 2, 9);
    if (!d) {
        fz_expect_message(ctx, "dataset");
        goto out;
    }
    tape = tg_tape_new(ctx);
    opt = tg_optim_new(ps, &(tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999,
                                             .eps = 1e-8, .clip = 1});
    if (!tape || !opt) goto out;
    n_states = tg_model_count(m, TG_ROLE_STATE);
    carry = calloc((size_t)n_states + 1, sizeof *carry);
    int n_in = tg_model_count(m, TG_ROLE_INPUT), n_tg = tg_model_count(m, TG_ROLE_TARGET);
    const tg_real **in = calloc((size_t)n_in + 1, sizeof *in), **tg = calloc((size_t)n_tg + 1, sizeof *tg);
    for (int q = 0; q < tg_dataset_count(d) && q < 3; q++) {
        int T = tg_dataset_steps(d, q), B = tg_dataset_batch(d, q), all_targets = 1;
        if (T > MAX_STEPS) T = MAX_STEPS;
        for (int i = 0; i < n_in; i++) in[i] = tg_dataset_values(d, q, TG_ROLE_INPUT, i);
        for (int i = 0; i < n_tg; i++)
            if (!(tg[i] = tg_dataset_values(d, q, TG_ROLE_TARGET, i))) all_targets = 0;
        int half = T > 1 ? T / 2 : T;
        int have_carry = 0;
        for (int t0 = 0; t0 < T; t0 += half) {
            int steps = t0 + half > T ? T - t0 : half;
            tg_tape_reset(tape);
            tg_params_zero_grad(ps);
            tg_unroll u = {.params = ps, .batch = B, .t0 = t0, .steps = steps, .seq_steps = T, .inputs = in,
                           .targets = all_targets ? tg : NULL,
                           .state0 = have_carry ? (const tg_real *const *)carry : NULL};
            st = tg_model_unroll(m, tape, &u);
            check_failed(ctx, st, "unroll");
            if (st) break;
            for (int s = 0; s < n_states; s++) {
                size_t n = tg_size(u.state[s]);
                if (!carry[s]) carry[s] = malloc(n * sizeof(tg_real));
                memcpy(carry[s], tg_data(u.state[s]), n * sizeof(tg_real));
            }
            have_carry = 1;
            if (u.loss) {
                st = tg_backward(tape, u.loss);
                check_failed(ctx, st, "backward");
                if (st) break;
                double norm;
                check_failed(ctx, tg_optim_step(opt, &norm), "optim_step");
            }
            check_failed(ctx, tg_tape_check_finite(tape, u.loss), "check_finite");
            tg_dump_opts o = {.grads = u.loss != NULL, .fold = t0 & 1, .loss = u.loss, .title = "fuzz"};
            for (int f = TG_DUMP_TEXT; f <= TG_DUMP_DOT; f++)
                check_failed(ctx, tg_tape_dump(tape, devnull, f, &o), "dump");
        }
        for (int s = 0; s < n_states; s++) {
            free(carry[s]);
            carry[s] = NULL;
        }
    }
    free(in);
    free(tg);
out:
    free(carry);
    tg_optim_free(opt);
    tg_tape_free(tape);
    tg_dataset_free(d);
    tg_params_free(ps);
    tg_model_free(m);
    tg_ctx_free(ctx);
    if (b.live) {
        fprintf(stderr, "fuzz_all: %zu bytes still held after freeing everything\n", b.live);
        abort();
    }
    return 0;
}
