/* Quantised checkpoints (MODEL.md 1.1, policy/quant.h).
 *   parity: the engine on the twin's quantised fixtures (tiny_q4_awq: Q4, group 32, AWQ
 *           scales; tiny_q8_rtn: Q8, group 64, no AWQ, matrices with 32 inputs left F32),
 *           actions and prefix K/V within 1e-4 of the twin's float64 reference on the same
 *           codes, same greedy text. CMake runs this binary with VLAD_PACK unset, =avx2 and =0,
 *           so each kernel path (AVX-512 / AVX2 fused tiles and panels, scalar + cblas) is
 *           checked.
 *   batch:  vlad_batch_infer on the Q4 fixture == one inference at a time (1e-5).
 *   kernels: vlad_matmul on quantised matrices against a double-precision scalar reference
 *           from the file-layout codes, for Q8/Q4, every group size, odd M (fused tile and
 *           panel paths), N not a multiple of 32, with and without AWQ and bias; the
 *           embedding row lookup (vlad_quant_row); BF16 panels (the in-memory layout of a
 *           quantised model's plain BF16 matrices) for odd K, M and N.
 *   loader: refusals naming the tensor: missing scale, wrong scale shape, NaN scale,
 *           awq <= 0, both q4 and q8, plain and quantised, a stray scale. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "engine.h"
#include "kernels.h"
#include "model.h"
#include "policy_testutil.h"
#include "quant.h"
#include "rng.h"
#include "safetensors.h"

/* ---- parity ------------------------------------------------------------------------------ */

static void check(const char *name, double tol) {
    char dir[4096];
    tu_fixture_dir(dir, sizeof dir);
    fx_result r;
    fx_check(dir, name, 1, &r);
    if (!r.ok)
        fail_msg("%s", r.msg);
    printf("%s (VLAD_PACK=%s, kernel %d): S=%d actions max err %.3g, prefix KV max err %.3g, "
           "text %s (%d bytes)\n",
           name, getenv("VLAD_PACK") ? getenv("VLAD_PACK") : "default", vlad_pack_kind(), r.S,
           r.act_err, r.kv_err, r.text_ok ? "equal" : "DIFFERS", r.text_len);
    assert_true(r.act_err <= tol);
    assert_true(r.kv_err <= tol);
    assert_true(r.text_ok);
    assert_true(r.runs_equal);
}

static void test_parity_q4_awq(void **state) {
    (void)state;
    check("tiny_q4_awq", 1e-4);
}
static void test_parity_q8_rtn(void **state) {
    (void)state;
    check("tiny_q8_rtn", 1e-4);
}

/* the fixtures really are quantised, with the tied embedding too */
static void test_fixture_kinds(void **state) {
    (void)state;
    char dir[4096], path[4200];
    tu_fixture_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tiny_q4_awq.safetensors", dir);
    vlad_model *m = NULL;
    vlad_err err = {0};
    if (vlad_model_load(path, &m, &err))
        fail_msg("%s", err.msg);
    assert_true(m->n_q4 > 20);
    assert_int_equal(m->n_q8, 0);
    assert_true(m->n_awq > 0);
    assert_null(m->w.embed);
    assert_int_equal(m->w.embed_mat.qbits, 4);
    assert_int_equal(m->w.vlm[0].q.qbits, 4);
    assert_non_null(m->w.vlm[0].q.qinv);
    assert_int_equal(m->w.patch_embed.qbits, 0); /* 48 inputs: not a multiple of 32 */
    assert_string_equal(vlad_mat_kind(&m->w.vlm[0].q), "Q4");
    assert_non_null(m->quant_meta);
    vlad_model_free(m);
    snprintf(path, sizeof path, "%s/tiny_q8_rtn.safetensors", dir);
    if (vlad_model_load(path, &m, &err))
        fail_msg("%s", err.msg);
    assert_true(m->n_q8 > 0);
    assert_int_equal(m->n_awq, 0);
    assert_int_equal(m->w.vlm[0].fc2.qbits, 8);
    assert_int_equal(m->w.vlm[0].fc2.qgroup, 64);
    assert_int_equal(m->w.vlm[0].q.qbits, 0); /* 32 inputs at group 64 */
    vlad_model_free(m);
}

/* the batch path (batch.c) on a quantised model == one by one on a runstate */
static void test_batch_q4(void **state) {
    (void)state;
    char dir[4096], path[4200];
    tu_fixture_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tiny_q4_awq.safetensors", dir);
    vlad_model *m = NULL;
    vlad_err err = {0};
    if (vlad_model_load(path, &m, &err))
        fail_msg("%s", err.msg);
    const vlad_config *c = &m->cfg;
    enum { NB = 3 };
    size_t isz = (size_t)c->image_size * c->image_size * 3, HA = (size_t)c->chunk_size * c->action_dim;
    uint8_t *img = malloc(isz * NB);
    float *st = malloc(sizeof(float) * (size_t)c->state_dim * NB), *nz = malloc(sizeof(float) * HA * NB);
    float *ab = malloc(sizeof(float) * HA * NB), *as = malloc(sizeof(float) * HA);
    vlad_rng r;
    vlad_rng_seed(&r, 3);
    for (size_t i = 0; i < isz * NB; i++)
        img[i] = (uint8_t)vlad_rng_u64(&r);
    for (int i = 0; i < c->state_dim * NB; i++)
        st[i] = (float)vlad_rng_normal(&r);
    for (size_t i = 0; i < HA * NB; i++)
        nz[i] = (float)vlad_rng_normal(&r);
    const char *prompts[NB] = {"pick", "push the block", "x"};
    const uint8_t *ims[NB][1];
    vlad_batch_item items[NB];
    for (int i = 0; i < NB; i++) {
        ims[i][0] = img + isz * i;
        items[i] = (vlad_batch_item){.images = ims[i], .prompt = prompts[i],
                                     .prompt_len = strlen(prompts[i]),
                                     .state = st + (size_t)c->state_dim * i, .noise = nz + HA * i};
    }
    vlad_runstate_opts o = {.n_threads = 1};
    vlad_batch *b = vlad_batch_new(m, NB, &o, &err);
    vlad_runstate *rs = vlad_runstate_new(m, &o, &err);
    assert_non_null(b);
    assert_non_null(rs);
    assert_int_equal(vlad_batch_infer(b, NB, items, ab, &err), 0);
    double worst = 0;
    for (int i = 0; i < NB; i++) {
        assert_true(vlad_encode_prefix(rs, ims[i], prompts[i], strlen(prompts[i]), &err) >= 0);
        assert_int_equal(vlad_sample_actions(rs, items[i].state, items[i].noise, 0, as, &err), 0);
        for (size_t k = 0; k < HA; k++) {
            double d = fabs((double)as[k] - ab[HA * i + k]);
            worst = d > worst ? d : worst;
        }
    }
    printf("tiny_q4_awq batch of %d vs one by one: max |diff| %.3g\n", NB, worst);
    assert_true(worst <= 1e-5);
    vlad_batch_free(b);
    vlad_runstate_free(rs);
    vlad_model_free(m);
    free(img);
    free(st);
    free(nz);
    free(ab);
    free(as);
}

/* ---- kernels vs a scalar reference ------------------------------------------------------- */

typedef struct {
    int bits, N, K, G, awq;
    uint8_t *codes; /* file layout */
    float *scales;  /* [N][K/G] */
    float *s;       /* [K] or NULL */
} qref;

static void qref_make(qref *q, int bits, int N, int K, int G, int awq, vlad_rng *r) {
    q->bits = bits;
    q->N = N;
    q->K = K;
    q->G = G;
    q->awq = awq;
    size_t cb = bits == 8 ? (size_t)N * K : (size_t)N * K / 2;
    q->codes = malloc(cb);
    q->scales = malloc(sizeof(float) * (size_t)N * (K / G));
    q->s = awq ? malloc(sizeof(float) * (size_t)K) : NULL;
    for (size_t i = 0; i < cb; i++)
        q->codes[i] = (uint8_t)(vlad_rng_u64(r) & 0xff);
    for (int i = 0; i < N * (K / G); i++)
        q->scales[i] = (float)(0.001 + 0.05 * vlad_rng_uniform(r));
    for (int i = 0; awq && i < K; i++)
        q->s[i] = (float)(0.25 + 2.0 * vlad_rng_uniform(r));
}
static void qref_free(qref *q) {
    free(q->codes);
    free(q->scales);
    free(q->s);
}
static double qref_at(const qref *q, int n, int k) {
    int c;
    if (q->bits == 8) {
        c = (int)q->codes[(size_t)n * q->K + k] - 128;
    } else {
        uint8_t b = q->codes[(size_t)n * (q->K / 2) + k / 2];
        c = (int)((k & 1) ? (b >> 4) : (b & 15)) - 8;
    }
    return (double)c * q->scales[(size_t)n * (q->K / q->G) + k / q->G];
}

/* The packed matrix of q (buffers malloc'd into *codes / *scales / *inv). */
static vlad_mat qref_mat(const qref *q, uint8_t **codes, float **scales, float **inv) {
    *codes = malloc(vlad_quant_codes_bytes(q->bits, q->N, q->K));
    *scales = malloc(sizeof(float) * vlad_quant_scale_floats(q->N, q->K, q->G));
    *inv = NULL;
    vlad_quant_pack(*codes, *scales, q->bits, q->N, q->K, q->G, q->codes, q->scales);
    if (q->s) {
        *inv = malloc(sizeof(float) * (size_t)q->K);
        for (int k = 0; k < q->K; k++)
            (*inv)[k] = 1.0f / q->s[k];
    }
    return (vlad_mat){.dtype = VLAD_DT_U8, .rows = q->N, .cols = q->K, .qbits = q->bits,
                      .qgroup = q->G, .qcodes = *codes, .qscale = *scales, .qinv = *inv};
}

static void test_kernels(void **state) {
    (void)state;
    vlad_rng r;
    vlad_rng_seed(&r, 7);
    const int Ms[] = {1, 2, 3, 5, 7, 12, 13, 29};
    const int Ns[] = {1, 31, 33, 70};
    int cases = 0;
    double worst = 0;
    for (int bits = 4; bits <= 8; bits += 4)
        for (int G = 32; G <= 128; G *= 2)
            for (int ni = 0; ni < 4; ni++)
                for (int awq = 0; awq < 2; awq++) {
                    int N = Ns[ni], K = G * (1 + (ni + awq) % 3);
                    qref q;
                    qref_make(&q, bits, N, K, G, awq, &r);
                    uint8_t *codes;
                    float *scales, *inv;
                    vlad_mat W = qref_mat(&q, &codes, &scales, &inv);
                    /* element access and the embedding row */
                    float *row = malloc(sizeof(float) * (size_t)K);
                    for (int n = 0; n < N; n += 7) {
                        vlad_quant_row(&W, n, row);
                        for (int k = 0; k < K; k++) {
                            double want = qref_at(&q, n, k) / (awq ? q.s[k] : 1.0);
                            assert_true(fabs(vlad_quant_at(&W, n, k) - qref_at(&q, n, k)) <= 1e-6 * (1 + fabs(qref_at(&q, n, k))));
                            assert_true(fabs(row[k] - want) <= 1e-6 * (1 + fabs(want)));
                        }
                    }
                    free(row);
                    vlad_scratch sc = {0};
                    sc.cap = vlad_matmul_scratch_floats(K);
                    sc.buf = malloc(sizeof(float) * sc.cap);
                    for (int mi = 0; mi < 8; mi++) {
                        int M = Ms[mi], ldx = K + 3, ldy = N + 5;
                        float *x = malloc(sizeof(float) * (size_t)M * ldx);
                        float *y = malloc(sizeof(float) * (size_t)M * ldy);
                        float *bias = malloc(sizeof(float) * (size_t)N);
                        for (int i = 0; i < M * ldx; i++)
                            x[i] = (float)vlad_rng_normal(&r);
                        for (int i = 0; i < N; i++)
                            bias[i] = (float)vlad_rng_normal(&r);
                        for (int i = 0; i < M * ldy; i++)
                            y[i] = 12345.0f; /* the padding columns must stay */
                        int with_bias = (mi + ni) & 1;
                        vlad_matmul(&sc, y, ldy, x, ldx, M, &W, with_bias ? bias : NULL);
                        for (int m = 0; m < M; m++) {
                            for (int n = 0; n < N; n++) {
                                double want = with_bias ? bias[n] : 0.0, mag = fabs(want);
                                for (int k = 0; k < K; k++) {
                                    double t = (double)x[(size_t)m * ldx + k] /
                                               (awq ? (double)q.s[k] : 1.0) * qref_at(&q, n, k);
                                    want += t;
                                    mag += fabs(t);
                                }
                                double e = fabs(y[(size_t)m * ldy + n] - want) / (1e-3 + mag);
                                worst = e > worst ? e : worst;
                                if (e > 1e-5)
                                    fail_msg("Q%d G%d N%d K%d M%d awq%d bias%d: y[%d,%d] = %g, want %g",
                                             bits, G, N, K, M, awq, with_bias, m, n,
                                             (double)y[(size_t)m * ldy + n], want);
                            }
                            for (int n = N; n < ldy; n++)
                                assert_true(y[(size_t)m * ldy + n] == 12345.0f);
                        }
                        free(x);
                        free(y);
                        free(bias);
                        cases++;
                    }
                    free(sc.buf);
                    free(codes);
                    free(scales);
                    free(inv);
                    qref_free(&q);
                }
    printf("quant kernels (kernel %d): %d cases, worst relative error %.3g\n", vlad_pack_kind(),
           cases, worst);
}

/* BF16 panels (qbits 16: a quantised model's plain BF16 matrices after vlad_model_widen_*) */
static void test_kernels_bf16(void **state) {
    (void)state;
    vlad_rng r;
    vlad_rng_seed(&r, 9);
    const int Ms[] = {1, 2, 3, 4, 5, 12, 13, 51};
    const int Ns[] = {1, 31, 33, 70};
    const int Ks[] = {5, 32, 46, 96};
    double worst = 0;
    int cases = 0;
    for (int ni = 0; ni < 4; ni++)
        for (int ki = 0; ki < 4; ki++) {
            int N = Ns[ni], K = Ks[ki];
            uint16_t *src = malloc(sizeof(uint16_t) * (size_t)N * K);
            for (int i = 0; i < N * K; i++)
                src[i] = vlad_f32_to_bf16((float)vlad_rng_normal(&r));
            uint8_t *codes = malloc(vlad_quant_codes_bytes(16, N, K));
            vlad_quant_pack_bf16(codes, N, K, src);
            vlad_mat W = {.dtype = VLAD_DT_U8, .rows = N, .cols = K, .qbits = 16, .qgroup = K,
                          .qcodes = codes};
            vlad_scratch sc = {0};
            sc.cap = vlad_matmul_scratch_floats(K);
            sc.buf = malloc(sizeof(float) * sc.cap);
            for (int mi = 0; mi < 8; mi++) {
                int M = Ms[mi], ldx = K + 1, ldy = N + 2;
                float *x = malloc(sizeof(float) * (size_t)M * ldx);
                float *y = malloc(sizeof(float) * (size_t)M * ldy);
                for (int i = 0; i < M * ldx; i++)
                    x[i] = (float)vlad_rng_normal(&r);
                vlad_matmul(&sc, y, ldy, x, ldx, M, &W, NULL);
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double want = 0, mag = 0;
                        for (int k = 0; k < K; k++) {
                            double t = (double)x[(size_t)m * ldx + k] *
                                       vlad_bf16_to_f32(src[(size_t)n * K + k]);
                            want += t;
                            mag += fabs(t);
                        }
                        double e = fabs(y[(size_t)m * ldy + n] - want) / (1e-3 + mag);
                        worst = e > worst ? e : worst;
                        if (e > 1e-5)
                            fail_msg("BF16 panels N%d K%d M%d: y[%d,%d] = %g, want %g", N, K, M, m,
                                     n, (double)y[(size_t)m * ldy + n], want);
                    }
                free(x);
                free(y);
                cases++;
            }
            float row[96];
            vlad_mat_row(&W, N - 1, row);
            for (int k = 0; k < K; k++)
                assert_true(row[k] == vlad_bf16_to_f32(src[(size_t)(N - 1) * K + k]));
            free(sc.buf);
            free(codes);
            free(src);
        }
    printf("BF16 panels (kernel %d): %d cases, worst relative error %.3g\n", vlad_pack_kind(), cases,
           worst);
}

/* ---- loader refusals -------------------------------------------------------------------- */

typedef enum { MUT_DROP, MUT_SHAPE, MUT_NAN, MUT_AWQ_ZERO, MUT_AWQ_NEG, MUT_ADD_Q8, MUT_ADD_PLAIN,
               MUT_STRAY } mut_kind;

/* Copy the q4 fixture to dst with one change to tensor `target`. */
static void rewrite(const char *dst, mut_kind mk, const char *target) {
    char dir[4096], src[4200];
    tu_fixture_dir(dir, sizeof dir);
    snprintf(src, sizeof src, "%s/tiny_q4_awq.safetensors", dir);
    vlad_err err = {0};
    vlad_st_file *f = NULL;
    if (vlad_st_open(src, &f, &err))
        fail_msg("%s", err.msg);
    vlad_st_writer *w = vlad_st_writer_new();
    const char *keys[] = {"vlad.format", "vlad.config", "vlad.quant"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(vlad_st_writer_meta(w, keys[i], vlad_st_meta(f, keys[i]), &err), 0);
    int n = vlad_st_count(f);
    /* pass 0: descriptors, pass 1: data */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && vlad_st_writer_begin(w, dst, &err))
            fail_msg("%s", err.msg);
        for (int i = 0; i < n; i++) {
            const vlad_st_tensor *t = vlad_st_get(f, i);
            int hit = !strcmp(t->name, target);
            if (hit && mk == MUT_DROP)
                continue;
            int64_t shape[8];
            memcpy(shape, t->shape, sizeof shape);
            size_t nb = t->nbytes;
            unsigned char *buf = malloc(nb + 64);
            memcpy(buf, t->data, nb);
            if (hit && mk == MUT_SHAPE) { /* one more column of scales */
                float one = 0.01f;
                shape[1] += 1;
                free(buf);
                nb = (size_t)(shape[0] * shape[1]) * 4;
                buf = malloc(nb);
                for (size_t k = 0; k < nb / 4; k++)
                    memcpy(buf + 4 * k, &one, 4);
            }
            if (hit && (mk == MUT_NAN || mk == MUT_AWQ_ZERO || mk == MUT_AWQ_NEG)) {
                float v = mk == MUT_NAN ? NAN : mk == MUT_AWQ_ZERO ? 0.0f : -1.0f;
                memcpy(buf + 4 * 3, &v, 4);
            }
            if (pass == 0)
                assert_int_equal(vlad_st_writer_add(w, t->name, t->dtype, t->ndim, shape, &err), 0);
            else
                assert_int_equal(vlad_st_writer_data(w, buf, nb, &err), 0);
            free(buf);
        }
        /* an extra tensor */
        if (mk == MUT_ADD_Q8 || mk == MUT_ADD_PLAIN || mk == MUT_STRAY) {
            char nm[200];
            const char *base = "vlm.layers.0.mlp.fc1.weight"; /* [64, 32] */
            int64_t shape[2] = {64, 32};
            vlad_dtype dt = VLAD_DT_F32;
            if (mk == MUT_ADD_Q8) {
                snprintf(nm, sizeof nm, "%s.q8", base);
                dt = VLAD_DT_U8;
            } else if (mk == MUT_ADD_PLAIN) {
                snprintf(nm, sizeof nm, "%s", base);
            } else {
                snprintf(nm, sizeof nm, "vlm.norm.weight.scale");
                shape[0] = 32;
                shape[1] = 1;
            }
            size_t nb = (size_t)(shape[0] * shape[1]) * vlad_dtype_size(dt);
            unsigned char *buf = calloc(1, nb);
            if (pass == 0)
                assert_int_equal(vlad_st_writer_add(w, nm, dt, 2, shape, &err), 0);
            else
                assert_int_equal(vlad_st_writer_data(w, buf, nb, &err), 0);
            free(buf);
        }
    }
    if (vlad_st_writer_finish(w, &err))
        fail_msg("%s", err.msg);
    vlad_st_writer_free(w);
    vlad_st_close(f);
}

static void refuse(const char *tmp, mut_kind mk, const char *target, const char *want1,
                   const char *want2) {
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmp);
    rewrite(path, mk, target);
    vlad_model *m = NULL;
    vlad_err err = {0};
    int rc = vlad_model_load(path, &m, &err);
    printf("refused: %s\n", err.msg);
    assert_int_not_equal(rc, 0);
    assert_null(m);
    if (!strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2)))
        fail_msg("message '%s' lacks '%s' / '%s'", err.msg, want1, want2 ? want2 : "");
}

static void test_loader_refusals(void **state) {
    (void)state;
    char tmp[4096];
    assert_int_equal(tu_mkdtemp(tmp, sizeof tmp), 0);
    const char *Q = "vlm.layers.0.attn.q.weight";
    /* an unmodified copy loads */
    {
        char path[4200];
        snprintf(path, sizeof path, "%s/ok.safetensors", tmp);
        rewrite(path, MUT_DROP, "no such tensor");
        vlad_model *m = NULL;
        vlad_err err = {0};
        if (vlad_model_load(path, &m, &err))
            fail_msg("%s", err.msg);
        vlad_model_free(m);
    }
    refuse(tmp, MUT_DROP, "vlm.layers.0.attn.q.weight.scale", "'vlm.layers.0.attn.q.weight.scale' missing", NULL);
    refuse(tmp, MUT_DROP, "vlm.layers.0.attn.q.weight.q4", "vlm.layers.0.attn.q.weight", "without quantised codes");
    refuse(tmp, MUT_SHAPE, "vlm.layers.0.attn.q.weight.scale", "tensor 'vlm.layers.0.attn.q.weight.scale': shape", NULL);
    refuse(tmp, MUT_NAN, "expert.layers.1.mlp.fc2.weight.scale", "tensor 'expert.layers.1.mlp.fc2.weight.scale' element 3 is NaN", NULL);
    refuse(tmp, MUT_AWQ_ZERO, "vlm.layers.0.attn.q.weight.awq", "tensor 'vlm.layers.0.attn.q.weight.awq'", "not positive");
    refuse(tmp, MUT_AWQ_NEG, "vlm.layers.0.attn.q.weight.awq", "tensor 'vlm.layers.0.attn.q.weight.awq'", "not positive");
    refuse(tmp, MUT_ADD_Q8, "", "both 'vlm.layers.0.mlp.fc1.weight.q8' and 'vlm.layers.0.mlp.fc1.weight.q4'", NULL);
    refuse(tmp, MUT_ADD_PLAIN, "", "tensor 'vlm.layers.0.mlp.fc1.weight': both the plain matrix", NULL);
    refuse(tmp, MUT_STRAY, "", "unexpected tensor 'vlm.norm.weight.scale'", NULL);
    (void)Q;
    tu_rmtree(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_q4_awq),
        cmocka_unit_test(test_parity_q8_rtn),
        cmocka_unit_test(test_fixture_kinds),
        cmocka_unit_test(test_batch_q4),
        cmocka_unit_test(test_kernels),
        cmocka_unit_test(test_kernels_bf16),
        cmocka_unit_test(test_loader_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
