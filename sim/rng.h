/* rng.h — the simulator's own seeded random numbers (xoshiro256** seeded by splitmix64).
 * Deterministic across runs and machines; nothing here reads the time. */
#ifndef VLAD_SIM_RNG_H
#define VLAD_SIM_RNG_H

#include <stdint.h>

typedef struct vlad_rng {
    uint64_t s[4];
} vlad_rng;

/* One splitmix64 step: advances *x and returns a well-mixed 64-bit value. */
static inline uint64_t vlad_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline void vlad_rng_seed(vlad_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = vlad_splitmix64(&x);
}

static inline uint64_t vlad_rng_next(vlad_rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t res = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return res;
}

/* Uniform in [0, 1). */
static inline double vlad_rng_unif(vlad_rng *r) {
    return (double)(vlad_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [a, b). */
static inline double vlad_rng_range(vlad_rng *r, double a, double b) {
    return a + (b - a) * vlad_rng_unif(r);
}

/* Uniform integer in [0, n), n > 0. */
static inline int vlad_rng_int(vlad_rng *r, int n) { return (int)(vlad_rng_unif(r) * n); }

#endif
