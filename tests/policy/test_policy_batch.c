/* Tests of policy/batch.h: a batch of n inferences equals n single inferences
 * (vlad_encode_prefix + vlad_sample_actions on a fresh runstate) to 1e-5 for n = 1, 2, 3, 5,
 * with different prompts (lengths 0 .. past max_prompt_tokens), images, states, seeds and
 * explicit noise; on the default checkpoint, the BF16 2-camera fixture and random non-default
 * configs (F32 and BF16, head sizes on and off the packed attention kernel); 1 and 2 threads.
 * Bad arguments return errors and leave the output alone; a repeated call allocates nothing
 * and gives bit-identical output (malloc & co. wrapped, alloc_count.h). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_count.h"
#include "batch.h"
#include "config.h"
#include "engine.h"
#include "model.h"
#include "policy_testutil.h"
#include "rng.h"

#define TOL 1e-5
#define MAX_ITEMS 8

static const char *k_prompts[] = {
    "touch the red ball",
    "",
    "a",
    "push the blue cube to the left edge of the table, then stop there", /* > 32 bytes */
    "whack",
    "track the green target",
    "reach",
    "which colour?",
};

/* Inputs of up to MAX_ITEMS items for model config c, all different, deterministic. */
typedef struct inputs {
    int n_cam, img_bytes, sd, ha;
    uint8_t *img[MAX_ITEMS][16];
    const uint8_t *imgp[MAX_ITEMS][16];
    float *state[MAX_ITEMS];
    float *noise[MAX_ITEMS];
    vlad_batch_item items[MAX_ITEMS];
} inputs;

static void make_inputs(inputs *in, const vlad_config *c, uint64_t seed) {
    memset(in, 0, sizeof *in);
    in->n_cam = c->n_cameras;
    in->img_bytes = c->image_size * c->image_size * 3;
    in->sd = c->state_dim;
    in->ha = c->chunk_size * c->action_dim;
    vlad_rng r;
    vlad_rng_seed(&r, seed);
    for (int i = 0; i < MAX_ITEMS; i++) {
        for (int k = 0; k < in->n_cam; k++) {
            in->img[i][k] = malloc((size_t)in->img_bytes);
            assert_non_null(in->img[i][k]);
            for (int j = 0; j < in->img_bytes; j++)
                in->img[i][k][j] = (uint8_t)(vlad_rng_u64(&r) >> 56);
            in->imgp[i][k] = in->img[i][k];
        }
        in->state[i] = malloc((size_t)in->sd * sizeof(float));
        assert_non_null(in->state[i]);
        for (int j = 0; j < in->sd; j++)
            in->state[i][j] = (float)vlad_rng_normal(&r);
        /* every other item brings its own noise, the others draw it from their seed */
        if (i % 2 == 0) {
            in->noise[i] = malloc((size_t)in->ha * sizeof(float));
            assert_non_null(in->noise[i]);
            for (int j = 0; j < in->ha; j++)
                in->noise[i][j] = (float)vlad_rng_normal(&r);
        }
        const char *p = k_prompts[i % (sizeof k_prompts / sizeof k_prompts[0])];
        in->items[i] = (vlad_batch_item){
            .images = in->imgp[i],
            .prompt = i == 6 ? NULL : p, /* NULL prompt = empty, whatever the length */
            .prompt_len = strlen(p),
            .state = in->state[i],
            .noise = in->noise[i],
            .seed = 1000003ull * (uint64_t)(i + 1) + seed,
        };
    }
}

static void free_inputs(inputs *in) {
    for (int i = 0; i < MAX_ITEMS; i++) {
        for (int k = 0; k < in->n_cam; k++)
            free(in->img[i][k]);
        free(in->state[i]);
        free(in->noise[i]);
    }
}

/* One item alone on a fresh runstate. */
static void single(const vlad_model *m, const vlad_batch_item *it, int threads, float *out) {
    vlad_err err = {0};
    vlad_runstate_opts o = {.n_threads = threads};
    vlad_runstate *rs = vlad_runstate_new(m, &o, &err);
    assert_non_null(rs);
    if (vlad_encode_prefix(rs, it->images, it->prompt, it->prompt_len, &err) < 0)
        fail_msg("encode_prefix: %s", err.msg);
    if (vlad_sample_actions(rs, it->state, it->noise, it->seed, out, &err) != 0)
        fail_msg("sample_actions: %s", err.msg);
    vlad_runstate_free(rs);
}

/* For n in {1, 2, 3, 5}: batched == one by one, items taken from a rotating window so that
 * each n sees other combinations; then a repeat at the same n allocates nothing and gives
 * bit-identical actions. */
static void check_model(const char *what, const vlad_model *m, int threads, uint64_t seed) {
    const vlad_config *c = &m->cfg;
    inputs in;
    make_inputs(&in, c, seed);
    int ha = in.ha;
    float *ref = malloc((size_t)MAX_ITEMS * ha * sizeof(float));
    float *got = malloc((size_t)MAX_ITEMS * ha * sizeof(float));
    float *again = malloc((size_t)MAX_ITEMS * ha * sizeof(float));
    assert_non_null(ref);
    assert_non_null(got);
    assert_non_null(again);
    for (int i = 0; i < MAX_ITEMS; i++)
        single(m, &in.items[i], threads, ref + (size_t)i * ha);
    vlad_err err = {0};
    vlad_runstate_opts o = {.n_threads = threads};
    vlad_batch *b = vlad_batch_new(m, 5, &o, &err);
    if (!b)
        fail_msg("batch_new: %s", err.msg);
    assert_int_equal(vlad_batch_max(b), 5);
    const int ns[] = {1, 2, 3, 5};
    for (size_t q = 0; q < sizeof ns / sizeof ns[0]; q++) {
        int n = ns[q], first = (int)q; /* n = 5: items 3..7 */
        vlad_batch_item items[MAX_ITEMS];
        for (int i = 0; i < n; i++)
            items[i] = in.items[first + i];
        if (vlad_batch_infer(b, n, items, got, &err) != VLAD_OK)
            fail_msg("%s n=%d: %s", what, n, err.msg);
        double mx = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < ha; j++) {
                double d = fabs((double)got[(size_t)i * ha + j] -
                                (double)ref[(size_t)(first + i) * ha + j]);
                if (!(d <= TOL))
                    fail_msg("%s n=%d item %d (input %d) action %d: batch %.9g single %.9g",
                             what, n, i, first + i, j, got[(size_t)i * ha + j],
                             ref[(size_t)(first + i) * ha + j]);
                mx = d > mx ? d : mx;
            }
        const vlad_batch_timing *t = vlad_batch_timing_get(b);
        assert_int_equal(t->n, n);
        assert_true(t->total_ms >= t->prefix_ms && t->prefix_ms >= t->vision_ms);
        /* the same call again: no allocation, the same bits */
        long a0 = vlad_allocs;
        assert_int_equal(vlad_batch_infer(b, n, items, again, &err), VLAD_OK);
        long a1 = vlad_allocs;
        assert_int_equal(a1 - a0, 0);
        assert_memory_equal(got, again, (size_t)n * ha * sizeof(float));
        printf("%s, %d thread(s), n=%d: max |batch - single| = %.3g, %.2f ms "
               "(vision %.2f, prefix %.2f, flow %.2f)\n",
               what, threads, n, mx, t->total_ms, t->vision_ms, t->prefix_ms, t->flow_ms);
    }
    printf("%s: batch of 5 holds %zu bytes\n", what, vlad_batch_bytes(b));
    vlad_batch_free(b);
    free(ref);
    free(got);
    free(again);
    free_inputs(&in);
}

static char *default_path(char *buf, size_t n) {
    snprintf(buf, n, "%s/models/vlad-default.safetensors", tu_src());
    return buf;
}

static void test_default_model(void **state) {
    (void)state;
    char p[4096];
    vlad_model *m = NULL;
    vlad_err err = {0};
    if (vlad_model_load(default_path(p, sizeof p), &m, &err) != 0)
        fail_msg("%s", err.msg);
    check_model("default", m, 1, 11);
    check_model("default", m, 2, 12);
    vlad_model_free(m);
}

static void test_bf16_fixture(void **state) {
    (void)state;
    char d[4096], p[4200];
    snprintf(p, sizeof p, "%s/tiny_bf16_2cam.safetensors", tu_fixture_dir(d, sizeof d));
    vlad_model *m = NULL;
    vlad_err err = {0};
    if (vlad_model_load(p, &m, &err) != 0)
        fail_msg("%s", err.msg);
    check_model("bf16 2-camera fixture", m, 1, 21);
    vlad_model_free(m);
}

/* Random non-default configs: 2 and 3 cameras, odd sizes; head_dim 32 (the engine's packed
 * attention kernel where the CPU has it) and 12 (the cblas one); F32 and BF16 matrices (BF16
 * left unwidened: tiles converted per call, the few-row GEMV). */
static void test_random_configs(void **state) {
    (void)state;
    char dir[4096], p[4200];
    assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
    vlad_config c = {
        .image_size = 24, .patch_size = 8, .n_cameras = 2,
        .vit_width = 48, .vit_depth = 2, .vit_heads = 3, .vit_mlp = 72,
        .width = 80, .depth = 3, .n_heads = 2, .head_dim = 32, .mlp = 112,
        .expert_width = 40, .expert_mlp = 88,
        .vocab_size = VLAD_VOCAB_SIZE,
        .max_prompt_tokens = 12, .max_text_tokens = 8,
        .state_dim = 5, .action_dim = 3, .chunk_size = 7, .flow_steps = 3,
        .rope_theta = 5000.0, .norm_eps = 1e-5, .frame_stack = 1,
    };
    for (int k = 0; k < 3; k++) {
        if (k == 2) { /* four image inputs fused in pairs: two token sets (frame_stack) */
            c.n_cameras = 4;
            c.frame_stack = 2;
            c.max_prompt_tokens = 6;
        }
        if (k == 1) {
            c.n_cameras = 3;
            c.image_size = 20;
            c.patch_size = 5;
            c.n_heads = 3;
            c.head_dim = 12;
            c.depth = 2;
            c.max_prompt_tokens = 0; /* every prompt empty */
            c.chunk_size = 4;
            c.flow_steps = 4;
            c.action_dim = 6;
        }
        snprintf(p, sizeof p, "%s/r%d.safetensors", dir, k);
        vlad_err err = {0};
        if (vlad_model_write_random(&c, k ? VLAD_DT_BF16 : VLAD_DT_F32, 77 + (uint64_t)k, p,
                                    &err) != 0)
            fail_msg("write_random: %s", err.msg);
        vlad_model *m = NULL;
        if (vlad_model_load(p, &m, &err) != 0)
            fail_msg("%s", err.msg);
        check_model(k ? "random bf16 3-camera" : "random f32 2-camera", m, 1, 31 + (uint64_t)k);
        if (k == 0)
            check_model("random f32 2-camera", m, 2, 41);
        vlad_model_free(m);
    }
    tu_rmtree(dir);
}

static void test_bad_arguments(void **state) {
    (void)state;
    char p[4096];
    vlad_model *m = NULL;
    vlad_err err = {0};
    if (vlad_model_load(default_path(p, sizeof p), &m, &err) != 0)
        fail_msg("%s", err.msg);
    const vlad_config *c = &m->cfg;
    assert_null(vlad_batch_new(m, 0, NULL, &err));
    assert_int_equal(err.code, VLAD_EINVAL);
    assert_null(vlad_batch_new(m, -3, NULL, &err));
    assert_null(vlad_batch_new(NULL, 2, NULL, &err));
    vlad_runstate_opts bad = {.max_streams = 65};
    assert_null(vlad_batch_new(m, 2, &bad, &err));
    vlad_batch_free(NULL);
    assert_int_equal(vlad_batch_max(NULL), 0);

    vlad_batch *b = vlad_batch_new(m, 3, NULL, &err);
    assert_non_null(b);
    assert_int_equal(vlad_batch_timing_get(b)->n, 0);
    assert_true(vlad_batch_bytes(b) > 0);
    inputs in;
    make_inputs(&in, c, 5);
    int ha = in.ha;
    float *out = malloc((size_t)4 * ha * sizeof(float));
    assert_non_null(out);
    for (int i = 0; i < 4 * ha; i++)
        out[i] = 42.0f;
    vlad_batch_item items[4];
    memcpy(items, in.items, sizeof items);
    struct {
        int n;
        const char *want;
    } badn[] = {{0, "n = 0"}, {-1, "n = -1"}, {4, "n = 4"}};
    for (size_t i = 0; i < sizeof badn / sizeof badn[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(vlad_batch_infer(b, badn[i].n, items, out, &err), VLAD_EINVAL);
        assert_non_null(strstr(err.msg, badn[i].want));
    }
    assert_int_equal(vlad_batch_infer(NULL, 1, items, out, &err), VLAD_EINVAL);
    assert_int_equal(vlad_batch_infer(b, 1, NULL, out, &err), VLAD_EINVAL);
    assert_int_equal(vlad_batch_infer(b, 1, items, NULL, &err), VLAD_EINVAL);
    /* a bad item anywhere fails the whole call, naming it */
    vlad_batch_item bi[3];
    memcpy(bi, items, sizeof bi);
    bi[2].images = NULL;
    assert_int_equal(vlad_batch_infer(b, 3, bi, out, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "item 2"));
    memcpy(bi, items, sizeof bi);
    const uint8_t *noimg[1] = {NULL};
    bi[1].images = noimg;
    assert_int_equal(vlad_batch_infer(b, 3, bi, out, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "item 1: image 0"));
    memcpy(bi, items, sizeof bi);
    bi[0].state = NULL;
    assert_int_equal(vlad_batch_infer(b, 3, bi, out, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "item 0"));
    float st[64];
    memcpy(st, in.state[1], (size_t)c->state_dim * sizeof(float));
    st[c->state_dim - 1] = NAN;
    memcpy(bi, items, sizeof bi);
    bi[1].state = st;
    assert_int_equal(vlad_batch_infer(b, 3, bi, out, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "not finite"));
    float *nz = malloc((size_t)ha * sizeof(float));
    assert_non_null(nz);
    memcpy(nz, in.noise[0], (size_t)ha * sizeof(float));
    nz[ha - 1] = INFINITY;
    memcpy(bi, items, sizeof bi);
    bi[2].noise = nz;
    assert_int_equal(vlad_batch_infer(b, 3, bi, out, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "item 2: noise"));
    for (int i = 0; i < 4 * ha; i++)
        assert_true(out[i] == 42.0f); /* untouched */
    assert_int_equal(vlad_batch_timing_get(b)->n, 0);
    /* and the batch still works afterwards */
    assert_int_equal(vlad_batch_infer(b, 3, items, out, &err), VLAD_OK);
    for (int i = 0; i < 3 * ha; i++)
        assert_true(isfinite(out[i]));
    assert_true(out[3 * ha] == 42.0f); /* nothing past n items */
    free(nz);
    free(out);
    free_inputs(&in);
    vlad_batch_free(b);
    vlad_model_free(m);
}

/* Memory is reused across n: warm up at the largest n, then every n <= max allocates nothing
 * (everything is sized in vlad_batch_new). */
static void test_no_alloc_after_warmup(void **state) {
    (void)state;
    char p[4096];
    vlad_model *m = NULL;
    vlad_err err = {0};
    if (vlad_model_load(default_path(p, sizeof p), &m, &err) != 0)
        fail_msg("%s", err.msg);
    vlad_runstate_opts o = {.n_threads = 2};
    vlad_batch *b = vlad_batch_new(m, 4, &o, &err);
    assert_non_null(b);
    inputs in;
    make_inputs(&in, &m->cfg, 9);
    float *out = malloc((size_t)4 * in.ha * sizeof(float));
    assert_non_null(out);
    for (int n = 1; n <= 4; n++) /* warm-up */
        assert_int_equal(vlad_batch_infer(b, n, in.items, out, &err), VLAD_OK);
    long a0 = vlad_allocs;
    for (int r = 0; r < 2; r++)
        for (int n = 4; n >= 1; n--)
            assert_int_equal(vlad_batch_infer(b, n, in.items + r, out, &err), VLAD_OK);
    long a1 = vlad_allocs;
    printf("%ld heap allocations in 8 batch calls after warm-up (batch %zu bytes)\n", a1 - a0,
           vlad_batch_bytes(b));
    assert_int_equal(a1 - a0, 0);
    free(out);
    free_inputs(&in);
    vlad_batch_free(b);
    vlad_model_free(m);
}

/* Out of memory in vlad_batch_new: every allocation in turn fails, each reported, no leak
 * (ASan's leak checker). */
static void test_out_of_memory(void **state) {
    (void)state;
    char p[4096];
    vlad_model *m = NULL;
    vlad_err err = {0};
    if (vlad_model_load(default_path(p, sizeof p), &m, &err) != 0)
        fail_msg("%s", err.msg);
    int failed = 0;
    for (long k = 1; k < 200; k++) {
        vlad_alloc_fail_at = vlad_allocs + k;
        memset(&err, 0, sizeof err);
        vlad_batch *b = vlad_batch_new(m, 2, NULL, &err);
        vlad_alloc_fail_at = 0;
        if (b) {
            vlad_batch_free(b);
            break;
        }
        assert_int_equal(err.code, VLAD_ENOMEM);
        failed++;
    }
    printf("vlad_batch_new: %d allocation failures reported\n", failed);
    assert_true(failed > 10);
    vlad_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_model),
        cmocka_unit_test(test_bf16_fixture),
        cmocka_unit_test(test_random_configs),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_no_alloc_after_warmup),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
