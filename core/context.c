/* context.c — the context every object hangs off: allocator, error message,
 * random generator and op table.  Nothing in tapegrad is global. */
#include "tg_internal.h"
#include <math.h>
#include <stdio.h>

static void *default_alloc(size_t size, void *user) { (void)user; return malloc(size); }
static void *default_realloc(void *p, size_t old, size_t size, void *user)
{
    (void)old; (void)user;
    return realloc(p, size);
}
static void default_free(void *p, size_t size, void *user) { (void)size; (void)user; free(p); }

void tg_assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: tapegrad internal error: assertion '%s' failed\n", file, line, what);
    abort();
}

void *tg_alloc(tg_ctx *ctx, size_t size)
{
    void *p = ctx->alloc.alloc(size ? size : 1, ctx->alloc.user);
    if (!p) tg_error(ctx, TG_ERR_NOMEM, "out of memory (asked for %zu bytes)", size);
    return p;
}

void *tg_realloc(tg_ctx *ctx, void *p, size_t old, size_t size)
{
    void *q;
    if (!p) return tg_alloc(ctx, size);
    if (ctx->alloc.realloc) {
        q = ctx->alloc.realloc(p, old, size ? size : 1, ctx->alloc.user);
    } else {
        q = ctx->alloc.alloc(size ? size : 1, ctx->alloc.user);
        if (q) {
            memcpy(q, p, old < size ? old : size);
            ctx->alloc.free(p, old, ctx->alloc.user);
        }
    }
    if (!q) tg_error(ctx, TG_ERR_NOMEM, "out of memory (asked for %zu bytes)", size);
    return q;
}

void tg_free(tg_ctx *ctx, void *p, size_t size)
{
    if (p) ctx->alloc.free(p, size, ctx->alloc.user);
}

char *tg_strdup(tg_ctx *ctx, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = tg_alloc(ctx, n);
    if (d) memcpy(d, s, n);
    return d;
}

void tg_strfree(tg_ctx *ctx, char *s)
{
    if (s) tg_free(ctx, s, strlen(s) + 1);
}

/* A status is never left without words: an empty message (a registered op's
 * shape function that wrote none, say) becomes the status's name and the
 * function that raised it. */
static tg_status verror_in(const char *func, tg_ctx *ctx, tg_status s, const char *fmt, va_list ap)
{
    if (!ctx) return s;
    ctx->status = s;
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    if (s != TG_OK && !ctx->errmsg[0])
        snprintf(ctx->errmsg, sizeof ctx->errmsg, "%s%s%s", tg_status_name(s), func ? " in " : "", func ? func : "");
    return s;
}

tg_status tg_verror(tg_ctx *ctx, tg_status s, const char *fmt, va_list ap)
{
    return verror_in(NULL, ctx, s, fmt, ap);
}

tg_status tg_error_in(const char *func, tg_ctx *ctx, tg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_in(func, ctx, s, fmt, ap);
    va_end(ap);
    return s;
}

/* Like sqlite3_errmsg(NULL): a caller that did not check tg_ctx_new() still
 * gets a reason rather than a crash. */
tg_status tg_status_last(const tg_ctx *ctx) { return ctx ? ctx->status : TG_ERR_ARG; }
const char *tg_errmsg(const tg_ctx *ctx)
{
    if (!ctx)
        return "the context is NULL (tg_ctx_new returns NULL when out of memory "
               "or when the program's tg_real is not the library's)";
    return ctx->status ? ctx->errmsg : "";
}
void tg_clear_error(tg_ctx *ctx)
{
    if (!ctx) return;
    ctx->status = TG_OK;
    ctx->errmsg[0] = 0;
}

const char *tg_status_name(tg_status s)
{
    static const char *const names[] = {
        "ok", "bad argument", "shape mismatch", "out of memory", "not found",
        "non-finite value", "parse error", "i/o error", "limit exceeded",
        "gradient check failed",
    };
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown status";
}

const char *tg_shape_str(char *buf, int rows, int cols, int ndim)
{
    if (ndim == 1) snprintf(buf, 32, "[%d]", rows);
    else snprintf(buf, 32, "[%d, %d]", rows, cols);
    return buf;
}

/* ---- random numbers: xoshiro256**, seeded through splitmix64 ------------ */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void tg_seed(tg_ctx *ctx, uint64_t seed)
{
    if (!ctx) return;
    for (int i = 0; i < 4; i++) ctx->rng[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(tg_ctx *ctx)
{
    uint64_t *s = ctx->rng;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return r;
}

double tg_rand_uniform(tg_ctx *ctx) { return ctx ? (double)(next_u64(ctx) >> 11) * 0x1.0p-53 : NAN; }

double tg_rand_normal(tg_ctx *ctx)
{
    /* Box-Muller; one draw per call keeps the stream simple to reproduce */
    if (!ctx) return NAN;
    double u1 = tg_rand_uniform(ctx), u2 = tg_rand_uniform(ctx);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- lifetime ------------------------------------------------------------- */
tg_status tg_optable_init(tg_ctx *ctx);
void tg_optable_free(tg_ctx *ctx);

tg_ctx *tg_ctx_new_checked(const tg_allocator *alloc, size_t real_size)
{
    if (real_size != sizeof(tg_real)) {
        fprintf(stderr, "tapegrad: this library was built for %s but the program for %s; "
                        "build both with the same REAL (pkg-config tapegrad vs tapegrad64)\n",
                TG_REAL_NAME, real_size == 8 ? "double" : "float");
        return NULL;
    }
    tg_allocator a = alloc ? *alloc
                           : (tg_allocator){default_alloc, default_realloc, default_free, NULL};
    if (!a.alloc || !a.free) return NULL;
    tg_ctx *ctx = a.alloc(sizeof *ctx, a.user);
    if (!ctx) return NULL;
    memset(ctx, 0, sizeof *ctx);
    ctx->alloc = a;
    ctx->matmul_small_mnk = TG_MATMUL_SMALL_MNK;
    ctx->matmul_mv_max = TG_MATMUL_MV_MAX;
    ctx->threads = 1;
    ctx->par_min_mnk = TG_PAR_MIN_MNK;
    tg_seed(ctx, 0x7a9e6ad);
    if (tg_optable_init(ctx) != TG_OK) {
        tg_optable_free(ctx);
        a.free(ctx, sizeof *ctx, a.user);
        return NULL;
    }
    return ctx;
}

void tg_ctx_free(tg_ctx *ctx)
{
    if (!ctx) return;
    tg_threads_free(ctx);
    tg_optable_free(ctx);
    tg_allocator a = ctx->alloc;
    a.free(ctx, sizeof *ctx, a.user);
}
