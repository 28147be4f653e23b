/* size.c — "256M", "1.5G", "4096" as bytes: the form of a memory budget on the
 * command line and in the bindings.  Integer arithmetic only, so "1.1G" is
 * the same number of bytes on every machine and an overflow is caught, not
 * rounded. */
#include "tg_internal.h"

#include <ctype.h>
#include <stdint.h>

static tg_status bad_size(tg_ctx *ctx, const char *text, const char *why)
{
    return tg_error(ctx, TG_ERR_ARG,
                    "size '%.64s'%s: %s; a size is a number of bytes with an optional K, M, G or T "
                    "(powers of 1024) and an optional B, such as 4096, 64K, 256M or 1.5G",
                    text, strlen(text) > 64 ? "..." : "", why);
}

tg_status tg_parse_size(tg_ctx *ctx, const char *text, size_t *bytes)
{
    if (!ctx) return TG_ERR_ARG;
    if (!text || !bytes) return tg_error(ctx, TG_ERR_ARG, "parse_size: text and bytes are required");
    const char *p = text;
    if (*p == '-') return bad_size(ctx, text, "a size cannot be negative");
    if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
        return bad_size(ctx, text, *p ? "it does not start with a digit" : "it is empty");
    /* whole part, exactly, in 64 bits */
    uint64_t whole = 0;
    for (; isdigit((unsigned char)*p); p++) {
        if (whole > (UINT64_MAX - 9) / 10) return bad_size(ctx, text, "it is too large");
        whole = whole * 10 + (uint64_t)(*p - '0');
    }
    /* fraction: at most 18 digits kept (more are below one byte of a terabyte) */
    uint64_t frac = 0, frac_scale = 1;
    int frac_digits = 0;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return bad_size(ctx, text, "a digit must follow the point");
        for (; isdigit((unsigned char)*p); p++)
            if (frac_digits < 18) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                frac_scale *= 10;
                frac_digits++;
            }
    }
    int shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    case 't': case 'T': shift = 40; p++; break;
    default: break;
    }
    if (shift && *p == 'i') p++; /* KiB, MiB: the same powers of 1024 */
    if (*p == 'B' || *p == 'b') p++;
    if (*p) return bad_size(ctx, text, "unexpected characters after the number");
    if (shift == 0 && frac) return bad_size(ctx, text, "a number of bytes must be whole");
    if (whole > (UINT64_MAX >> shift)) return bad_size(ctx, text, "it is too large");
    uint64_t total = whole << shift;
    /* frac / frac_scale of 2^shift bytes, rounded down; frac < frac_scale <= 10^18 < 2^60, and
     * 2^shift <= 2^40, so the product needs 128 bits */
    unsigned __int128 part = (unsigned __int128)frac * ((uint64_t)1 << shift) / frac_scale;
    if ((uint64_t)part > UINT64_MAX - total) return bad_size(ctx, text, "it is too large");
    total += (uint64_t)part;
    if (total > SIZE_MAX) return bad_size(ctx, text, "it is too large for this machine");
    *bytes = (size_t)total;
    return TG_OK;
}
