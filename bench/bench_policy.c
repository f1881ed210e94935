/* vlad-bench policy — the default model against the scripted expert, daemon + sim in
 * lockstep on every task, and the language accuracy on held-out episodes.
 *
 *   vlad-bench policy [--model M] [--profile P] [--episodes N] [--seed S] [--tasks T]
 *                     [--mode sync|naive|vlash] [--K K] [--heldout DIR] [--work DIR]
 *                     [--json FILE] [--no-expert] [--noise-scale X] [--only-language]
 */
#include <cjson/cJSON.h>
#include <glob.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "closedloop.h"
#include "clock.h"
#include "dataset.h"
#include "engine.h"
#include "views.h"
#include "model.h"

#define LANG_MAX_QUESTIONS 32
typedef struct lang_stats {
    int qa_total, qa_correct, comm_total, comm_correct, episodes;
    double ms_per_answer;
    int n_q; /* per distinct question (the first LANG_MAX_QUESTIONS seen) */
    struct {
        char q[96];
        int total, correct;
    } per_q[LANG_MAX_QUESTIONS];
} lang_stats;

static void lang_count(lang_stats *ls, const char *q, bool ok) {
    int i = 0;
    while (i < ls->n_q && strcmp(ls->per_q[i].q, q))
        i++;
    if (i == ls->n_q) {
        if (ls->n_q == LANG_MAX_QUESTIONS)
            return;
        snprintf(ls->per_q[i].q, sizeof ls->per_q[i].q, "%s", q);
        ls->n_q++;
    }
    ls->per_q[i].total++;
    ls->per_q[i].correct += ok;
}

/* Every `stride`-th frame of every held-out episode: the frame's questions and its
 * commentary, answered greedily by the C engine after the prefix [image, instruction]. */
static int language_eval(const char *model_path, const char *dir, int stride, lang_stats *ls,
                         FILE *log, vlad_err *err) {
    memset(ls, 0, sizeof *ls);
    char pat[1024];
    snprintf(pat, sizeof pat, "%s/**/episode_*.safetensors", dir);
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0) {
        snprintf(pat, sizeof pat, "%s/episode_*.safetensors", dir);
        if (glob(pat, 0, NULL, &g) != 0)
            return vlad_err_set(err, VLAD_EIO, "%s: no held-out episodes", dir);
    }
    vlad_model *m = NULL;
    int rc = vlad_model_load(model_path, &m, err);
    if (rc) {
        globfree(&g);
        return rc;
    }
    vlad_runstate_opts o = {.n_threads = 1, .max_streams = 1};
    vlad_runstate *rs = vlad_runstate_new(m, &o, err);
    if (!rs) {
        vlad_model_free(m);
        globfree(&g);
        return err->code;
    }
    double t_answers = 0;
    int n_answers = 0;
    vlad_views views; /* the model's image inputs: camera c of frame t - lag (views.h) */
    for (size_t i = 0; i < g.gl_pathc && !rc; i++) {
        vlad_st_file *f = NULL;
        if ((rc = vlad_st_open(g.gl_pathv[i], &f, err)))
            break;
        const vlad_st_tensor *im = vlad_st_find(f, "images");
        const char *instr = vlad_st_meta(f, "instruction");
        cJSON *labels = cJSON_Parse(vlad_st_meta(f, "labels") ? vlad_st_meta(f, "labels") : "");
        vlad_err verr = {0};
        if (!im || im->ndim != 5 || !cJSON_IsArray(labels) || im->shape[2] != m->cfg.image_size ||
            vlad_views_parse(m->file ? vlad_st_meta(m->file, "vlad.views") : NULL,
                             m->cfg.n_cameras, (int)im->shape[1], &views, &verr)) {
            rc = vlad_err_set(err, VLAD_EINVAL, "%s: images/labels do not fit the model%s%s",
                              g.gl_pathv[i], verr.msg[0] ? ": " : "", verr.msg);
            cJSON_Delete(labels);
            vlad_st_close(f);
            break;
        }
        ls->episodes++;
        int T = (int)im->shape[0];
        size_t frame = (size_t)im->shape[1] * (size_t)im->shape[2] * (size_t)im->shape[3] * 3;
        size_t cam = frame / (size_t)im->shape[1];
        for (int t = 0; t < T && !rc; t += stride) {
            const uint8_t *cams[VLAD_MAX_CAMERAS];
            for (int v = 0; v < views.n; v++)
                cams[v] = (const uint8_t *)im->data +
                          (size_t)vlad_views_frame_index(&views, v, t) * frame +
                          (size_t)views.v[v].camera * cam;
            if ((rc = vlad_encode_prefix(rs, cams, instr ? instr : "", instr ? strlen(instr) : 0, err)) < 0)
                break;
            rc = 0;
            const cJSON *lab = cJSON_GetArrayItem(labels, t);
            const cJSON *qa = cJSON_GetObjectItemCaseSensitive(lab, "qa");
            const cJSON *comm = cJSON_GetObjectItemCaseSensitive(lab, "commentary");
            char ans[256];
            const cJSON *pair;
            cJSON_ArrayForEach(pair, qa) {
                const cJSON *q = cJSON_GetArrayItem(pair, 0), *want = cJSON_GetArrayItem(pair, 1);
                if (!cJSON_IsString(q) || !cJSON_IsString(want))
                    continue;
                int64_t t0 = vlad_now_ns();
                if ((rc = vlad_lang_generate(rs, q->valuestring, strlen(q->valuestring), ans,
                                             sizeof ans, NULL, err)) < 0)
                    break;
                rc = 0;
                t_answers += (double)(vlad_now_ns() - t0) / 1e6;
                n_answers++;
                bool ok = !strcmp(ans, want->valuestring);
                ls->qa_total++;
                ls->qa_correct += ok;
                lang_count(ls, q->valuestring, ok);
            }
            if (!rc && cJSON_IsString(comm)) {
                if ((rc = vlad_lang_generate(rs, "", 0, ans, sizeof ans, NULL, err)) < 0)
                    break;
                rc = 0;
                ls->comm_total++;
                ls->comm_correct += !strcmp(ans, comm->valuestring);
            }
        }
        cJSON_Delete(labels);
        vlad_st_close(f);
    }
    if (log)
        fprintf(log, "language: %d episodes, %d scene questions, %d commentaries\n", ls->episodes,
                ls->qa_total, ls->comm_total);
    ls->ms_per_answer = n_answers ? t_answers / n_answers : NAN;
    vlad_runstate_free(rs);
    vlad_model_free(m);
    globfree(&g);
    return rc;
}

static cJSON *stats_json(const bench_task_stats *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", s->task);
    cJSON_AddNumberToObject(o, "episodes", s->episodes);
    cJSON_AddNumberToObject(o, "success", s->success);
    if (!isnan(s->completion_s))
        cJSON_AddNumberToObject(o, "completion_s", s->completion_s);
    cJSON_AddNumberToObject(o, "mean_sq_jerk", s->jerk);
    cJSON_AddNumberToObject(o, "stall_ticks_per_episode", s->stall_ticks);
    return o;
}

int bench_policy_main(int argc, char **argv) {
    const char *model = "models/vlad-default.safetensors", *profile = "configs/sim-arm.yaml";
    char default_work[256];
    const char *tasks = "all", *heldout = "data/heldout", *work = bench_default_work(default_work, sizeof default_work, "policy");
    const char *json = NULL;
    int episodes = 50, K = 10, no_expert = 0, only_lang = 0;
    double noise = 1.0;
    uint64_t seed64 = 1;
    bench_choice modec = {.allowed = "sync|naive|vlash", .value = "sync"};
    const vlad_opt opts[] = {
        BENCH_STR("model", &model, "M", "checkpoint"),
        BENCH_STR("profile", &profile, "P", "base robot profile"),
        BENCH_INT("episodes", &episodes, "N", "episodes per task", 1, 100000),
        BENCH_U64("seed", &seed64, "S", "first episode seed", 0, 1e9),
        BENCH_STR("tasks", &tasks, "T", "vlad-sim tasks (comma-separated, or all)"),
        BENCH_CALL("mode", &modec, "sync|naive|vlash", "scheduler (default sync)", bench_opt_choice),
        BENCH_INT("K", &K, "K", "execution horizon (ticks)", 1, 1000),
        BENCH_STR("heldout", &heldout, "DIR", "held-out episodes for the language figures"),
        BENCH_STR("work", &work, "DIR", "folder for the runs"),
        BENCH_STR("json", &json, "FILE", "write the results as JSON"),
        BENCH_FLAG("no-expert", &no_expert, "skip the scripted expert's reference run"),
        BENCH_DBL("noise-scale", &noise, "X", "policy.noise_scale", 0, 100),
        BENCH_FLAG("only-language", &only_lang, "only the language accuracy"),
        BENCH_OPT_END,
    };
    int status;
    if (!bench_opts("vlad-bench policy", "vlad-bench policy [options]", opts, argc, argv, &status))
        return status;
    const unsigned seed = (unsigned)seed64;
    const char *mode = modec.value;
    static vlad_profile p;
    vlad_err err;
    if (bench_setup("vlad-bench policy", profile, &p))
        return 2;
    bench_run r = {.base = &p, .model = model, .mode = mode, .K = K, .threshold = 0, .margin = 0,
                   .threads = 1, .tasks = tasks, .episodes = episodes, .seed = seed,
                   .noise_scale = noise};
    bench_task_stats ms[BENCH_MAX_TASKS], es[BENCH_MAX_TASKS];
    int nm = 0, ne = 0;
    char dir[1024];
    int64_t t0 = vlad_now_ns();
    snprintf(dir, sizeof dir, "%s/model-%s", work, mode);
    if (!only_lang)
        fprintf(stderr, "policy: %s, %s, K=%d, %d episodes per task (lockstep) ...\n", model, mode, K, episodes);
    if (!only_lang && bench_closed_loop(&r, dir, ms, &nm, &err)) {
        fprintf(stderr, "vlad-bench policy: %s\n", err.msg);
        return 1;
    }
    if (!no_expert && !only_lang) {
        bench_run e = r;
        e.model = NULL;
        snprintf(dir, sizeof dir, "%s/expert", work);
        fprintf(stderr, "scripted expert ...\n");
        if (bench_closed_loop(&e, dir, es, &ne, &err)) {
            fprintf(stderr, "vlad-bench policy: %s\n", err.msg);
            return 1;
        }
    }
    lang_stats ls;
    int have_lang = 0;
    if (heldout && heldout[0]) {
        fprintf(stderr, "language on %s ...\n", heldout);
        if (language_eval(model, heldout, 10, &ls, stderr, &err))
            fprintf(stderr, "vlad-bench policy: language: %s\n", err.msg);
        else
            have_lang = 1;
    }
    printf("\nvlad-bench policy: %s, mode %s, K=%d, %d episodes per task, seed %u, lockstep (%.0f s)\n\n",
           model, mode, K, episodes, seed, (double)(vlad_now_ns() - t0) / 1e9);
    if (nm > 0) {
        printf("| task  | success model | success expert | completion s model / expert | sq jerk model / expert | stall ticks/ep |\n");
        printf("|-------|--------------:|---------------:|----------------------------:|-----------------------:|---------------:|\n");
        for (int i = 0; i < nm; i++) {
            const bench_task_stats *x = &ms[i], *y = NULL;
            for (int k = 0; k < ne; k++)
                if (!strcmp(es[k].task, x->task))
                    y = &es[k];
            char ys[16] = "-", yc[16] = "-", yj[16] = "-"; /* no expert run (--no-expert) */
            if (y) {
                snprintf(ys, sizeof ys, "%.0f%%", 100 * y->success);
                snprintf(yc, sizeof yc, "%.2f", y->completion_s);
                snprintf(yj, sizeof yj, "%.3g", y->jerk);
            }
            printf("| %-5s | %12.0f%% | %14s | %12.2f / %-12s | %9.3g / %-9s | %14.1f |\n", x->task,
                   100 * x->success, ys, x->completion_s, yc, x->jerk, yj, x->stall_ticks);
        }
    }
    if (have_lang) {
        printf("\nlanguage (held-out, C engine, greedy): scene answers %d/%d = %.1f%% exact match; "
               "commentary %d/%d = %.1f%%; %.2f ms per answer\n",
               ls.qa_correct, ls.qa_total, ls.qa_total ? 100.0 * ls.qa_correct / ls.qa_total : 0,
               ls.comm_correct, ls.comm_total, ls.comm_total ? 100.0 * ls.comm_correct / ls.comm_total : 0,
               ls.ms_per_answer);
        printf("\n| scene question | exact match |\n|---|---:|\n");
        for (int i = 0; i < ls.n_q; i++)
            printf("| %s | %d/%d = %.1f%% |\n", ls.per_q[i].q, ls.per_q[i].correct, ls.per_q[i].total,
                   100.0 * ls.per_q[i].correct / ls.per_q[i].total);
    }
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "model", model);
        cJSON_AddStringToObject(root, "mode", mode);
        cJSON_AddNumberToObject(root, "K", K);
        cJSON_AddNumberToObject(root, "episodes", episodes);
        cJSON_AddNumberToObject(root, "seed", seed);
        cJSON_AddNumberToObject(root, "noise_scale", noise);
        cJSON *am = cJSON_AddArrayToObject(root, "model_results");
        for (int i = 0; i < nm; i++)
            cJSON_AddItemToArray(am, stats_json(&ms[i]));
        cJSON *ae = cJSON_AddArrayToObject(root, "expert_results");
        for (int i = 0; i < ne; i++)
            cJSON_AddItemToArray(ae, stats_json(&es[i]));
        if (have_lang) {
            cJSON *l = cJSON_AddObjectToObject(root, "language");
            cJSON_AddNumberToObject(l, "episodes", ls.episodes);
            cJSON_AddNumberToObject(l, "scene_questions", ls.qa_total);
            cJSON_AddNumberToObject(l, "scene_exact_match", ls.qa_total ? (double)ls.qa_correct / ls.qa_total : 0);
            cJSON_AddNumberToObject(l, "commentaries", ls.comm_total);
            cJSON_AddNumberToObject(l, "commentary_exact_match",
                                    ls.comm_total ? (double)ls.comm_correct / ls.comm_total : 0);
            cJSON_AddNumberToObject(l, "ms_per_answer", ls.ms_per_answer);
            cJSON *pq = cJSON_AddArrayToObject(l, "per_question");
            for (int i = 0; i < ls.n_q; i++) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "question", ls.per_q[i].q);
                cJSON_AddNumberToObject(o, "total", ls.per_q[i].total);
                cJSON_AddNumberToObject(o, "exact_match", (double)ls.per_q[i].correct / ls.per_q[i].total);
                cJSON_AddItemToArray(pq, o);
            }
        }
        bench_write_json(json, root);
    }
    return 0;
}
