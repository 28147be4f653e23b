/* train_char.c — train a character model through the library's trainer:
 * truncated BPTT, a validation split, a checkpoint, and a resume that goes
 * on exactly where the first run stopped.  Usage: train_char MODEL TEXT CKPT */
#include <stdio.h>
#include "tapegrad.h"

static int report(const tg_train_progress *p, void *user)
{
    if (p->epoch_end) printf("epoch %d: loss %.4f, validation %.4f\n", p->epoch, p->loss, p->valid_loss);
    return 0;
}

/* Trains `steps` more steps (0: to the end), resuming from ckpt if given. */
static int run(const char *model, const char *text, const char *ckpt, int steps, int resume)
{
    tg_ctx *ctx = tg_ctx_new(NULL);
    tg_checkpoint *ck = resume ? tg_checkpoint_open(ctx, ckpt) : NULL;
    tg_trainset *data = tg_trainset_text(ctx, text, ck ? tg_checkpoint_vocab(ck) : NULL);
    tg_trainset *valid = data ? tg_trainset_split(data, 0.1) : NULL;
    tg_dim dims[] = {{"vocab", tg_vocab_size(tg_trainset_vocab(data))}, {"hidden", 32}};
    tg_model *m = valid ? tg_model_load(ctx, model, dims, 2) : NULL;
    tg_params *ps = tg_params_new(ctx);
    tg_train_opts o = tg_train_defaults();
    o.optim.lr = 0.01, o.optim.clip = 5;
    o.epochs = 4, o.batch = 4, o.bptt = 16, o.max_steps = (uint64_t)steps;
    tg_trainer *tr = m && !tg_model_init_params(m, ps, 1) ? tg_trainer_new(m, ps, &o) : NULL;
    int ok = tr && !tg_trainer_set_data(tr, data, valid) && (!ck || !tg_trainer_resume(tr, ck));
    if (ok) tg_trainer_set_progress(tr, report, NULL);
    ok = ok && !tg_trainer_run(tr) && !tg_trainer_save(tr, ckpt);
    if (ok) printf("%s at step %llu\n", resume ? "resumed, stopped" : "stopped", (unsigned long long)tg_trainer_progress(tr)->step);
    else fprintf(stderr, "train_char: %s\n", tg_errmsg(ctx));
    tg_trainer_free(tr), tg_params_free(ps), tg_model_free(m);
    tg_trainset_free(valid), tg_trainset_free(data), tg_checkpoint_close(ck), tg_ctx_free(ctx);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) return fprintf(stderr, "usage: train_char MODEL TEXT CKPT\n"), 2;
    /* 10 steps, a checkpoint, then the rest of the run from it */
    return run(argv[1], argv[2], argv[3], 10, 0) || run(argv[1], argv[2], argv[3], 0, 1);
}
