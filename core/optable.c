/* optable.c — each context's op table: the built-ins from ops/ops.def, then
 * whatever embedding code registers.  Looked up by name (uthash) when a
 * model is compiled or tg_apply() is called; the tape itself keeps op
 * pointers, so recording never hashes. */
#include "tg_internal.h"

static const tg_builtin_op *const builtins[] = {
#define TG_OP(ID, name) &tg_op_##name,
#include "ops.def"
#undef TG_OP
};
_Static_assert(sizeof builtins / sizeof builtins[0] == TG_OP_BUILTIN_COUNT,
               "ops.def and the built-in table disagree");

const tg_builtin_op *tg_builtin_at(int id)
{
    return id >= 0 && id < TG_OP_BUILTIN_COUNT ? builtins[id] : NULL;
}

static int valid_name(const char *s)
{
    if (!s || !(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return 0;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

static tg_status add_op(tg_ctx *ctx, const tg_builtin_op *def, int owned)
{
    tg_ctx *tg_hash_ctx = ctx;
    int tg_hash_oom = 0;
    if (ctx->n_ops == ctx->cap_ops) {
        int cap = ctx->cap_ops ? ctx->cap_ops * 2 : 32;
        tg_op **l = tg_realloc(ctx, ctx->op_list, (size_t)ctx->cap_ops * sizeof *l, (size_t)cap * sizeof *l);
        if (!l) return TG_ERR_NOMEM;
        ctx->op_list = l;
        ctx->cap_ops = cap;
    }
    tg_op *op = tg_alloc(ctx, sizeof *op);
    if (!op) return TG_ERR_NOMEM;
    memset(op, 0, sizeof *op);
    op->def = *def;
    op->ctx = ctx;
    if (owned) {
        if (!(op->name_owned = tg_strdup(ctx, def->name))) {
            tg_free(ctx, op, sizeof *op);
            return TG_ERR_NOMEM;
        }
        op->def.name = op->name_owned;
    }
    op->id = ctx->n_ops;
    HASH_ADD_KEYPTR(hh, ctx->ops, op->def.name, strlen(op->def.name), op);
    if (tg_hash_oom) {
        tg_strfree(ctx, op->name_owned);
        tg_free(ctx, op, sizeof *op);
        return tg_error(ctx, TG_ERR_NOMEM, "out of memory adding op '%s'", def->name);
    }
    ctx->op_list[ctx->n_ops++] = op;
    return TG_OK;
}

tg_status tg_optable_init(tg_ctx *ctx)
{
    for (int i = 0; i < TG_OP_BUILTIN_COUNT; i++) {
        tg_status s = add_op(ctx, builtins[i], 0);
        if (s) return s;
    }
    return TG_OK;
}

void tg_optable_free(tg_ctx *ctx)
{
    tg_ctx *tg_hash_ctx = ctx;
    HASH_CLEAR(hh, ctx->ops);
    for (int i = 0; i < ctx->n_ops; i++) {
        tg_strfree(ctx, ctx->op_list[i]->name_owned);
        tg_free(ctx, ctx->op_list[i], sizeof(tg_op));
    }
    tg_free(ctx, ctx->op_list, (size_t)ctx->cap_ops * sizeof *ctx->op_list);
    ctx->op_list = NULL;
    ctx->n_ops = ctx->cap_ops = 0;
}

const tg_op *tg_op_lookup(const tg_ctx *ctx, const char *name)
{
    tg_op *op = NULL;
    if (ctx && name) HASH_FIND_STR(ctx->ops, name, op);
    return op;
}

const tg_op *tg_op_by_id(const tg_ctx *ctx, int id)
{
    return ctx && id >= 0 && id < ctx->n_ops ? ctx->op_list[id] : NULL;
}

int tg_op_exists(const tg_ctx *ctx, const char *name) { return tg_op_lookup(ctx, name) != NULL; }
int tg_op_count(const tg_ctx *ctx) { return ctx ? ctx->n_ops : 0; }
const char *tg_op_name(const tg_ctx *ctx, int i)
{
    const tg_op *op = tg_op_by_id(ctx, i);
    return op ? op->def.name : NULL;
}

/* Names a model file or a dump already gives a meaning: an op called one of
 * these would read as something else (`input` and `param` are what a dump
 * shows for leaves, `B` is the batch in shapes, `t` the step in labels, the
 * rest are model-file sections, roles, init functions and number words). */
static const char *const reserved_names[] = {
    "input", "param", "B", "t", "name", "description", "dims", "params", "inputs", "targets", "state",
    "step", "outputs", "loss", "loss_at", "final", "constants", "shape", "init", "target", "output", "dim",
    "zeros", "ones", "uniform", "normal", "xavier", "nan", "inf", "true", "false", "null",
};

tg_status tg_op_register(tg_ctx *ctx, const tg_op_spec *spec)
{
    if (!ctx) return TG_ERR_ARG;
    if (!spec) return tg_error(ctx, TG_ERR_ARG, "op_register: spec is NULL");
    if (!valid_name(spec->name))
        return tg_error(ctx, TG_ERR_ARG, "op_register: '%.64s' is not a valid op name "
                        "(letters, digits and _, not starting with a digit)",
                        spec->name ? spec->name : "(null)");
    if (strlen(spec->name) > 64)
        return tg_error(ctx, TG_ERR_ARG, "op_register: op name '%.64s...' is longer than 64 characters",
                        spec->name);
    for (size_t i = 0; i < sizeof reserved_names / sizeof reserved_names[0]; i++)
        if (!strcmp(spec->name, reserved_names[i]))
            return tg_error(ctx, TG_ERR_ARG, "op_register: '%s' is reserved by the model language; "
                            "choose another op name", spec->name);
    /* an op without a backward would leave its inputs' gradients silently
     * NULL in every sweep: refuse it here, where the mistake is */
    if (!spec->shape || !spec->forward || !spec->backward)
        return tg_error(ctx, TG_ERR_ARG, "op %s has no %s", spec->name,
                        !spec->shape ? "shape function" : !spec->forward ? "forward" : "backward");
    if (tg_op_lookup(ctx, spec->name))
        return tg_error(ctx, TG_ERR_ARG, "op_register: an op named '%s' already exists", spec->name);
    if (spec->arity < -1 || spec->arity > 64 || spec->n_attrs < 0 || spec->n_attrs > TG_MAX_ATTRS)
        return tg_error(ctx, TG_ERR_ARG, "op_register: '%s': arity must be -1..64 and attributes 0..%d",
                        spec->name, TG_MAX_ATTRS);
    tg_builtin_op def = {
        .name = spec->name,
        .arity = spec->arity,
        .n_attrs = spec->n_attrs,
        .differentiable = true,
        .shape = spec->shape,
        .forward = spec->forward,
        .backward = spec->backward,
    };
    return add_op(ctx, &def, 1);
}

tg_status tg_op_check_args(tg_ctx *ctx, const tg_builtin_op *d, int n, int n_attrs)
{
    if (d->arity >= 0 ? n != d->arity : n < 1)
        return tg_error(ctx, TG_ERR_ARG, "%s: takes %s%d input%s, given %d", d->name,
                        d->arity < 0 ? "at least " : "", d->arity < 0 ? 1 : d->arity,
                        d->arity == 1 || d->arity < 0 ? "" : "s", n);
    if (n_attrs != d->n_attrs) /* a missing attribute must not become a silent 0 */
        return tg_error(ctx, TG_ERR_ARG, "%s: takes %d attribute%s, given %d", d->name,
                        d->n_attrs, d->n_attrs == 1 ? "" : "s", n_attrs);
    return TG_OK;
}

tg_status tg_op_shape(tg_ctx *ctx, const char *name, int n, const int (*in)[2], int n_attrs,
                      const double *attrs, int out[2])
{
    if (!ctx) return TG_ERR_ARG;
    if (!name) return tg_error(ctx, TG_ERR_ARG, "tg_op_shape: op name is NULL");
    const tg_op *op = tg_op_lookup(ctx, name);
    if (!op) return tg_error(ctx, TG_ERR_NOTFOUND, "unknown op '%s'", name);
    const tg_builtin_op *d = &op->def;
    tg_status st = tg_op_check_args(ctx, d, n, n_attrs);
    if (st) return st;
    if ((n > 0 && !in) || !out || (n_attrs > 0 && !attrs))
        return tg_error(ctx, TG_ERR_ARG, "tg_op_shape: %s: the shape, attribute or output array is NULL", name);
    double a[TG_MAX_ATTRS] = {0};
    for (int i = 0; i < n_attrs; i++) a[i] = attrs[i];
    char err[256] = "";
    for (int i = 0; i < n; i++)
        if (in[i][0] < 1 || in[i][1] < 1)
            return tg_error(ctx, TG_ERR_SHAPE, "%s: input %d has an empty shape", d->name, i + 1);
    int bad = d->shape(n, in, a, out, err, sizeof err) != 0;
    err[sizeof err - 1] = 0; /* a registered shape function may not terminate it */
    if (bad) return tg_error(ctx, TG_ERR_SHAPE, "%s: %s", d->name, err[0] ? err : "shapes do not fit");
    return TG_OK;
}
