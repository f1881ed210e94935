/* Unit tests of policy/: config, tokenizer, safetensors, loader error paths (each from a bad
 * file derived from a good fixture), kernels, the unified KV cache (prefix blocks outliving
 * newer frames, batched streams == streams alone, up to 64 streams), allocation-free inference
 * after warm-up and out-of-memory reporting (malloc & co. wrapped with -Wl,--wrap), input
 * checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <dirent.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "config.h"
#include "engine.h"
#include "image.h"
#include "kernels.h"
#include "model.h"
#include "obs.h"
#include "pool.h"
#include "policy_testutil.h"
#include "rng.h"
#include "alloc_count.h"
#include "safetensors.h"
#include "tokenizer.h"

/* every allocation is counted, and one can be made to fail (alloc_count.h) */
static char g_fx[2048];
static const char *fx(const char *file, char *buf, size_t n) {
    if (snprintf(buf, n, "%s/%s", g_fx, file) >= (int)n)
        buf[0] = 0;
    return buf;
}

/* ---- config ------------------------------------------------------------------------------ */

static void test_config(void **state) {
    (void)state;
    vlad_err err = {0};
    vlad_config d = vlad_config_default(), s = vlad_config_smolvla(), c;
    assert_int_equal(vlad_config_validate(&d, &err), 0);
    assert_int_equal(vlad_config_validate(&s, &err), 0);
    int64_t ps = vlad_config_param_count(&s);
    printf("default: %lld params; smolvla-scale: %lld params\n",
           (long long)vlad_config_param_count(&d), (long long)ps);
    assert_true(ps > 200000000 && ps < 500000000);
    char *j = vlad_config_to_json(&d);
    assert_non_null(j);
    assert_int_equal(vlad_config_from_json(j, &c, &err), 0);
    char *j2 = vlad_config_to_json(&c);
    assert_string_equal(j, j2);
    free(j);
    free(j2);
    assert_int_equal(vlad_config_preset("smolvla", &c, &err), 0);
    assert_int_not_equal(vlad_config_preset("huge", &c, &err), 0);
    /* errors name the field */
    const char *bad[][2] = {
        {"{\"image_size\":64}", "missing field"},
        {"[1,2]", "not a JSON object"},
    };
    for (size_t i = 0; i < 2; i++) {
        assert_int_not_equal(vlad_config_from_json(bad[i][0], &c, &err), 0);
        assert_non_null(strstr(err.msg, bad[i][1]));
    }
    d.head_dim = 7;
    assert_int_equal(vlad_config_validate(&d, &err), VLAD_ERANGE);
    assert_non_null(strstr(err.msg, "head_dim"));
    d = vlad_config_default();
    d.patch_size = 7;
    assert_int_equal(vlad_config_validate(&d, &err), VLAD_ERANGE);
    assert_non_null(strstr(err.msg, "patch_size"));
    d = vlad_config_default();
    d.norm_eps = -1;
    assert_int_equal(vlad_config_validate(&d, &err), VLAD_ERANGE);
    assert_non_null(strstr(err.msg, "norm_eps"));
    /* frame_stack: optional (1), written only when not 1, must divide n_cameras */
    d = vlad_config_default();
    j = vlad_config_to_json(&d);
    assert_null(strstr(j, "frame_stack"));
    assert_int_equal(vlad_config_from_json(j, &c, &err), 0);
    assert_int_equal(c.frame_stack, 1);
    free(j);
    d.n_cameras = 4;
    d.frame_stack = 2;
    assert_int_equal(vlad_config_validate(&d, &err), 0);
    assert_int_equal(vlad_cfg_n_groups(&d), 2);
    assert_int_equal(vlad_cfg_image_tokens(&d), 2 * vlad_cfg_n_patches(&d));
    assert_int_equal(vlad_cfg_patch_dim(&d), 2 * 3 * 16 * 16);
    j = vlad_config_to_json(&d);
    assert_non_null(strstr(j, "\"frame_stack\":2"));
    assert_int_equal(vlad_config_from_json(j, &c, &err), 0);
    assert_int_equal(c.frame_stack, 2);
    assert_int_equal(vlad_config_param_count(&c),
                     vlad_config_param_count(&d)); /* the wider patch embedding is counted */
    d.frame_stack = 1;
    assert_true(vlad_config_param_count(&c) ==
                vlad_config_param_count(&d) + (int64_t)3 * 16 * 16 * d.vit_width);
    free(j);
    d.frame_stack = 3;
    assert_int_equal(vlad_config_validate(&d, &err), VLAD_ERANGE);
    assert_non_null(strstr(err.msg, "frame_stack"));
    d.frame_stack = 0;
    assert_int_equal(vlad_config_validate(&d, &err), VLAD_ERANGE);
    assert_non_null(strstr(err.msg, "frame_stack"));
}

/* ---- tokenizer ----------------------------------------------------------------------------- */

static void test_tokenizer(void **state) {
    (void)state;
    int t[64];
    int n = vlad_tok_prompt("hi\xff", 3, 32, t);
    assert_int_equal(n, 4);
    assert_int_equal(t[0], VLAD_TOK_BOS);
    assert_int_equal(t[1], 'h');
    assert_int_equal(t[3], 255);
    assert_int_equal(vlad_tok_prompt("abcdef", 6, 3, t), 4); /* cap after BOS */
    assert_int_equal(t[3], 'c');
    assert_int_equal(vlad_tok_prompt(NULL, 5, 3, t), 1);
    n = vlad_tok_question("", 0, 8, t);
    assert_int_equal(n, 2);
    assert_int_equal(t[0], VLAD_TOK_SEP);
    assert_int_equal(t[1], VLAD_TOK_SEP);
    n = vlad_tok_question("why", 3, 2, t);
    assert_int_equal(n, 4);
    assert_int_equal(t[2], 'h');
    assert_int_equal(t[3], VLAD_TOK_SEP);
    int toks[] = {'o', 'k', VLAD_TOK_EOS, 'x'};
    char out[8];
    assert_int_equal(vlad_tok_decode(toks, 4, out, sizeof out), 2);
    assert_memory_equal(out, "ok", 2);
    assert_string_equal(vlad_tok_special_name(VLAD_TOK_EOS), "<eos>");
    assert_null(vlad_tok_special_name('a'));
    assert_true(vlad_tok_is_byte(0) && vlad_tok_is_byte(255) && !vlad_tok_is_byte(256));
}

/* ---- safetensors ----------------------------------------------------------------------------- */

static void test_safetensors_roundtrip(void **state) {
    (void)state;
    char dir[4096], path[4200];
    assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    vlad_err err = {0};
    vlad_st_writer *w = vlad_st_writer_new();
    assert_non_null(w);
    int64_t s1[2] = {2, 3}, s2[1] = {3};
    float a[6] = {1, -2, 3.5f, 1e-3f, 7, 8};
    uint16_t b[3] = {vlad_f32_to_bf16(1.0f), vlad_f32_to_bf16(-2.5f), vlad_f32_to_bf16(3.14159f)};
    assert_int_equal(vlad_st_writer_meta(w, "k", "v", &err), 0);
    assert_int_equal(vlad_st_writer_add(w, "a", VLAD_DT_F32, 2, s1, &err), 0);
    assert_int_equal(vlad_st_writer_add(w, "b", VLAD_DT_BF16, 1, s2, &err), 0);
    assert_int_equal(vlad_st_writer_begin(w, path, &err), 0);
    assert_int_equal(vlad_st_writer_data(w, a, sizeof a, &err), 0);
    assert_int_equal(vlad_st_writer_data(w, b, sizeof b, &err), 0);
    assert_int_equal(vlad_st_writer_finish(w, &err), 0);
    vlad_st_writer_free(w);
    vlad_st_file *f = NULL;
    assert_int_equal(vlad_st_open(path, &f, &err), 0);
    assert_int_equal(vlad_st_count(f), 2);
    assert_string_equal(vlad_st_meta(f, "k"), "v");
    const vlad_st_tensor *ta = vlad_st_find(f, "a"), *tb = vlad_st_find(f, "b");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_int_equal(ta->ndim, 2);
    assert_int_equal(ta->shape[1], 3);
    assert_int_equal(((uintptr_t)ta->data) % 8, 0); /* header padded to 8 */
    assert_memory_equal(ta->data, a, sizeof a);
    float bf[3];
    vlad_bf16_to_f32_n(bf, tb->data, 3);
    assert_true(bf[0] == 1.0f && bf[1] == -2.5f);
    assert_true(bf[2] > 3.13f && bf[2] < 3.15f);
    assert_null(vlad_st_find(f, "c"));
    vlad_st_close(f);
    /* round-to-nearest-even */
    assert_int_equal(vlad_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(vlad_bf16_to_f32(0x3f80), 1.0f);
    tu_rmtree(dir);
}

/* ---- loader error paths ------------------------------------------------------------------------ */

typedef void (*mutate_fn)(cJSON *hdr);

/* Write dst = src with its header mutated (data section unchanged). */
static void write_mutated(const char *src, const char *dst, mutate_fn fn) {
    size_t n = 0;
    char *buf = tu_read(src, &n);
    assert_non_null(buf);
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++)
        hn |= (uint64_t)(uint8_t)buf[i] << (8 * i);
    cJSON *h = cJSON_ParseWithLength(buf + 8, (size_t)hn);
    assert_non_null(h);
    fn(h);
    char *js = cJSON_PrintUnformatted(h);
    size_t jn = strlen(js), pad = (8 - jn % 8) % 8, dn = n - 8 - (size_t)hn;
    size_t total = 8 + jn + pad + dn;
    char *out = malloc(total);
    uint64_t nh = jn + pad;
    for (int i = 0; i < 8; i++)
        out[i] = (char)(nh >> (8 * i));
    memcpy(out + 8, js, jn);
    memset(out + 8 + jn, ' ', pad);
    memcpy(out + 8 + jn + pad, buf + 8 + hn, dn);
    assert_int_equal(tu_write(dst, out, total), 0);
    free(out);
    free(js);
    cJSON_Delete(h);
    free(buf);
}

static cJSON *tensor(cJSON *h, const char *name) {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(h, name);
    assert_non_null(t);
    return t;
}
static void set_offsets(cJSON *t, double b, double e) {
    cJSON *o = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    cJSON_SetNumberValue(cJSON_GetArrayItem(o, 0), b);
    cJSON_SetNumberValue(cJSON_GetArrayItem(o, 1), e);
}
static double offset(cJSON *t, int i) {
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "data_offsets"), i)->valuedouble;
}

static void m_dtype(cJSON *h) {
    cJSON_ReplaceItemInObject(tensor(h, "vision.proj.weight"), "dtype", cJSON_CreateString("Q7"));
}
static void m_dtype_f16(cJSON *h) {
    cJSON_ReplaceItemInObject(tensor(h, "vision.proj.weight"), "dtype", cJSON_CreateString("F16"));
}
static void m_missing(cJSON *h) { cJSON_DeleteItemFromObject(h, "vlm.norm.weight"); }
static void m_extra(cJSON *h) {
    double end = 0;
    for (cJSON *it = h->child; it; it = it->next)
        if (strcmp(it->string, "__metadata__") && offset(it, 1) > end)
            end = offset(it, 1);
    cJSON *t = cJSON_AddObjectToObject(h, "bogus.weight");
    cJSON_AddStringToObject(t, "dtype", "F32");
    cJSON *s = cJSON_AddArrayToObject(t, "shape");
    cJSON_AddItemToArray(s, cJSON_CreateNumber(0));
    cJSON *o = cJSON_AddArrayToObject(t, "data_offsets");
    cJSON_AddItemToArray(o, cJSON_CreateNumber(end));
    cJSON_AddItemToArray(o, cJSON_CreateNumber(end));
}
static void m_shape(cJSON *h) {
    cJSON *t = tensor(h, "vision.proj.weight"); /* [32, 32] -> [16, 64]: same bytes */
    cJSON *s = cJSON_CreateArray();
    cJSON_AddItemToArray(s, cJSON_CreateNumber(16));
    cJSON_AddItemToArray(s, cJSON_CreateNumber(64));
    cJSON_ReplaceItemInObject(t, "shape", s);
}
static void m_outside(cJSON *h) {
    cJSON *t = tensor(h, "expert.norm.weight");
    set_offsets(t, 1e9, 1e9 + 24 * 4);
}
static void m_overlap(cJSON *h) {
    cJSON *a = tensor(h, "vlm.layers.0.attn_norm.weight"), *b = tensor(h, "vlm.layers.0.mlp_norm.weight");
    set_offsets(b, offset(a, 0), offset(a, 1));
}
static void m_size(cJSON *h) {
    cJSON *t = tensor(h, "vision.norm.weight");
    set_offsets(t, offset(t, 0), offset(t, 1) - 4);
}
static void m_config(cJSON *h) {
    cJSON *meta = tensor(h, "__metadata__");
    cJSON *cfg = cJSON_Parse(cJSON_GetObjectItemCaseSensitive(meta, "vlad.config")->valuestring);
    cJSON_ReplaceItemInObject(cfg, "depth", cJSON_CreateNumber(0));
    char *s = cJSON_PrintUnformatted(cfg);
    cJSON_ReplaceItemInObject(meta, "vlad.config", cJSON_CreateString(s));
    free(s);
    cJSON_Delete(cfg);
}
static void m_config_unknown(cJSON *h) {
    cJSON *meta = tensor(h, "__metadata__");
    cJSON *cfg = cJSON_Parse(cJSON_GetObjectItemCaseSensitive(meta, "vlad.config")->valuestring);
    cJSON_AddNumberToObject(cfg, "n_experts", 3);
    char *s = cJSON_PrintUnformatted(cfg);
    cJSON_ReplaceItemInObject(meta, "vlad.config", cJSON_CreateString(s));
    free(s);
    cJSON_Delete(cfg);
}
static void m_format(cJSON *h) {
    cJSON_ReplaceItemInObject(tensor(h, "__metadata__"), "vlad.format", cJSON_CreateString("2"));
}
static void m_no_config(cJSON *h) {
    cJSON_DeleteItemFromObject(tensor(h, "__metadata__"), "vlad.config");
}

static void expect_load_error(const char *path, const char *needle1, const char *needle2) {
    vlad_err err = {0};
    vlad_model *m = NULL;
    int rc = vlad_model_load(path, &m, &err);
    printf("  expected error: %s\n", err.msg);
    assert_int_not_equal(rc, 0);
    assert_null(m);
    assert_non_null(strstr(err.msg, needle1));
    if (needle2)
        assert_non_null(strstr(err.msg, needle2));
}

static void test_loader_errors(void **state) {
    (void)state;
    char good[4200], dir[4096], p[4200];
    fx("tiny_f32_1cam.safetensors", good, sizeof good);
    assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/bad.safetensors", dir);
    /* the good one loads */
    vlad_err err = {0};
    vlad_model *m = NULL;
    assert_int_equal(vlad_model_load(good, &m, &err), 0);
    assert_int_equal(m->matrix_dtype, VLAD_DT_F32);
    assert_int_equal(vlad_model_param_count(m), vlad_config_param_count(&m->cfg));
    vlad_model_free(m);
    /* truncated header */
    size_t n;
    char *buf = tu_read(good, &n);
    assert_non_null(buf);
    assert_int_equal(tu_write(p, buf, 40), 0);
    expect_load_error(p, "bad header", NULL);
    assert_int_equal(tu_write(p, buf, 5), 0);
    expect_load_error(p, "bad header", NULL);
    /* bad JSON */
    char *bj = malloc(n);
    memcpy(bj, buf, n);
    memcpy(bj + 8, "{\"a\":[1,", 8);
    assert_int_equal(tu_write(p, bj, n), 0);
    expect_load_error(p, "bad header", "JSON");
    /* a header that is JSON but not an object; a length field past the end of the file */
    memcpy(bj, buf, n);
    memcpy(bj + 8, "[1, 2]  ", 8);
    assert_int_equal(tu_write(p, bj, n), 0);
    expect_load_error(p, "bad header", "not a JSON object");
    memcpy(bj, buf, n);
    bj[6] = 0x7f; /* header length ~2^54 */
    assert_int_equal(tu_write(p, bj, n), 0);
    expect_load_error(p, "bad header: header length", "file size");
    free(bj);
    /* empty; cut right after the header (no data at all) */
    assert_int_equal(tu_write(p, buf, 0), 0);
    expect_load_error(p, "bad header: file too short (0 bytes)", NULL);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)(uint8_t)buf[i] << (8 * i);
    assert_int_equal(tu_write(p, buf, 8 + (size_t)hlen), 0);
    expect_load_error(p, "outside the file's data section (0 bytes)", NULL);
    /* truncated data: last tensors' offsets fall outside the file */
    assert_int_equal(tu_write(p, buf, n - 64), 0);
    expect_load_error(p, "outside the file", "data_offsets");
    free(buf);
    struct {
        mutate_fn fn;
        const char *n1, *n2;
    } cases[] = {
        {m_dtype, "unknown dtype", "vision.proj.weight"},
        {m_dtype_f16, "unsupported dtype", "vision.proj.weight"},
        {m_missing, "missing tensor", "vlm.norm.weight"},
        {m_extra, "unexpected tensor", "bogus.weight"},
        {m_shape, "shape [16, 64], expected [32, 32]", "vision.proj.weight"},
        {m_outside, "outside", "expert.norm.weight"},
        {m_overlap, "overlap", "vlm.layers.0."},
        {m_size, "bytes for", "vision.norm.weight"},
        {m_config, "depth", "out of range"},
        {m_config_unknown, "unknown field", "n_experts"},
        {m_format, "vlad.format", NULL},
        {m_no_config, "vlad.config", "missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_mutated(good, p, cases[i].fn);
        expect_load_error(p, cases[i].n1, cases[i].n2);
    }
    /* NaN in the normalisation stats (data patched in place) */
    vlad_st_file *f = NULL;
    assert_int_equal(vlad_st_open(good, &f, &err), 0);
    const vlad_st_tensor *t = vlad_st_find(f, "norm.state.mean");
    buf = tu_read(good, &n);
    /* the data section starts after the 8-byte length and the header */
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++)
        hn |= (uint64_t)(uint8_t)buf[i] << (8 * i);
    size_t     off = 8 + (size_t)hn + t->begin;
    float nanv = NAN, zero = 0.0f;
    memcpy(buf + off + 4, &nanv, 4);
    assert_int_equal(tu_write(p, buf, n), 0);
    expect_load_error(p, "weight tensor 'norm.state.mean' element 1 is NaN", NULL);
    memcpy(buf + off + 4, &zero, 4); /* restore-ish, then a zero std */
    const vlad_st_tensor *ts = vlad_st_find(f, "norm.action.std");
    memcpy(buf + 8 + hn + ts->begin, &zero, 4);
    assert_int_equal(tu_write(p, buf, n), 0);
    expect_load_error(p, "norm.action.std", "not positive");
    free(buf);
    vlad_st_close(f);
    /* not a file */
    expect_load_error("/nonexistent/x.safetensors", "/nonexistent/x.safetensors", NULL);
    tu_rmtree(dir);
}

/* Write dst = src with `n` bytes at element `index` of tensor `name` replaced by `val`. */
static void write_patched(const char *src, const char *dst, const char *name, size_t index,
                          const void *val, size_t n) {
    vlad_err err = {0};
    vlad_st_file *f = NULL;
    assert_int_equal(vlad_st_open(src, &f, &err), 0);
    const vlad_st_tensor *t = vlad_st_find(f, name);
    assert_non_null(t);
    assert_int_equal(vlad_dtype_size(t->dtype), n);
    assert_true(index < (size_t)t->numel);
    size_t len = 0;
    char *buf = tu_read(src, &len);
    assert_non_null(buf);
    /* the data section starts after the 8-byte length and the header */
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++)
        hn |= (uint64_t)(uint8_t)buf[i] << (8 * i);
    memcpy(buf + 8 + hn + t->begin + index * n, val, n);
    assert_int_equal(tu_write(dst, buf, len), 0);
    free(buf);
    vlad_st_close(f);
}

/* A NaN or Inf anywhere in the weights is refused at load, naming the tensor and the flat
 * index of the first bad element (before, only the normalisation stats were checked: these
 * checkpoints loaded and produced NaN actions). */
static void test_nonfinite_weights(void **state) {
    (void)state;
    char f32[4200], bf16[4200], dir[4096], p[4200], want[300];
    fx("tiny_f32_1cam.safetensors", f32, sizeof f32);
    fx("tiny_bf16_2cam.safetensors", bf16, sizeof bf16);
    assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/nan.safetensors", dir);
    const float fnan = NAN, finf = INFINITY, fninf = -INFINITY;
    const uint16_t hnan = 0x7fc0, hinf = 0x7f80, hninf = 0xff80;
    struct {
        const char *file, *tensor;
        size_t index;
        const void *val;
        size_t n;
        const char *what;
    } cases[] = {
        {f32, "embed.weight", 1234, &fnan, 4, "NaN"},
        {f32, "vlm.layers.1.attn.q.weight", 1023, &finf, 4, "+Inf"}, /* the last element */
        {f32, "vision.patch_embed.weight", 0, &fninf, 4, "-Inf"},
        {f32, "vision.norm.weight", 31, &fnan, 4, "NaN"},
        {bf16, "vlm.layers.1.attn.q.weight", 700, &hnan, 2, "NaN"},  /* stays in the mapping */
        {bf16, "expert.action_out.weight", 59, &hninf, 2, "-Inf"},
        {bf16, "vision.norm.weight", 0, &hinf, 2, "+Inf"},            /* widened to F32 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_patched(cases[i].file, p, cases[i].tensor, cases[i].index, cases[i].val,
                      cases[i].n);
        snprintf(want, sizeof want, "nan.safetensors: weight tensor '%s' element %zu is %s",
                 cases[i].tensor, cases[i].index, cases[i].what);
        expect_load_error(p, want, NULL);
    }
    /* the first bad element is the one named */
    write_patched(f32, p, "embed.weight", 900, &finf, 4);
    char q[4200];
    snprintf(q, sizeof q, "%s/nan2.safetensors", dir);
    write_patched(p, q, "embed.weight", 5000, &fnan, 4);
    expect_load_error(q, "weight tensor 'embed.weight' element 900 is +Inf", NULL);
    /* the largest finite values are fine */
    const float big = 3.4e38f;
    write_patched(f32, p, "embed.weight", 7, &big, 4);
    vlad_err err = {0};
    vlad_model *m = NULL;
    assert_int_equal(vlad_model_load(p, &m, &err), 0);
    vlad_model_free(m);
    tu_rmtree(dir);
}

/* hang guard: a regression that blocks in open() fails the test instead of hanging it */
static const char *volatile g_step = "";
static void on_alarm(int sig) {
    (void)sig;
    static const char a[] = "test_policy_unit: HUNG opening ";
    ssize_t w = write(2, a, sizeof a - 1);
    w = write(2, g_step, strlen(g_step));
    w = write(2, "\n", 1);
    (void)w;
    _exit(1);
}

/* A FIFO or a device as the checkpoint is refused at once, saying what it is. */
static void test_special_file_checkpoints(void **state) {
    (void)state;
    char dir[4096], fifo[4200];
    assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(fifo, sizeof fifo, "%s/model.safetensors", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    signal(SIGALRM, on_alarm);
    g_step = fifo;
    alarm(60);
    expect_load_error(fifo, "model.safetensors: is a FIFO, not a regular file", NULL);
    g_step = "/dev/zero";
    expect_load_error("/dev/zero", "/dev/zero: is a character device, not a regular file", NULL);
    g_step = dir;
    expect_load_error(dir, "is a directory, not a regular file", NULL);
    alarm(0);
    tu_rmtree(dir);
}

static void test_bf16_checkpoint_loads(void **state) {
    (void)state;
    char p[4200];
    vlad_err err = {0};
    vlad_model *m = NULL;
    assert_int_equal(vlad_model_load(fx("tiny_bf16_2cam.safetensors", p, sizeof p), &m, &err), 0);
    assert_int_equal(m->matrix_dtype, VLAD_DT_BF16);
    assert_int_equal(m->cfg.n_cameras, 2);
    assert_true(m->owned_bytes > 0); /* vectors widened to F32 */
    vlad_model_free(m);
}

static void test_random_checkpoint(void **state) {
    (void)state;
    char dir[4096], p[4200];
    assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/r.safetensors", dir);
    vlad_err err = {0};
    vlad_config c = vlad_config_default();
    c.depth = 2;
    c.vit_depth = 1;
    assert_int_equal(vlad_model_write_random(&c, VLAD_DT_BF16, 5, p, &err), 0);
    vlad_model *m = NULL;
    assert_int_equal(vlad_model_load(p, &m, &err), 0);
    char *j1 = vlad_config_to_json(&m->cfg), *j2 = vlad_config_to_json(&c);
    assert_string_equal(j1, j2);
    free(j1);
    free(j2);
    assert_int_equal(vlad_model_param_count(m), vlad_config_param_count(&c));
    vlad_model_free(m);
    c.depth = 0;
    assert_int_not_equal(vlad_model_write_random(&c, VLAD_DT_F32, 5, p, &err), 0);
    tu_rmtree(dir);
}

/* ---- kernels ------------------------------------------------------------------------------------ */

static void test_matmul_bf16(void **state) {
    (void)state;
    enum { M = 3, N = 37, K = 29 };
    float x[M * K], wf[N * K], bias[N], y1[M * N], y2[M * N];
    uint16_t wb[N * K];
    vlad_rng r;
    vlad_rng_seed(&r, 1);
    for (int i = 0; i < M * K; i++)
        x[i] = (float)vlad_rng_normal(&r);
    for (int i = 0; i < N * K; i++) {
        wb[i] = vlad_f32_to_bf16((float)vlad_rng_normal(&r));
        wf[i] = vlad_bf16_to_f32(wb[i]);
    }
    for (int i = 0; i < N; i++)
        bias[i] = (float)i;
    vlad_scratch s = {.buf = malloc(vlad_matmul_scratch_floats(K) * sizeof(float)),
                      .cap = vlad_matmul_scratch_floats(K)};
    vlad_mat A = {.data = wf, .dtype = VLAD_DT_F32, .rows = N, .cols = K},
             B = {.data = wb, .dtype = VLAD_DT_BF16, .rows = N, .cols = K};
    vlad_matmul(&s, y1, N, x, K, M, &A, bias);
    vlad_matmul(&s, y2, N, x, K, M, &B, bias);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = bias[j];
            for (int k = 0; k < K; k++)
                ref += (double)x[i * K + k] * wf[j * K + k];
            assert_true(fabs(y1[i * N + j] - ref) < 1e-4);
            assert_true(fabs(y2[i * N + j] - ref) < 1e-4);
        }
    /* small M with K % 8 == 0 takes the BF16 GEMV path (decode) */
    enum { K2 = 32, N2 = (N * K) / K2 }; /* reuse the first N2*K2 weights */
    float x2[2 * K2], y3[2 * N];
    for (int i = 0; i < 2 * K2; i++)
        x2[i] = (float)vlad_rng_normal(&r);
    vlad_mat C = {.data = wb, .dtype = VLAD_DT_BF16, .rows = N2, .cols = K2},
             D = {.data = wf, .dtype = VLAD_DT_F32, .rows = N2, .cols = K2};
    vlad_matmul(&s, y3, N2, x2, K2, 2, &C, NULL);
    vlad_matmul(&s, y1, N2, x2, K2, 2, &D, NULL);
    for (int i = 0; i < 2 * N2; i++)
        assert_true(fabs(y3[i] - y1[i]) < 1e-4);
    free(s.buf);
    /* rmsnorm, rope */
    float v[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 1}, o[4];
    vlad_rmsnorm(o, v, w, 1, 4, 0.0f);
    double rms = sqrt((1 + 4 + 9 + 16) / 4.0);
    assert_true(fabs(o[2] - 2 * 3 / rms) < 1e-6);
    float cs[2 * 2] = {1, 1, 0, 0}, sn[2 * 2] = {0, 0, 1, 1}; /* pos 1: 90 degrees */
    float q[4] = {1, 2, 3, 4};
    vlad_rope(q, 4, 1, 1, 4, 1, cs, sn);
    assert_true(q[0] == -3 && q[1] == -4 && q[2] == 1 && q[3] == 2);
}

/* The GEMM on pre-packed weights (the flow step's path) against a double reference: every
 * row-block remainder (M = 1..13), a partial last panel (N = 37, 70), odd K, bias or none,
 * strided x and y, F32 and BF16 sources. */
static void test_matmul_packed(void **st) {
    (void)st;
    if (!vlad_pack_supported()) {
        skip();
        return;
    }
    enum { MM = 13, NN = 70, KK = 29, LDX = KK + 3, LDY = NN + 5 };
    float x[MM * LDX], wf[NN * KK], bias[NN], y[MM * LDY];
    uint16_t wb[NN * KK];
    vlad_rng r;
    vlad_rng_seed(&r, 7);
    for (int i = 0; i < MM * LDX; i++)
        x[i] = (float)vlad_rng_normal(&r);
    for (int i = 0; i < NN * KK; i++) {
        wb[i] = vlad_f32_to_bf16((float)vlad_rng_normal(&r));
        wf[i] = vlad_bf16_to_f32(wb[i]);
    }
    for (int i = 0; i < NN; i++)
        bias[i] = (float)i * 0.25f;
    int ns[2] = {37, NN};
    for (int src = 0; src < 2; src++)
        for (int ni = 0; ni < 2; ni++) {
            int N = ns[ni];
            vlad_mat W = {.data = src ? (const void *)wb : (const void *)wf,
                          .dtype = src ? VLAD_DT_BF16 : VLAD_DT_F32, .rows = N, .cols = KK};
            float *pk = aligned_alloc(64, vlad_pack_floats(N, KK) * sizeof(float));
            assert_non_null(pk);
            vlad_pack(pk, &W);
            W.packed = pk;
            vlad_scratch s = {.buf = NULL, .cap = 0};
            for (int M = 1; M <= MM; M++)
                for (int hb = 0; hb < 2; hb++) {
                    for (int i = 0; i < MM * LDY; i++)
                        y[i] = -999.0f;
                    vlad_matmul(&s, y, LDY, x, LDX, M, &W, hb ? bias : NULL);
                    for (int i = 0; i < MM; i++)
                        for (int j = 0; j < LDY; j++) {
                            if (i >= M || j >= N) { /* nothing written outside y[M, N] */
                                assert_true(y[i * LDY + j] == -999.0f);
                                continue;
                            }
                            double ref = hb ? bias[j] : 0.0;
                            for (int k = 0; k < KK; k++)
                                ref += (double)x[i * LDX + k] * wf[j * KK + k];
                            assert_true(fabs(y[i * LDY + j] - ref) < 1e-4);
                        }
                }
            free(pk);
        }
    /* >= 4 MFLOP: split over a 2-thread pool by column panels; each panel is computed as
     * without the pool, so the result is bit-identical */
    {
        enum { M2 = 20, N2 = 200, K2 = 600 };
        float *x2 = malloc(sizeof(float) * M2 * K2), *w2 = malloc(sizeof(float) * N2 * K2);
        float *pk = aligned_alloc(64, vlad_pack_floats(N2, K2) * sizeof(float));
        float *ya = malloc(sizeof(float) * M2 * N2), *yb = malloc(sizeof(float) * M2 * N2);
        assert_true(x2 && w2 && pk && ya && yb);
        for (int i = 0; i < M2 * K2; i++)
            x2[i] = (float)vlad_rng_normal(&r);
        for (int i = 0; i < N2 * K2; i++)
            w2[i] = (float)vlad_rng_normal(&r);
        vlad_mat W = {.data = w2, .dtype = VLAD_DT_F32, .rows = N2, .cols = K2};
        vlad_pack(pk, &W);
        W.packed = pk;
        vlad_scratch s1 = {.buf = NULL, .cap = 0}, s2 = s1;
        s2.pool = vlad_pool_new(2, 0);
        assert_non_null(s2.pool);
        vlad_matmul(&s1, ya, N2, x2, K2, M2, &W, NULL);
        vlad_matmul(&s2, yb, N2, x2, K2, M2, &W, NULL);
        assert_memory_equal(ya, yb, sizeof(float) * M2 * N2);
        double ref = 0.0;
        for (int k = 0; k < K2; k++)
            ref += (double)x2[3 * K2 + k] * w2[5 * K2 + k];
        assert_true(fabs(ya[3 * N2 + 5] - ref) < 1e-3);
        vlad_pool_free(s2.pool);
        free(x2);
        free(w2);
        free(pk);
        free(ya);
        free(yb);
    }
}

/* The attention on the packed kernel against the cblas one: two segments (the second with a
 * causal row limit), head_dim 64 (packed path) and 48 (falls back), strided q/K/V/out; alone
 * and with the heads split over a 2-thread pool. */
static void test_attention_packed(void **st) {
    (void)st;
    enum { MQ = 40, N1 = 200, N2 = 11, NH = 3, LD = 3 * 64 + 8 };
    int hds[2] = {64, 48};
    float *q = malloc(sizeof(float) * MQ * LD), *k1 = malloc(sizeof(float) * N1 * LD),
          *v1 = malloc(sizeof(float) * N1 * LD), *k2 = malloc(sizeof(float) * N2 * LD),
          *v2 = malloc(sizeof(float) * N2 * LD), *o1 = malloc(sizeof(float) * MQ * LD),
          *o2 = malloc(sizeof(float) * MQ * LD), *sc = malloc(sizeof(float) * MQ * (N1 + N2));
    vlad_rng r;
    vlad_rng_seed(&r, 11);
    float *all[5] = {q, k1, v1, k2, v2};
    int rows[5] = {MQ, N1, N1, N2, N2};
    for (int a = 0; a < 5; a++)
        for (int i = 0; i < rows[a] * LD; i++)
            all[a][i] = (float)vlad_rng_normal(&r);
    int lim[MQ];
    for (int i = 0; i < MQ; i++)
        lim[i] = i == 0 ? 1 : (i < N2 ? i + 1 : N2);
    vlad_scratch s = {.buf = NULL, .cap = 0};
    s.kcap = vlad_attention_scratch_floats(N1, 64);
    s.kbuf = malloc(sizeof(float) * s.kcap);
    vlad_pool *pool = vlad_pool_new(2, s.kcap + (size_t)MQ * (N1 + N2));
    assert_non_null(pool);
    for (int t = 0; t < 4; t++) {
        int hd = hds[t & 1];
        s.pool = t >= 2 ? pool : NULL;
        s.pool_scores = (size_t)MQ * (N1 + N2);
        vlad_kvseg segs[2] = {{k1, v1, N1, LD, NULL}, {k2, v2, N2, LD, lim}};
        vlad_attention(o1, LD, q, LD, MQ, NH, hd, segs, 2, sc);
        vlad_attention_s(&s, o2, LD, q, LD, MQ, NH, hd, segs, 2, sc);
        for (int i = 0; i < MQ; i++)
            for (int j = 0; j < NH * hd; j++)
                assert_true(fabsf(o1[i * LD + j] - o2[i * LD + j]) < 1e-5f);
    }
    vlad_pool_free(pool);
    free(s.kbuf);
    for (int a = 0; a < 5; a++)
        free(all[a]);
    free(o1);
    free(o2);
    free(sc);
}

/* ---- unified KV cache ----------------------------------------------------------------------------- */

typedef struct loaded {
    vlad_model *m;
    vlad_obs obs;
    const uint8_t *imgs[16];
    uint8_t *img2[16];
} loaded;

static void load_fixture(loaded *L, const char *name) {
    char p[4200], q[4200];
    vlad_err err = {0};
    snprintf(q, sizeof q, "%s.safetensors", name);
    assert_int_equal(vlad_model_load(fx(q, p, sizeof p), &L->m, &err), 0);
    snprintf(q, sizeof q, "%s.obs.json", name);
    assert_int_equal(vlad_obs_load(fx(q, p, sizeof p), &L->m->cfg, &L->obs, &err), 0);
    size_t isz = (size_t)L->m->cfg.image_size * L->m->cfg.image_size * 3;
    for (int i = 0; i < L->obs.n_images; i++) {
        L->imgs[i] = L->obs.images[i].rgb;
        L->img2[i] = malloc(isz);
        for (size_t k = 0; k < isz; k++)
            L->img2[i][k] = (uint8_t)(255 - L->obs.images[i].rgb[k]);
    }
}
static void unload_fixture(loaded *L) {
    for (int i = 0; i < L->obs.n_images; i++)
        free(L->img2[i]);
    vlad_obs_free(&L->obs);
    vlad_model_free(L->m);
}

static void answer_alone(const vlad_model *m, const uint8_t *const *imgs, const char *prompt,
                         const char *q, char *out, size_t cap) {
    vlad_err err = {0};
    vlad_runstate_opts o = {.n_threads = 1, .max_streams = 1};
    vlad_runstate *rs = vlad_runstate_new(m, &o, &err);
    assert_non_null(rs);
    assert_true(vlad_encode_prefix(rs, imgs, prompt, strlen(prompt), &err) >= 0);
    assert_int_equal(vlad_lang_generate(rs, q, strlen(q), out, cap, NULL, &err), 0);
    vlad_runstate_free(rs);
}

static void test_kv_streams(void **state) {
    (void)state;
    loaded L = {0};
    load_fixture(&L, "tiny_f32_1cam");
    vlad_err err = {0};
    const char *prompt = L.obs.prompt;
    char a1[64], a2[64], b1[64];
    answer_alone(L.m, L.imgs, prompt, "what now?", a1, sizeof a1);
    answer_alone(L.m, L.imgs, prompt, "where is it", a2, sizeof a2);
    answer_alone(L.m, (const uint8_t *const *)L.img2, prompt, "what now?", b1, sizeof b1);
    printf("answers: a1 %zu bytes, a2 %zu bytes, b1 %zu bytes\n", strlen(a1), strlen(a2),
           strlen(b1));
    vlad_runstate_opts o = {.n_threads = 1, .max_streams = 3};
    vlad_runstate *rs = vlad_runstate_new(L.m, &o, &err);
    assert_non_null(rs);
    const vlad_kvcache *kv = vlad_runstate_kv(rs);
    assert_int_equal(kv->n_prefix, 5);
    /* frame A: two streams, stepped together (batched) */
    int fa = vlad_encode_prefix(rs, L.imgs, prompt, strlen(prompt), &err);
    assert_true(fa >= 0);
    assert_int_equal(vlad_lang_begin(rs, 0, "what now?", 9, &err), 0);
    assert_int_equal(vlad_lang_begin(rs, 2, "where is it", 11, &err), 0);
    assert_int_equal(vlad_lang_begin(rs, 2, "x", 1, &err), VLAD_ESTATE); /* busy */
    assert_int_equal(kv->prefix[fa].refs, 3);
    assert_true(vlad_lang_step(rs, 2, &err) >= 0);
    /* frame B while A's streams are still decoding: A's block stays alive */
    int fb = vlad_encode_prefix(rs, (const uint8_t *const *)L.img2, prompt, strlen(prompt), &err);
    assert_true(fb >= 0 && fb != fa);
    assert_int_equal(kv->prefix[fa].refs, 2);
    assert_int_equal(vlad_runstate_prefix_block(rs), fb);
    float act[256];
    assert_int_equal(vlad_sample_actions(rs, L.obs.state, L.obs.noise, 0, act, &err), 0);
    assert_int_equal(vlad_lang_begin(rs, 1, "what now?", 9, &err), 0);
    vlad_lang_info li;
    assert_int_equal(vlad_lang_get(rs, 1, &li), 0);
    assert_int_equal(li.prefix_block, fb);
    assert_int_equal(vlad_lang_get(rs, 0, &li), 0);
    assert_int_equal(li.prefix_block, fa);
    while (vlad_lang_step(rs, 3, &err) > 0) {
    }
    char got[3][64];
    for (int s = 0; s < 3; s++) {
        assert_int_equal(vlad_lang_get(rs, s, &li), 0);
        assert_true(li.done);
        memcpy(got[s], li.text, (size_t)li.len);
        got[s][li.len] = '\0';
    }
    assert_string_equal(got[0], a1); /* stream on frame A unaffected by frame B */
    assert_string_equal(got[2], a2); /* batched == alone */
    assert_string_equal(got[1], b1);
    vlad_lang_end(rs, 0);
    assert_int_equal(kv->prefix[fa].refs, 1);
    vlad_lang_end(rs, 2);
    assert_int_equal(kv->prefix[fa].refs, 0); /* frame A released */
    vlad_lang_end(rs, 1);
    vlad_lang_end(rs, 1); /* no-op */
    assert_int_equal(kv->prefix[fb].refs, 1); /* current */
    vlad_runstate_free(rs);
    /* a pool of one block: a stream holding the frame makes a new encode fail cleanly */
    vlad_runstate_opts o1 = {.n_threads = 1, .max_streams = 1, .n_prefix = 1};
    rs = vlad_runstate_new(L.m, &o1, &err);
    assert_non_null(rs);
    assert_true(vlad_encode_prefix(rs, L.imgs, prompt, strlen(prompt), &err) >= 0);
    assert_int_equal(vlad_lang_begin(rs, 0, "", 0, &err), 0);
    assert_int_equal(vlad_encode_prefix(rs, L.imgs, prompt, strlen(prompt), &err), VLAD_EAGAIN);
    vlad_lang_end(rs, 0);
    vlad_runstate_free(rs);
    rs = vlad_runstate_new(L.m, &o1, &err);
    assert_true(vlad_encode_prefix(rs, L.imgs, prompt, strlen(prompt), &err) >= 0);
    assert_true(vlad_encode_prefix(rs, L.imgs, prompt, strlen(prompt), &err) >= 0);
    vlad_runstate_free(rs);
    unload_fixture(&L);
}

/* max_streams is limited by the engine's documented range [0, 64] only: a runstate with many
 * streams is built and every slot decodes like a stream alone; an allocation failing at any
 * point of vlad_runstate_new is reported as out of memory (and leaks nothing: LSan). */
static void test_many_streams(void **state) {
    (void)state;
    loaded L = {0};
    load_fixture(&L, "tiny_f32_1cam");
    vlad_err err = {0};
    const char *prompt = L.obs.prompt, *q = "what now?";
    char alone[64];
    answer_alone(L.m, L.imgs, prompt, q, alone, sizeof alone);
    const int counts[] = {19, 40, 64};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        vlad_runstate_opts o = {.n_threads = 1, .max_streams = counts[k]};
        vlad_runstate *rs = vlad_runstate_new(L.m, &o, &err);
        if (!rs)
            fail_msg("max_streams %d: %s", counts[k], err.msg);
        assert_int_equal(vlad_runstate_kv(rs)->n_streams, counts[k]);
        assert_true(vlad_encode_prefix(rs, L.imgs, prompt, strlen(prompt), &err) >= 0);
        for (int s = 0; s < counts[k]; s++)
            assert_int_equal(vlad_lang_begin(rs, s, q, strlen(q), &err), 0);
        while (vlad_lang_step(rs, 4, &err) > 0) {
        }
        for (int s = 0; s < counts[k]; s++) {
            vlad_lang_info li;
            assert_int_equal(vlad_lang_get(rs, s, &li), 0);
            assert_true(li.done);
            assert_int_equal((size_t)li.len, strlen(alone));
            assert_memory_equal(li.text, alone, strlen(alone));
            vlad_lang_end(rs, s);
        }
        vlad_runstate_free(rs);
    }
    /* fail the n-th allocation of vlad_runstate_new, n = 1, 2, ... until it no longer fails */
    vlad_runstate_opts o = {.n_threads = 1, .max_streams = 40};
    int failures = 0;
    for (long n = 1;; n++) {
        vlad_err e = {0};
        vlad_alloc_fail_at = vlad_allocs + n;
        vlad_runstate *rs = vlad_runstate_new(L.m, &o, &e);
        int injected = vlad_allocs >= vlad_alloc_fail_at;
        vlad_alloc_fail_at = 0;
        if (!injected) {
            assert_non_null(rs);
            vlad_runstate_free(rs);
            break;
        }
        assert_null(rs);
        assert_int_equal(e.code, VLAD_ENOMEM);
        assert_non_null(strstr(e.msg, "out of memory"));
        failures++;
    }
    printf("max_streams 40: each of %d allocations failing is reported as out of memory\n",
           failures);
    assert_true(failures > 40 + 40); /* one text buffer and one KV block per stream at least */
    unload_fixture(&L);
}

/* ---- no heap allocation per inference after warm-up --------------------------------------------- */

static void run_frame(vlad_runstate *rs, loaded *L, const uint8_t *const *imgs, float *act) {
    vlad_err err = {0};
    assert_true(vlad_encode_prefix(rs, imgs, L->obs.prompt, strlen(L->obs.prompt), &err) >= 0);
    assert_int_equal(vlad_sample_actions(rs, L->obs.state, L->obs.noise, 0, act, &err), 0);
    assert_int_equal(vlad_sample_actions(rs, L->obs.state, NULL, 42, act, &err), 0);
    assert_int_equal(vlad_lang_begin(rs, 0, "what now?", 9, &err), 0);
    assert_int_equal(vlad_lang_begin(rs, 1, "", 0, &err), 0);
    while (vlad_lang_step(rs, 2, &err) > 0) {
    }
    vlad_lang_end(rs, 0);
    vlad_lang_end(rs, 1);
}

static void test_no_alloc_after_warmup(void **state) {
    (void)state;
    const char *names[] = {"tiny_f32_1cam", "tiny_bf16_2cam"};
    for (int k = 0; k < 2; k++) {
        loaded L = {0};
        load_fixture(&L, names[k]);
        vlad_err err = {0};
        vlad_runstate_opts o = {.n_threads = 2, .max_streams = 2};
        long before = vlad_allocs;
        vlad_runstate *rs = vlad_runstate_new(L.m, &o, &err);
        assert_non_null(rs);
        assert_true(vlad_allocs > before); /* the wrapper does see the library's allocations */
        float act[256];
        run_frame(rs, &L, L.imgs, act); /* warm-up */
        long n0 = vlad_allocs;
        for (int i = 0; i < 3; i++)
            run_frame(rs, &L, i % 2 ? L.imgs : (const uint8_t *const *)L.img2, act);
        long n1 = vlad_allocs;
        printf("%s: %ld heap allocations in 3 frames after warm-up (runstate %zu bytes)\n",
               names[k], n1 - n0, vlad_runstate_bytes(rs));
        assert_int_equal(n1 - n0, 0);
        vlad_runstate_free(rs);
        unload_fixture(&L);
    }
}

/* ---- threads take the inferring thread's nice ------------------------------------------------------
 * With n_threads > 1 the engine's own helpers and OpenBLAS's pool threads (started before main
 * by OpenBLAS's constructor, or by openblas_set_num_threads from whoever created the runstate)
 * must not stay at nice 0 while the inferring thread runs at +10 (async/worker.c): they would
 * compete with the control thread at its priority. The runstate is made on the main thread
 * (nice 0) and used from a thread at +10; afterwards every thread but main has nice 10. */
typedef struct {
    vlad_runstate *rs;
    loaded *L;
    int rc; /* checked on the main thread (cmocka's asserts are not for other threads) */
} nice_ctx;

static void *nice_worker(void *a) {
    nice_ctx *c = a;
    vlad_err err = {0};
    float act[256];
    c->rc = setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) ? -100 : 0;
    if (!c->rc && vlad_encode_prefix(c->rs, c->L->imgs, c->L->obs.prompt,
                                     strlen(c->L->obs.prompt), &err) < 0)
        c->rc = -1;
    if (!c->rc)
        c->rc = vlad_sample_actions(c->rs, c->L->obs.state, c->L->obs.noise, 0, act, &err);
    return NULL;
}

static int task_nice(int tid, long *nice) {
    char p[96], buf[1024];
    snprintf(p, sizeof p, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *q = strrchr(buf, ')');
    if (!q)
        return -1;
    /* after "pid (comm)": field 3 is the state, field 19 the nice value */
    int field = 2;
    for (char *t = q + 1; *t; t++)
        if (*t == ' ' && ++field == 19) {
            *nice = strtol(t + 1, NULL, 10);
            return 0;
        }
    return -1;
}

static void test_threads_take_worker_nice(void **state) {
    (void)state;
    errno = 0;
    if (getpriority(PRIO_PROCESS, 0) != 0 || errno) {
        skip(); /* run at a nice other than 0: the check below would mean nothing */
        return;
    }
    loaded L = {0};
    load_fixture(&L, "tiny_f32_1cam");
    vlad_err err = {0};
    vlad_runstate_opts o = {.n_threads = 2, .max_streams = 1};
    vlad_runstate *rs = vlad_runstate_new(L.m, &o, &err);
    assert_non_null(rs);
    nice_ctx c = {rs, &L, -2};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, nice_worker, &c), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(c.rc, 0);
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    struct dirent *e;
    int others = 0;
    while ((e = readdir(d))) {
        int tid = atoi(e->d_name);
        long nice = 0;
        if (tid <= 0 || tid == (int)getpid() || task_nice(tid, &nice))
            continue;
        printf("thread %d: nice %ld\n", tid, nice);
        assert_int_equal(nice, 10);
        others++;
    }
    closedir(d);
    assert_true(others >= 1); /* at least the engine's own helper */
    vlad_runstate_free(rs);
    unload_fixture(&L);
}

/* ---- bad inputs ------------------------------------------------------------------------------------ */

static void test_bad_inputs(void **state) {
    (void)state;
    loaded L = {0};
    load_fixture(&L, "tiny_f32_1cam");
    vlad_err err = {0};
    vlad_runstate_opts o = {.n_threads = 1, .max_streams = 1};
    vlad_runstate *rs = vlad_runstate_new(L.m, &o, &err);
    float act[256], st[8] = {0};
    assert_int_equal(vlad_sample_actions(rs, st, NULL, 0, act, &err), VLAD_ESTATE);
    assert_int_equal(vlad_lang_begin(rs, 0, "", 0, &err), VLAD_ESTATE);
    assert_int_equal(vlad_encode_prefix(rs, NULL, "", 0, &err), VLAD_EINVAL);
    assert_true(vlad_encode_prefix(rs, L.imgs, NULL, 0, &err) >= 0);
    assert_int_equal(vlad_runstate_prefix_len(rs), 16 + 1);
    st[1] = NAN;
    assert_int_equal(vlad_sample_actions(rs, st, NULL, 0, act, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "state[1]"));
    assert_int_equal(vlad_lang_begin(rs, 5, "", 0, &err), VLAD_EINVAL);
    assert_int_equal(vlad_lang_step(rs, -1, &err), VLAD_EINVAL);
    /* a long prompt is cut at max_prompt_tokens */
    const char *lp = "0123456789abcdefghijklmnopqrstuvwxyz";
    assert_true(vlad_encode_prefix(rs, L.imgs, lp, strlen(lp), &err) >= 0);
    assert_int_equal(vlad_runstate_prefix_len(rs), 16 + 1 + L.m->cfg.max_prompt_tokens);
    vlad_runstate_opts bad = {.n_threads = 1, .max_streams = 65};
    assert_null(vlad_runstate_new(L.m, &bad, &err));
    vlad_runstate_free(rs);
    vlad_runstate_free(NULL);
    vlad_model_free(NULL);
    unload_fixture(&L);
}

static void test_images_and_obs(void **state) {
    (void)state;
    char dir[4096], p[4200], q[4200];
    assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
    vlad_err err = {0};
    uint8_t px[2 * 3 * 3];
    for (int i = 0; i < 18; i++)
        px[i] = (uint8_t)(i * 13);
    vlad_image im = {3, 2, px}, back;
    snprintf(p, sizeof p, "%s/a.ppm", dir);
    assert_int_equal(vlad_image_write_ppm(p, &im, &err), 0);
    assert_int_equal(vlad_image_load(p, &back, &err), 0);
    assert_int_equal(back.width, 3);
    assert_int_equal(back.height, 2);
    assert_memory_equal(back.rgb, px, 18);
    vlad_image_free(&back);
    const char *ascii = "P3\n# comment\n2 1\n255\n1 2 3  4 5 6\n";
    assert_int_equal(tu_write(p, ascii, strlen(ascii)), 0);
    assert_int_equal(vlad_image_load(p, &back, &err), 0);
    assert_int_equal(back.rgb[5], 6);
    vlad_image_free(&back);
    assert_int_equal(tu_write(p, "P6\n4 4\n255\nxx", 13), 0);
    assert_int_not_equal(vlad_image_load(p, &back, &err), 0);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_int_equal(tu_write(p, "GIF89a", 6), 0);
    assert_int_not_equal(vlad_image_load(p, &back, &err), 0);
    /* OBS.json checks against the config */
    vlad_config c = vlad_config_default();
    c.image_size = 2;
    c.patch_size = 1;
    c.state_dim = 2;
    c.chunk_size = 1;
    c.action_dim = 2;
    uint8_t sq[12] = {0};
    vlad_image s2 = {2, 2, sq};
    snprintf(p, sizeof p, "%s/c.ppm", dir);
    assert_int_equal(vlad_image_write_ppm(p, &s2, &err), 0);
    snprintf(q, sizeof q, "%s/o.json", dir);
    vlad_obs ob;
    const char *good = "{\"images\":[\"c.ppm\"],\"state\":[1,2],\"noise\":[[0.5,-1]],\"seed\":3}";
    assert_int_equal(tu_write(q, good, strlen(good)), 0);
    assert_int_equal(vlad_obs_load(q, &c, &ob, &err), 0);
    assert_true(ob.noise && ob.noise[1] == -1.0f && ob.seed == 3 && ob.question == NULL);
    assert_string_equal(ob.prompt, "");
    vlad_obs_free(&ob);
    const char *bads[][2] = {
        {"{\"images\":[\"c.ppm\"],\"state\":[1]}", "'state'"},
        {"{\"images\":[],\"state\":[1,2]}", "'images'"},
        {"{\"images\":[\"a.ppm\"],\"state\":[1,2]}", "model expects"},
        {"{\"images\":[\"c.ppm\"],\"state\":[1,2],\"noise\":[1,2,3]}", "'noise'"},
        {"{\"images\":[\"c.ppm\"],\"state\":[1,2],\"question\":5}", "'question'"},
        {"not json", "JSON"},
    };
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        assert_int_equal(tu_write(q, bads[i][0], strlen(bads[i][0])), 0);
        snprintf(p, sizeof p, "%s/a.ppm", dir); /* a 3x2 image */
        assert_int_equal(vlad_image_write_ppm(p, &im, &err), 0);
        assert_int_not_equal(vlad_obs_load(q, &c, &ob, &err), 0);
        vlad_obs_free(&ob);
        if (!strstr(err.msg, bads[i][1]))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bads[i][1]);
    }
    tu_rmtree(dir);
}

int main(void) {
    tu_fixture_dir(g_fx, sizeof g_fx);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_tokenizer),
        cmocka_unit_test(test_safetensors_roundtrip),
        cmocka_unit_test(test_loader_errors),
        cmocka_unit_test(test_nonfinite_weights),
        cmocka_unit_test(test_special_file_checkpoints),
        cmocka_unit_test(test_bf16_checkpoint_loads),
        cmocka_unit_test(test_random_checkpoint),
        cmocka_unit_test(test_matmul_bf16),
        cmocka_unit_test(test_matmul_packed),
        cmocka_unit_test(test_attention_packed),
        cmocka_unit_test(test_kv_streams),
        cmocka_unit_test(test_many_streams),
        cmocka_unit_test(test_no_alloc_after_warmup),
        cmocka_unit_test(test_threads_take_worker_nice),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_images_and_obs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
