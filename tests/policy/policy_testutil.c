#include "policy_testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "model.h"
#include "obs.h"
#include "safetensors.h"

const char *tu_src(void) {
    const char *s = getenv("VLAD_SRC");
    return s && *s ? s : ".";
}

const char *tu_fixture_dir(char *buf, size_t n) {
    snprintf(buf, n, "%s/tests/policy/fixtures", tu_src());
    return buf;
}

int tu_mkdtemp(char *buf, size_t n) {
    const char *t = getenv("TMPDIR");
    snprintf(buf, n, "%s/vlad-policy-test-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(buf) ? 0 : -1;
}

void tu_rmtree(const char *dir) {
    if (!dir || strncmp(dir, "/tmp/", 5) != 0 || strstr(dir, "vlad-policy-test-") == NULL)
        return; /* only our own temp dirs */
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

char *tu_read(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    if (b) {
        b[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return b;
}

int tu_write(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    int ok = fwrite(data, 1, len, fp) == len;
    return (fclose(fp) == 0 && ok) ? 0 : -1;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) /* NaN counts as infinite */
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

void fx_check(const char *dir, const char *name, int n_threads, fx_result *r) {
    memset(r, 0, sizeof *r);
    char path[4096];
    vlad_err err = {0};
    vlad_model *m = NULL;
    vlad_runstate *rs = NULL;
    vlad_st_file *ex = NULL;
    vlad_obs obs = {0};
    float *act = NULL, *act2 = NULL;
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    if (vlad_model_load(path, &m, &err))
        goto fail;
    const vlad_config *c = &m->cfg;
    snprintf(path, sizeof path, "%s/%s.obs.json", dir, name);
    if (vlad_obs_load(path, c, &obs, &err))
        goto fail;
    snprintf(path, sizeof path, "%s/%s.expected.safetensors", dir, name);
    if (vlad_st_open(path, &ex, &err))
        goto fail;
    const vlad_st_tensor *ea = vlad_st_find(ex, "actions"), *ek = vlad_st_find(ex, "prefix_k"),
                         *ev = vlad_st_find(ex, "prefix_v");
    const char *kl = vlad_st_meta(ex, "kv_layer"), *th = vlad_st_meta(ex, "text_hex"),
               *et = vlad_st_meta(ex, "end_token");
    if (!ea || !ek || !ev || !kl || !th || !et || ea->dtype != VLAD_DT_F32 ||
        ek->dtype != VLAD_DT_F32 || ev->dtype != VLAD_DT_F32) {
        vlad_err_set(&err, VLAD_EINVAL, "%s: incomplete expected file", path);
        goto fail;
    }
    int H = c->chunk_size, A = c->action_dim, L = atoi(kl), kvd = vlad_cfg_kv_dim(c);
    if (ea->numel != (int64_t)H * A || L < 0 || L >= c->depth) {
        vlad_err_set(&err, VLAD_EINVAL, "%s: expected outputs do not fit the config", path);
        goto fail;
    }
    vlad_runstate_opts o = {.n_threads = n_threads, .max_streams = 2};
    rs = vlad_runstate_new(m, &o, &err);
    if (!rs)
        goto fail;
    const uint8_t *imgs[16];
    for (int i = 0; i < obs.n_images; i++)
        imgs[i] = obs.images[i].rgb;
    int blk = vlad_encode_prefix(rs, imgs, obs.prompt, strlen(obs.prompt), &err);
    if (blk < 0)
        goto fail;
    r->S = vlad_runstate_prefix_len(rs);
    r->S_expected = (int)(ek->numel / kvd);
    if (r->S != r->S_expected || ek->numel != (int64_t)r->S * kvd) {
        vlad_err_set(&err, VLAD_EINVAL, "prefix length %d, expected %d", r->S, r->S_expected);
        goto fail;
    }
    /* the expected tensors are F32, 8-byte aligned by the writer; copy to be safe */
    size_t nkv = (size_t)r->S * kvd;
    float *tmp = malloc(nkv * sizeof(float));
    act = malloc((size_t)H * A * sizeof(float));
    act2 = malloc((size_t)H * A * sizeof(float));
    if (!tmp || !act || !act2) {
        free(tmp);
        vlad_err_set(&err, VLAD_ENOMEM, "oom");
        goto fail;
    }
    const vlad_kvcache *kv = vlad_runstate_kv(rs);
    memcpy(tmp, ek->data, nkv * sizeof(float));
    double ek_err = max_abs_diff(vlad_kv_prefix_k(kv, blk, L), tmp, nkv);
    memcpy(tmp, ev->data, nkv * sizeof(float));
    double ev_err = max_abs_diff(vlad_kv_prefix_v(kv, blk, L), tmp, nkv);
    free(tmp);
    r->kv_err = ek_err > ev_err ? ek_err : ev_err;
    if (vlad_sample_actions(rs, obs.state, obs.noise, obs.seed, act, &err))
        goto fail;
    float *exa = malloc((size_t)H * A * sizeof(float));
    if (!exa)
        goto fail;
    memcpy(exa, ea->data, (size_t)H * A * sizeof(float));
    r->act_err = max_abs_diff(act, exa, (size_t)H * A);
    free(exa);
    /* greedy text */
    if (vlad_lang_begin(rs, 1, obs.question ? obs.question : "",
                        obs.question ? strlen(obs.question) : 0, &err))
        goto fail;
    while (vlad_lang_step(rs, 3, &err) > 0) {
    }
    vlad_lang_info li;
    vlad_lang_get(rs, 1, &li);
    r->text_len = li.len;
    for (int i = 0; i < li.len && 2 * i + 2 < (int)sizeof r->text_hex; i++)
        snprintf(r->text_hex + 2 * i, 3, "%02x", li.text[i]);
    snprintf(r->text_hex_expected, sizeof r->text_hex_expected, "%s", th);
    r->text_ok = !strcmp(r->text_hex, th) && li.end_token == atoi(et);
    vlad_lang_end(rs, 1);
    /* again, with 2 threads, on a re-encoded frame: same numbers */
    vlad_runstate_set_threads(rs, 2);
    if (vlad_encode_prefix(rs, imgs, obs.prompt, strlen(obs.prompt), &err) < 0 ||
        vlad_sample_actions(rs, obs.state, obs.noise, obs.seed, act2, &err))
        goto fail;
    r->runs_equal = max_abs_diff(act, act2, (size_t)H * A) <= 1e-5;
    vlad_runstate_set_threads(rs, n_threads);
    r->ok = 1;
fail:
    if (!r->ok)
        snprintf(r->msg, sizeof r->msg, "%s: %s", name, err.msg);
    free(act);
    free(act2);
    vlad_obs_free(&obs);
    vlad_st_close(ex);
    vlad_runstate_free(rs);
    vlad_model_free(m);
}
