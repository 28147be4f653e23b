/* fuzz_expr.c — the equation parser alone (tgm_compile, tgm_const_expr,
 * tgm_init_expr), without YAML around it.  The input is lines:
 *   NAME = EXPR        an equation of `step`
 *   loss: EXPR         the loss
 *   out: NAME          an output
 *   const: EXPR        a constant expression (a shape entry)
 *   init: EXPR         an init (`uniform(-0.5, 0.5)`, `0.1`, `xavier`)
 * compiled against a model declaring the names the shipped models use (its
 * states are those the input assigns).  Lines are passed as plain scalars
 * with their true positions, embedded NULs included (a YAML "\0" escape can
 * make one), so error columns are exercised too. */
#include "fuzz_util.h"
#include <math.h>
#include <yaml.h>

#define MAX_LINES 2048

static const char header[] =
    "name: expr\n"
    "dims: {input: 2, hidden: 4, output: 2, hidden1: 4, hidden2: 3, classes: 3}\n"
    "params:\n"
    "  U: [hidden, input]\n  W: [hidden, hidden]\n  b: [hidden]\n  V: [output, hidden]\n  d: [output]\n"
    "  Wf: [hidden, input + hidden]\n  Wi: [hidden, input + hidden]\n  Wg: [hidden, input + hidden]\n"
    "  Wq: [hidden, input + hidden]\n  bf: [hidden]\n  bi: [hidden]\n  bg: [hidden]\n  bq: [hidden]\n"
    "  Wz: [hidden, input]\n  Wr: [hidden, input]\n  Wn: [hidden, input]\n  Uz: [hidden, hidden]\n"
    "  Ur: [hidden, hidden]\n  Un: [hidden, hidden]\n  bz: [hidden]\n  br: [hidden]\n  bn: [hidden]\n"
    "  U1: [hidden1, input]\n  W1: [hidden1, hidden1]\n  b1: [hidden1]\n  U2: [hidden2, hidden1]\n"
    "  W2: [hidden2, hidden2]\n  b2: [hidden2]\n  w: [1, 1]\n"
    "inputs:  {x: [input], k: [1]}\n"
    "targets: {y: [output], t: [1]}\n";
static const char *const states[] = {"h", "c", "h1", "h2", "s"};
#define N_STATES 5

typedef struct line { size_t off, len; int role; } line;
enum { L_EQ, L_LOSS, L_OUT, L_CONST, L_INIT };

static int assigns(const char *s, size_t len, const char *name)
{
    size_t i = 0, n = strlen(name);
    while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
    if (len - i < n || memcmp(s + i, name, n)) return 0;
    i += n;
    while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
    return i < len && s[i] == '=';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) return 0;
    const char *text = (const char *)data;
    /* lines, as yaml.c counts them: \n, \r\n or a lone \r */
    static line lines[MAX_LINES];
    static size_t line_start[MAX_LINES + 1];
    int n_lines = 0;
    size_t i = 0;
    while (n_lines < MAX_LINES) {
        size_t s = i;
        while (i < size && text[i] != '\n' && text[i] != '\r') i++;
        line_start[n_lines] = s;
        lines[n_lines++] = (line){s, i - s, L_EQ};
        if (i >= size) break;
        i += text[i] == '\r' && i + 1 < size && text[i + 1] == '\n' ? 2 : 1;
    }
    if (i < size) return 0; /* too many lines */

    /* the declarations, with the states the input assigns */
    char model[sizeof header + 256];
    size_t ml = (size_t)snprintf(model, sizeof model, "%s", header);
    int any_state = 0;
    for (int s = 0; s < N_STATES; s++) {
        int on = 0;
        for (int k = 0; k < n_lines && !on; k++) on = assigns(text + lines[k].off, lines[k].len, states[s]);
        if (!on) continue;
        ml += (size_t)snprintf(model + ml, sizeof model - ml, "%s  %s: [%s]\n", any_state ? "" : "state:\n",
                               states[s], s == 2 ? "hidden1" : s == 3 ? "hidden2" : s == 4 ? "1" : "hidden");
        any_state = 1;
    }
    ml += (size_t)snprintf(model + ml, sizeof model - ml, "step:\n");
    /* the template's own step assigns each state to itself */
    for (int s = 0; s < N_STATES; s++) {
        char decl[16];
        snprintf(decl, sizeof decl, "  %s: [", states[s]);
        if (strstr(model, decl))
            ml += (size_t)snprintf(model + ml, sizeof model - ml, "  - %s = %s\n", states[s], states[s]);
    }
    if (!any_state) ml += (size_t)snprintf(model + ml, sizeof model - ml, "  - e0 = x\n");

    tg_ctx *ctx = tg_ctx_new(NULL);
    if (!ctx) abort();
    tg_model *tmpl = tg_model_parse(ctx, "expr.yaml", model, ml, NULL, 0);
    if (!tmpl) {
        fprintf(stderr, "fuzz_expr: the template does not load: %s\n%s", tg_errmsg(ctx), model);
        abort();
    }

    /* the document: node 0 the step list, node 1 the outputs, then a plain
     * scalar per line at its own position */
    tgm_ydoc d;
    memset(&d, 0, sizeof d);
    d.ctx = ctx;
    d.file = "fuzz.yaml";
    d.text = text;
    d.text_len = size;
    d.line_start = line_start;
    d.n_lines = n_lines;
    d.root = -1;
    d.cap = n_lines + 2;
    d.nodes = calloc((size_t)d.cap, sizeof *d.nodes);
    d.pool_cap = size + (size_t)n_lines + 1;
    d.pool = malloc(d.pool_cap);
    for (int k = 0; k < 2; k++)
        d.nodes[k] = (tgm_ynode){.kind = TGM_Y_SEQ, .style = 0, .line = 1, .col = 1, .first = -1, .next = -1};
    d.n = 2;
    int last[2] = {-1, -1}, loss = -1;
    static const char *const prefix[] = {NULL, "loss:", "out:", "const:", "init:"};
    for (int k = 0; k < n_lines; k++) {
        const char *s = text + lines[k].off;
        size_t len = lines[k].len, skip = 0;
        int role = L_EQ;
        for (int r = 1; r < 5; r++) {
            size_t pl = strlen(prefix[r]);
            if (len >= pl && !memcmp(s, prefix[r], pl)) role = r, skip = pl;
        }
        while (skip < len && s[skip] == ' ') skip++;
        int id = d.n++;
        tgm_ynode *n = &d.nodes[id];
        *n = (tgm_ynode){.kind = TGM_Y_SCALAR, .style = YAML_PLAIN_SCALAR_STYLE, .line = k + 1,
                         .col = (int)skip + 1, .first = -1, .next = -1, .str = d.pool_len, .len = len - skip};
        memcpy(d.pool + d.pool_len, s + skip, len - skip);
        d.pool[d.pool_len + len - skip] = 0;
        d.pool_len += len - skip + 1;
        lines[k].role = role;
        if (role == L_EQ || role == L_OUT) {
            int parent = role == L_EQ ? 0 : 1;
            if (last[parent] < 0) d.nodes[parent].first = id;
            else d.nodes[last[parent]].next = id;
            last[parent] = id;
            d.nodes[parent].count++;
        } else if (role == L_LOSS)
            loss = id;
    }

    /* a model with the template's declarations and nothing compiled yet */
    tg_model m;
    memset(&m, 0, sizeof m);
    m.ctx = ctx;
    m.pool.ctx = ctx;
    m.file = "fuzz.yaml";
    m.name = "expr";
    m.loss_slot = -1;
    m.t_slot = -1;
    for (int r = 0; r < 6; r++) {
        m.vars[r] = tmpl->vars[r];
        m.n_vars[r] = tmpl->n_vars[r];
    }
    if (d.nodes[0].count > 0) {
        tg_status st = tgm_compile(&m, &d, 0, -1, d.nodes[1].count ? 1 : -1, loss);
        if (st) {
            fz_expect_message(ctx, "tgm_compile");
            if (st != TG_ERR_NOMEM && strncmp(tg_errmsg(ctx), "fuzz.yaml:", 10)) {
                fprintf(stderr, "fuzz_expr: unpositioned message: %s\n", tg_errmsg(ctx));
                abort();
            }
        } else {
            /* what the unroller trusts: every slot read is in range */
            for (int k = 0; k < m.n_step; k++)
                for (int j = 0; j < m.step[k].n_in; j++)
                    if (m.step[k].in[j] < 0 || m.step[k].in[j] >= m.n_slots) abort();
            if (m.n_step > 0 && m.max_in > TGM_MAX_ARGS) abort();
        }
    }
    for (int k = 0; k < n_lines; k++) {
        int node = 2 + k;
        if (lines[k].role == L_CONST) {
            double v;
            if (tgm_const_expr(&m, &d, node, &v) == TG_OK && !isfinite(v)) {
                fprintf(stderr, "fuzz_expr: a constant expression gave %g\n", v);
                abort();
            }
        } else if (lines[k].role == L_INIT) {
            char fname[TGM_MAX_NAME + 1];
            double args[4];
            int n_args;
            size_t off;
            tgm_init_expr(&m, &d, node, fname, sizeof fname, &off, args, 4, &n_args);
        }
    }
    tg_free(ctx, m.cslots, (size_t)m.n_cslots * sizeof *m.cslots);
    tgm_pool_free(&m.pool);
    free(d.nodes);
    free(d.pool);
    tg_model_free(tmpl);
    tg_ctx_free(ctx);
    return 0;
}
