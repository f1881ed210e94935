/* vlad-policy — inspect and run a vlad model checkpoint.
 *
 *   vlad-policy info MODEL
 *   vlad-policy run --model MODEL --input OBS.json [--threads N]
 *   vlad-policy random --out PATH [--preset default|smolvla] [--config JSON] [--dtype f32|bf16]
 *                      [--seed N]
 *
 * `run` prints {"actions": [[...], ...], "text": ..., ...} as JSON on stdout. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "cpu.h"
#include "model.h"
#include "obs.h"
#include "quant.h"
#include "tokenizer.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: vlad-policy info MODEL\n"
            "       vlad-policy run --model MODEL --input OBS.json [--threads N] [--repeat N]\n"
            "       vlad-policy random --out PATH [--preset default|smolvla] [--config JSON]\n"
            "                          [--dtype f32|bf16] [--seed N]\n");
}

static int cmd_info(int argc, char **argv) {
    if (argc != 1) {
        usage(stderr);
        return 2;
    }
    vlad_err err = {0};
    vlad_model *m = NULL;
    if (vlad_model_load(argv[0], &m, &err)) {
        fprintf(stderr, "vlad-policy: %s\n", err.msg);
        return 1;
    }
    vlad_runstate_opts o = {.n_threads = 1, .max_streams = 4};
    vlad_runstate *rs = vlad_runstate_new(m, &o, &err);
    if (!rs) {
        fprintf(stderr, "vlad-policy: %s\n", err.msg);
        vlad_model_free(m);
        return 1;
    }
    char *cj = vlad_config_to_json(&m->cfg);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "config", cJSON_Parse(cj ? cj : "{}"));
    free(cj);
    const vlad_config *c = &m->cfg;
    cJSON_AddNumberToObject(out, "parameters", (double)vlad_model_param_count(m));
    cJSON_AddStringToObject(out, "matrix_dtype", vlad_dtype_name(m->matrix_dtype));
    if (m->n_q8 || m->n_q4) { /* MODEL.md 1.1 */
        cJSON *q = cJSON_AddObjectToObject(out, "quant");
        cJSON_AddStringToObject(q, "format", m->n_q8 && m->n_q4 ? "Q8+Q4" : m->n_q4 ? "Q4" : "Q8");
        cJSON_AddNumberToObject(q, "q8_matrices", m->n_q8);
        cJSON_AddNumberToObject(q, "q4_matrices", m->n_q4);
        cJSON_AddNumberToObject(q, "plain_matrices", m->n_plain_mats);
        cJSON_AddNumberToObject(q, "awq_matrices", m->n_awq);
        cJSON_AddNumberToObject(q, "group_min", m->qgroup_min);
        cJSON_AddNumberToObject(q, "group_max", m->qgroup_max);
        cJSON_AddStringToObject(q, "embed", vlad_mat_kind(&m->w.embed_mat));
        if (m->quant_meta) {
            cJSON *mj = cJSON_Parse(m->quant_meta);
            if (mj)
                cJSON_AddItemToObject(q, "meta", mj);
            else
                cJSON_AddStringToObject(q, "meta", m->quant_meta);
        }
    }
    cJSON_AddNumberToObject(out, "file_bytes", (double)m->file_bytes);
    cJSON_AddNumberToObject(out, "converted_bytes", (double)m->owned_bytes);
    cJSON_AddNumberToObject(out, "n_patches", vlad_cfg_n_patches(c));
    cJSON_AddNumberToObject(out, "prefix_max", vlad_cfg_prefix_max(c));
    size_t blk = (size_t)c->depth * 2 * vlad_cfg_prefix_max(c) * vlad_cfg_kv_dim(c) * 4;
    cJSON_AddNumberToObject(out, "prefix_kv_block_bytes", (double)blk);
    cJSON_AddNumberToObject(out, "runstate_bytes_4_streams", (double)vlad_runstate_bytes(rs));
    cJSON_AddNumberToObject(out, "prefix_gflop_max",
                            vlad_flops_prefix(c, vlad_cfg_prefix_max(c)) * 1e-9);
    cJSON_AddNumberToObject(out, "flow_step_gflop_max",
                            vlad_flops_flow_step(c, vlad_cfg_prefix_max(c)) * 1e-9);
    char *s = cJSON_Print(out);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(out);
    vlad_runstate_free(rs);
    vlad_model_free(m);
    return 0;
}

/* Median of n values (sorts them); n >= 1. */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median_ms(double *v, int n) {
    if (!v || n < 1)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int cmd_run(int argc, char **argv) {
    const char *model = NULL, *input = NULL;
    int threads = 1, repeat = 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--input") && i + 1 < argc)
            input = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!model || !input || threads < 1 || threads > 256 || repeat < 1 || repeat > 100000) {
        usage(stderr);
        return 2;
    }
    vlad_err err = {0};
    vlad_model *m = NULL;
    vlad_runstate *rs = NULL;
    vlad_obs obs = {0};
    float *actions = NULL;
    int ret = 1;
    if (vlad_model_load(model, &m, &err))
        goto fail;
    const vlad_config *c = &m->cfg;
    if (vlad_obs_load(input, c, &obs, &err))
        goto fail;
    vlad_runstate_opts o = {.n_threads = threads, .max_streams = 1};
    rs = vlad_runstate_new(m, &o, &err);
    if (!rs)
        goto fail;
    const uint8_t *imgs[16];
    for (int i = 0; i < obs.n_images; i++)
        imgs[i] = obs.images[i].rgb;
    actions = malloc((size_t)c->chunk_size * c->action_dim * sizeof(float));
    double *whole = calloc((size_t)repeat, sizeof *whole); /* prefix + sample, per run */
    if (!actions || !whole) {
        free(whole);
        vlad_err_set(&err, VLAD_ENOMEM, "out of memory");
        goto fail;
    }
    /* --repeat N: the same inference N times (the first warms up); timings are the medians */
    double *pre = calloc((size_t)repeat, sizeof *pre), *smp = calloc((size_t)repeat, sizeof *smp);
    int rc_run = !pre || !smp ? vlad_err_set(&err, VLAD_ENOMEM, "out of memory") : 0;
    for (int r = 0; r < repeat && !rc_run; r++) {
        if (vlad_encode_prefix(rs, imgs, obs.prompt, strlen(obs.prompt), &err) < 0 ||
            vlad_sample_actions(rs, obs.state, obs.noise, obs.seed, actions, &err)) {
            rc_run = 1;
            break;
        }
        pre[r] = vlad_runstate_timing(rs)->prefix_ms;
        smp[r] = vlad_runstate_timing(rs)->sample_ms;
        whole[r] = pre[r] + smp[r];
    }
    double med_pre = median_ms(pre, repeat), med_smp = median_ms(smp, repeat);
    double med_whole = median_ms(whole, repeat);
    free(pre);
    free(smp);
    free(whole);
    if (rc_run)
        goto fail;
    cJSON *out = cJSON_CreateObject();
    cJSON *acts = cJSON_AddArrayToObject(out, "actions");
    for (int i = 0; i < c->chunk_size; i++) {
        cJSON *row = cJSON_CreateArray();
        for (int j = 0; j < c->action_dim; j++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber(actions[i * c->action_dim + j]));
        cJSON_AddItemToArray(acts, row);
    }
    cJSON_AddNumberToObject(out, "prefix_len", vlad_runstate_prefix_len(rs));
    const vlad_timing *t = vlad_runstate_timing(rs);
    double prefix_ms = med_pre, sample_ms = med_smp;
    if (repeat > 1) {
        cJSON_AddNumberToObject(out, "repeat", repeat);
        cJSON_AddNumberToObject(out, "inference_ms_median", med_whole);
    }
    if (obs.question) {
        if (vlad_lang_begin(rs, 0, obs.question, strlen(obs.question), &err)) {
            cJSON_Delete(out);
            goto fail;
        }
        while (vlad_lang_step(rs, c->max_text_tokens, &err) > 0) {
        }
        vlad_lang_info li;
        vlad_lang_get(rs, 0, &li);
        /* bytes as Latin-1 code points (valid UTF-8 JSON for any bytes), plus hex */
        char *txt = malloc(2 * (size_t)li.len + 1), *hex = malloc(2 * (size_t)li.len + 1);
        if (txt && hex) {
            size_t k = 0;
            for (int i = 0; i < li.len; i++) {
                uint8_t b = li.text[i];
                if (b < 0x80) {
                    txt[k++] = (char)b;
                } else {
                    txt[k++] = (char)(0xc0 | (b >> 6));
                    txt[k++] = (char)(0x80 | (b & 0x3f));
                }
                snprintf(hex + 2 * i, 3, "%02x", b);
            }
            txt[k] = '\0';
            hex[2 * li.len] = '\0';
            cJSON_AddStringToObject(out, "text", txt);
            cJSON_AddStringToObject(out, "text_hex", hex);
        }
        free(txt);
        free(hex);
        const char *en = vlad_tok_special_name(li.end_token);
        if (en)
            cJSON_AddStringToObject(out, "end_token", en);
        else
            cJSON_AddNullToObject(out, "end_token");
        vlad_lang_end(rs, 0);
    }
    cJSON *tm = cJSON_AddObjectToObject(out, "timing_ms");
    cJSON_AddNumberToObject(tm, "prefix", prefix_ms);
    cJSON_AddNumberToObject(tm, "sample_actions", sample_ms);
    cJSON_AddNumberToObject(tm, "flow_step", t->flow_step_ms);
    char *s = cJSON_Print(out);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(out);
    ret = 0;
fail:
    if (ret)
        fprintf(stderr, "vlad-policy: %s\n", err.msg);
    free(actions);
    vlad_obs_free(&obs);
    vlad_runstate_free(rs);
    vlad_model_free(m);
    return ret;
}

static int cmd_random(int argc, char **argv) {
    const char *outp = NULL, *preset = "default", *cfgjson = NULL;
    vlad_dtype dt = VLAD_DT_F32;
    unsigned long long seed = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc)
            outp = argv[++i];
        else if (!strcmp(argv[i], "--preset") && i + 1 < argc)
            preset = argv[++i];
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            cfgjson = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            const char *d = argv[++i];
            if (!strcmp(d, "bf16") || !strcmp(d, "BF16"))
                dt = VLAD_DT_BF16;
            else if (strcmp(d, "f32") && strcmp(d, "F32")) {
                usage(stderr);
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!outp) {
        usage(stderr);
        return 2;
    }
    vlad_err err = {0};
    vlad_config c;
    int rc = cfgjson ? vlad_config_from_json(cfgjson, &c, &err)
                     : vlad_config_preset(preset, &c, &err);
    if (!rc)
        rc = vlad_model_write_random(&c, dt, seed, outp, &err);
    if (rc) {
        fprintf(stderr, "vlad-policy: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    vlad_blas_coretype_init(argv); /* OpenBLAS kernels for this CPU (cpu.h); may re-exec */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "info"))
        return cmd_info(argc - 2, argv + 2);
    if (!strcmp(argv[1], "run"))
        return cmd_run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "random"))
        return cmd_random(argc - 2, argv + 2);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
