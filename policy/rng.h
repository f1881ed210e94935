/* rng.h — deterministic random numbers (splitmix64 + Box-Muller), no allocation. */
#ifndef VLAD_POLICY_RNG_H
#define VLAD_POLICY_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct vlad_rng {
    uint64_t s;
    int has_spare;
    double spare;
} vlad_rng;

static inline void vlad_rng_seed(vlad_rng *r, uint64_t seed) {
    r->s = seed;
    r->has_spare = 0;
    r->spare = 0;
}

static inline uint64_t vlad_rng_u64(vlad_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1). */
static inline double vlad_rng_uniform(vlad_rng *r) {
    return ((double)(vlad_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal. */
static inline double vlad_rng_normal(vlad_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u = vlad_rng_uniform(r), v = vlad_rng_uniform(r);
    double m = sqrt(-2.0 * log(u));
    r->spare = m * sin(6.283185307179586 * v);
    r->has_spare = 1;
    return m * cos(6.283185307179586 * v);
}

#endif
