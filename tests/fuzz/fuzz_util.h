/* fuzz_util.h — what the libFuzzer harnesses share: a context per input,
 * the shipped models the data, params and expression harnesses read against
 * (embedded, so a harness runs from any directory), and a path for
 * path-based loaders (an anonymous memfd seen as /proc/self/fd/N). */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include "tg_model_internal.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* models/elman.yaml, models/mlp.yaml and a two-state model with a 1-D and a
 * [1, n] parameter (the shapes params files treat specially) */
static const char fz_elman[] =
    "name: elman\n"
    "dims: {input: 2, hidden: 2, output: 1}\n"
    "params:\n"
    "  U: {shape: [hidden, input], init: uniform(-0.5, 0.5)}\n"
    "  W: {shape: [hidden, hidden], init: [[0.1, -0.4], [0.6, 0.3]]}\n"
    "  b: {shape: [hidden], init: zeros}\n"
    "  V: {shape: [output, hidden], init: xavier}\n"
    "  c: {shape: [output], init: zeros}\n"
    "inputs:  {x: [input]}\n"
    "targets: {y: [output]}\n"
    "state:   {h: {shape: [hidden], init: zeros}}\n"
    "step:\n"
    "  - a = U @ x + W @ h + b\n"
    "  - h = tanh(a)\n"
    "  - o = tanh(V @ h + c)\n"
    "outputs: [o]\n"
    "loss: squared_error(o, y)\n";
static const char fz_mlp[] =
    "name: mlp\n"
    "dims: {input: 4, hidden: 8, classes: 3}\n"
    "params:\n"
    "  W1: [hidden, input]\n"
    "  b1: [hidden]\n"
    "  W2: [classes, hidden]\n"
    "  b2: [classes]\n"
    "inputs:  {x: [input]}\n"
    "targets: {y: [classes], z: [1]}\n"
    "step:\n"
    "  - h = tanh(W1 @ x + b1)\n"
    "  - logits = W2 @ h + b2\n"
    "outputs: [logits]\n"
    "loss: softmax_cross_entropy(logits, y) + squared_error(slice(logits, 0, 1), z)\n";
static const char fz_two[] =
    "name: two\n"
    "dims: {n: 3, m: 1}\n"
    "params:\n"
    "  w: {shape: [m, n], init: ones}\n"
    "  v: {shape: [n], init: 0.5}\n"
    "  u: {shape: [n, n], init: normal(0, 0.1)}\n"
    "inputs:  {x: [n], k: [m]}\n"
    "targets: {y: [m]}\n"
    "state:   {s: {shape: [n], init: [1, 2, 3]}, r: [m]}\n"
    "step:\n"
    "  - s = tanh(u @ s + v * x)\n"
    "  - r = w @ s + k\n"
    "outputs: [r, s]\n"
    "loss: squared_error(r, y)\n";

/* index variables and a target given once per sequence (models/README.md) */
static const char fz_index[] =
    "name: index\n"
    "dims: {vocab: 5, n: 2}\n"
    "params: {E: [vocab, n], V: [vocab, n]}\n"
    "constants: {K: {shape: [n], init: 2}}\n"
    "inputs:  {ch: {index: vocab}}\n"
    "targets: {next: {index: vocab}, y: {shape: [n], per: sequence}}\n"
    "state:   {h: [n], hb: {shape: [n], direction: reverse}}\n"
    "step:\n"
    "  - h = tanh(embed(E, ch) + h / K)\n"
    "  - hb = tanh(embed(E, ch) + hb)\n"
    "  - z = V @ (h + hb)\n"
    "final:\n"
    "  - p = final(h) - y\n"
    "outputs: [z]\n"
    "loss: sum(p * p)\n";

#define FZ_N_MODELS 4
static const char *const fz_models[FZ_N_MODELS] = {fz_elman, fz_mlp, fz_two, fz_index};

static inline tg_model *fz_model(tg_ctx *ctx, int i)
{
    tg_model *m = tg_model_parse(ctx, "fuzz-model.yaml", fz_models[i], strlen(fz_models[i]), NULL, 0);
    if (!m) {
        fprintf(stderr, "fuzz: the built-in model %d does not load: %s\n", i, tg_errmsg(ctx));
        abort();
    }
    return m;
}

/* A failed call must leave a message naming the file (or at least one). */
static inline void fz_expect_message(tg_ctx *ctx, const char *what)
{
    if (!tg_status_last(ctx) || !tg_errmsg(ctx)[0]) {
        fprintf(stderr, "fuzz: %s failed without a message\n", what);
        abort();
    }
}

/* An fd holding data[0..size), and its path; close the fd when done. */
static inline int fz_memfd(const uint8_t *data, size_t size, char *path, size_t len)
{
    int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            perror("write");
            abort();
        }
        off += (size_t)w;
    }
    snprintf(path, len, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
