/* vlad-bench kv — the unified KV cache (OxyGen, arXiv 2603.14371) on the C engine alone.
 *
 * Workload (OxyGen's): one observation frame after another; per frame an action chunk and one
 * new language request (a fixed question), answered with exactly T tokens (the end token is
 * disabled: vlad_runstate_opts.lang_ignore_end). Configurations:
 *   actions-only  encode_prefix + sample_actions; no language (the action-latency baseline)
 *   isolated      actions, then a second encode_prefix of the same images for language and the
 *                 answer decoded to its end (B = 1) before the next frame
 *   shared        one encode_prefix; actions; the answer decoded to its end on the same prefix
 *   unified       one encode_prefix; actions; begin the new stream; one vlad_lang_step(k) that
 *                 advances every active stream k tokens (cross-frame continuous batching, each
 *                 stream reading the prefix block of the frame it began on); finished streams
 *                 are read and ended
 * Sweep: T in {32, 100}, N (flow steps) in {5, 10}, k in {1, 2, 4, 8}; models: the default
 * checkpoint (models/vlad-default.safetensors) and a SmolVLA-scale config with random weights.
 * Every configuration of one (model, T, N) has its own runstate of the same settings (model,
 * T, N, threads; unified: ceil(T/k)+1 slots, at most 64). Default model: the configurations
 * run interleaved, one frame of each in turn, so that a change of machine load hits them
 * alike; SmolVLA-scale: one after the other (one runstate at a time: they are large).
 *
 * Behaviour is checked, not speed: prefills per frame (the engine's own frame counter: 2 for
 * isolated, 1 otherwise), every answer exactly T tokens (the engine's per-step token count
 * against the streams' own counts, and the done flag exactly when a count reaches T), and no
 * stream slot or prefix block in use after all streams ended (only the current frame's block,
 * held by the runstate itself). Any failure: exit status 1.
 *
 * Options: --json FILE, --quick, --only default|smolvla, --threads N, --frames N (measured
 *          frames, both models), --model PATH (default checkpoint), --keep DIR (SmolVLA
 *          checkpoint kept there and reused), --smolvla-full (the whole sweep on SmolVLA too,
 *          no time budget), --budget S (skip configurations estimated to end past S seconds
 *          from the start; default 570, 0 = none), --fast-warmup (the default model measured
 *          the SmolVLA way: one configuration after the other, staggered-stream warm-up, no
 *          drain; to compare the two methods). */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "kv_loop.h"
#include "engine.h"
#include "model.h"
#include "rng.h"

#ifndef VLAD_SOURCE_DIR
#define VLAD_SOURCE_DIR "."
#endif

#define KV_SLOTS_MAX 64 /* the engine's stream slot limit */
#define KV_NIMG 4       /* distinct observation frames, cycled */
#define KV_CAMS 16      /* vlad_config n_cameras upper bound */
#define KV_HORIZON 10   /* execution horizon: actions executed per chunk (OxyGen) */
#define KV_MAX_ROWS 128
#define KV_MAX_CFG 8    /* configurations of one (model, T, N) */

static const char *k_prompt = "pick up the red cube and put it in the bin";
static const char *k_question = "what is the robot doing?";

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static int cmp_i(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}
static double pct(const double *v, int n, double p) { /* v sorted */
    if (n <= 0)
        return 0;
    int i = (int)ceil(p * n) - 1;
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}
static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* ---- rows ------------------------------------------------------------------------------ */

typedef enum { CF_ACTIONS, CF_ISOLATED, CF_SHARED, CF_UNIFIED } cf_kind;
static const char *const k_kind[] = {"actions-only", "isolated", "shared", "unified"};

typedef struct {
    const char *model;
    int T, N, k; /* k = 0: not unified */
    cf_kind kind;
    int warm, frames;      /* warm-up (not measured) and measured frames */
    int fast_warm;         /* warm-up: staggered streams on one frame instead of frames */
    int slots_needed;      /* ceil(T/k) + 1 */
    int slots_avail;       /* runstate slots */
    int slot_limited;      /* slots_needed > slots_avail */
    double frame_mean, frame_p50, frame_p99; /* ms */
    double chunk_hz, actions_hz, tok_s;
    double act_p50, act_p99; /* frame start to chunk ready, ms */
    double pa_ms;            /* mean prefix(es) + actions per frame, ms */
    double lang_ms;          /* mean language work per frame, ms */
    double begin_ms, step_ms; /* of which: vlad_lang_begin, vlad_lang_step (engine timing) */
    double p2_ms;            /* isolated: the second (language) prefill, included in pa_ms */
    double calls_frame;      /* batched decode calls (forward passes) per frame */
    double batch;            /* mean streams per batched decode call */
    double answer_ms, answer_frames; /* request (frame start) to its last token */
    int max_slots, max_blocks;
    double steady_slots, steady_blocks;
    double prefills_per_frame;
    long tokens;           /* decoded during the measured frames */
    int requests;          /* language requests made (unified: incl. the warm-up's) */
    int answers;           /* answers completed and checked (measured, warm-up and drain) */
    int answers_T_bytes;   /* of which exactly T text bytes (non-byte tokens are not text) */
    int match_n, match_ok; /* answers compared with shared's on the same images / identical */
    int dropped;           /* requests that found no free slot (slot-limited only) */
    int no_drain;          /* streams left at the end were ended, not decoded to their end */
    int aborted;           /* streams so ended */
    int skipped;           /* not run */
    int failed;            /* a behavioural check failed */
    double speedup;        /* frame throughput / isolated's, same run */
    double act_p99_ratio;  /* act_p99 / actions-only's act_p99 */
    char note[160];
} kv_row;

static void fail(kv_row *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(kv_row *r, const char *fmt, ...) {
    fprintf(stderr, "vlad-bench kv: CHECK FAILED [%s T=%d N=%d %s k=%d]: ", r->model, r->T, r->N,
            k_kind[r->kind], r->k);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    r->failed = 1;
}

/* ---- one (model, T, N) and its configurations ---------------------------------------------- */

typedef struct { /* shared by the configurations of one (model, T, N) */
    const char *name;
    vlad_model *m;
    const vlad_config *c;
    int T, N, threads;
    uint8_t *imgs[KV_NIMG][KV_CAMS];
    float *state, *noise;
    uint8_t *ref[KV_NIMG]; /* shared's answers, by image set */
    int ref_len[KV_NIMG], have_ref[KV_NIMG];
} kv_point;

typedef struct { /* one configuration */
    kv_point *p;
    kv_row *r;
    vlad_runstate *rs;
    int slots;
    float *act;
    int cap; /* per-frame arrays */
    double *ft, *at, *pa;
    int *slot_s, *blk_s;
    int gen[KV_SLOTS_MAX], img_of[KV_SLOTS_MAX]; /* tokens so far, image set of each stream */
    long calls, fwd; /* measured frames: batched decode calls, stream rows in them */
    uint64_t pf0, pf1;
    double busy, begin_sum, step_sum, p2_sum;
    int dropped_seen;
    int f; /* frames run */
} kv_cfg;

static int engine_err(const kv_point *p, const char *what, const vlad_err *err) {
    fprintf(stderr, "vlad-bench kv: [%s T=%d N=%d] %s: %s\n", p->name, p->T, p->N, what,
            err->msg[0] ? err->msg : "failed");
    return -1;
}

static int slots_in_use(const kv_cfg *x) {
    int n = 0;
    vlad_lang_info li;
    for (int s = 0; s < x->slots; s++)
        if (vlad_lang_get(x->rs, s, &li) == 0 && li.active)
            n++;
    return n;
}
static int blocks_in_use(const kv_cfg *x) {
    const vlad_kvcache *kv = vlad_runstate_kv(x->rs);
    int n = 0;
    for (int i = 0; i < kv->n_prefix; i++)
        n += kv->prefix[i].refs > 0;
    return n;
}
static int free_slot(const kv_cfg *x) {
    vlad_lang_info li;
    for (int s = 0; s < x->slots; s++)
        if (vlad_lang_get(x->rs, s, &li) == 0 && !li.active)
            return s;
    return -1;
}

/* After every stream ended: no slot active; only the current frame's block in use, held once
 * (by the runstate). */
static void check_clean(const kv_cfg *x) {
    int s = slots_in_use(x);
    if (s)
        fail(x->r, "%d stream slot(s) still in use after all streams ended", s);
    const vlad_kvcache *kv = vlad_runstate_kv(x->rs);
    int cur = vlad_runstate_prefix_block(x->rs);
    for (int i = 0; i < kv->n_prefix; i++) {
        int want = i == cur ? 1 : 0;
        if (kv->prefix[i].refs != want)
            fail(x->r, "prefix block %d has %d reference(s) after all streams ended (want %d)",
                 i, kv->prefix[i].refs, want);
    }
}

static int encode(kv_cfg *x, int img, vlad_err *err) {
    int b = vlad_encode_prefix(x->rs, (const uint8_t *const *)x->p->imgs[img], k_prompt,
                               strlen(k_prompt), err);
    return b < 0 ? engine_err(x->p, "encode_prefix", err) : 0;
}
static int actions(kv_cfg *x, vlad_err *err) {
    if (vlad_sample_actions(x->rs, x->p->state, x->p->noise, 0, x->act, err))
        return engine_err(x->p, "sample_actions", err);
    return 0;
}

/* A stream finished (done): check it, compare with shared's answer, end it. */
static void finish_stream(kv_cfg *x, int s) {
    kv_row *r = x->r;
    kv_point *p = x->p;
    vlad_lang_info li;
    vlad_lang_get(x->rs, s, &li);
    if (x->gen[s] != p->T)
        fail(r, "stream %d ended after %d tokens", s, x->gen[s]);
    if (li.len > p->T || li.len < 0)
        fail(r, "stream %d has %d text bytes (T = %d)", s, li.len, p->T);
    r->answers++;
    r->answers_T_bytes += li.len == p->T;
    int im = x->img_of[s];
    if (r->kind == CF_SHARED && !p->have_ref[im]) {
        memcpy(p->ref[im], li.text, (size_t)li.len);
        p->ref_len[im] = li.len;
        p->have_ref[im] = 1;
    } else if (p->have_ref[im]) {
        r->match_n++;
        r->match_ok += li.len == p->ref_len[im] && !memcmp(li.text, p->ref[im], (size_t)li.len);
    }
    vlad_lang_end(x->rs, s);
}

/* A whole answer on the current frame in slot 0 (isolated, shared). */
static int answer_whole(kv_cfg *x, int img, int record, vlad_err *err) {
    kv_row *r = x->r;
    if (vlad_lang_begin(x->rs, 0, k_question, strlen(k_question), err))
        return engine_err(x->p, "lang_begin", err);
    x->img_of[0] = img;
    int left = vlad_lang_step(x->rs, x->p->T, err);
    if (left < 0)
        return engine_err(x->p, "lang_step", err);
    const vlad_timing *t = vlad_runstate_timing(x->rs);
    x->gen[0] = t->lang_step_tokens;
    if (record)
        r->tokens += t->lang_step_tokens;
    vlad_lang_info li;
    vlad_lang_get(x->rs, 0, &li);
    if (left != 0 || !li.done)
        fail(r, "answer not finished after lang_step(T): %d left, done %d", left, li.done);
    finish_stream(x, 0);
    return 0;
}

/* One batched step of every active stream (unified): the engine's token count must equal the
 * sum over unfinished streams of min(k, T - generated), and a stream is done exactly when its
 * count reaches T. Finished streams are ended. mf >= 0: a measured frame. */
static int unified_step(kv_cfg *x, int mf, vlad_err *err) {
    kv_row *r = x->r;
    int T = x->p->T, k = r->k, expect = 0, calls = 0, fwd = 0;
    vlad_lang_info li;
    for (int s = 0; s < x->slots; s++) {
        vlad_lang_get(x->rs, s, &li);
        if (!li.active || li.done)
            continue;
        int n = T - x->gen[s] < k ? T - x->gen[s] : k;
        expect += n;
        /* forward passes this stream joins: one per token, except after its last one */
        int c = x->gen[s] + n == T ? n - 1 : n;
        fwd += c;
        if (c > calls)
            calls = c;
        x->gen[s] += n;
    }
    int left = vlad_lang_step(x->rs, k, err);
    if (left < 0)
        return engine_err(x->p, "lang_step", err);
    const vlad_timing *t = vlad_runstate_timing(x->rs);
    if (t->lang_step_tokens != expect)
        fail(r, "lang_step decoded %d tokens, the streams' counts say %d", t->lang_step_tokens,
             expect);
    int sl = slots_in_use(x), bl = blocks_in_use(x);
    if (sl > r->max_slots)
        r->max_slots = sl;
    if (bl > r->max_blocks)
        r->max_blocks = bl;
    if (mf >= 0) {
        r->tokens += t->lang_step_tokens;
        x->calls += calls;
        x->fwd += fwd;
        x->slot_s[mf] = sl;
        x->blk_s[mf] = bl;
    }
    for (int s = 0; s < x->slots; s++) {
        vlad_lang_get(x->rs, s, &li);
        if (!li.active)
            continue;
        int want = x->gen[s] >= T;
        if (li.done != want)
            fail(r, "stream %d: done %d after %d of %d tokens", s, li.done, x->gen[s], T);
        if (li.done)
            finish_stream(x, s);
    }
    return left;
}

static int begin_stream(kv_cfg *x, int img, vlad_err *err) {
    x->r->requests++;
    int s = free_slot(x);
    if (s < 0) {
        x->r->dropped++;
        return 0;
    }
    if (vlad_lang_begin(x->rs, s, k_question, strlen(k_question), err))
        return engine_err(x->p, "lang_begin", err);
    x->gen[s] = 0;
    x->img_of[s] = img;
    return 0;
}

/* One frame of the configuration (warm-up or measured, by x->f). */
static int cfg_frame(kv_cfg *x, vlad_err *err) {
    kv_row *r = x->r;
    const vlad_kvcache *kv = vlad_runstate_kv(x->rs);
    int f = x->f++, rec = f >= r->warm, mf = rec ? f - r->warm : -1, img = f % KV_NIMG;
    if (f == r->warm)
        x->pf0 = kv->frames;
    double t0 = now_ms();
    if (encode(x, img, err) || actions(x, err))
        return -1;
    double t1 = now_ms(), p2 = 0;
    switch (r->kind) {
    case CF_ACTIONS:
        break;
    case CF_ISOLATED:
        if (encode(x, img, err))
            return -1;
        p2 = now_ms() - t1;
        if (answer_whole(x, img, rec, err))
            return -1;
        break;
    case CF_SHARED:
        if (answer_whole(x, img, rec, err))
            return -1;
        break;
    case CF_UNIFIED:
        if (begin_stream(x, img, err) || unified_step(x, mf, err) < 0)
            return -1;
        break;
    }
    double t2 = now_ms();
    if (rec && r->kind != CF_ACTIONS) {
        const vlad_timing *t = vlad_runstate_timing(x->rs);
        x->begin_sum += r->kind == CF_UNIFIED && r->dropped > x->dropped_seen ? 0
                                                                              : t->lang_begin_ms;
        x->step_sum += t->lang_step_ms;
    }
    x->dropped_seen = r->dropped;
    if (rec) {
        x->ft[mf] = t2 - t0;
        x->at[mf] = t1 - t0;
        x->pa[mf] = t1 - t0 + p2;
        x->p2_sum += p2;
        x->busy += t2 - t0;
    }
    if (f + 1 == r->warm + r->frames)
        x->pf1 = kv->frames;
    return 0;
}

/* Before the measured frames: the fast warm-up (the steady-state batch without ceil(T/k)
 * frames: streams begun one after another on one frame, each followed by one lang_step(k),
 * so that their progress is staggered as after ceil(T/k) frames), then the warm-up frames. */
static int cfg_warm(kv_cfg *x, vlad_err *err) {
    kv_row *r = x->r;
    if (slots_in_use(x))
        fail(r, "%d slot(s) in use before the configuration started", slots_in_use(x));
    if (r->kind == CF_UNIFIED && r->fast_warm) {
        int w = (r->slots_needed - 1 < x->slots ? r->slots_needed - 1 : x->slots) - 1;
        if (encode(x, 0, err) || actions(x, err))
            return -1;
        for (int i = 0; i < w; i++)
            if (begin_stream(x, 0, err) || unified_step(x, -1, err) < 0)
                return -1;
    }
    while (x->f < r->warm)
        if (cfg_frame(x, err))
            return -1;
    return 0;
}

/* After the measured frames: drain (not timed; no_drain: end the streams where they are),
 * the checks and the figures. */
static int cfg_finish(kv_cfg *x, vlad_err *err) {
    kv_row *r = x->r;
    int T = x->p->T, k = r->k, F = r->frames, n = r->warm + r->frames;
    if (r->kind == CF_UNIFIED && r->no_drain) {
        for (int s = 0; s < x->slots; s++) {
            vlad_lang_info li;
            if (vlad_lang_get(x->rs, s, &li) == 0 && li.active) {
                vlad_lang_end(x->rs, s);
                r->aborted++;
            }
        }
    }
    if (r->kind == CF_UNIFIED) {
        /* every step finishes at least one stream; T steps bound the loop even if a finished
         * stream were never released (check_clean then reports its slot) */
        for (int i = 0; i <= T && slots_in_use(x) > 0; i++) {
            int left = unified_step(x, -1, err);
            if (left < 0)
                return -1;
            if (left == 0)
                break;
        }
    }
    check_clean(x);
    int want = r->kind == CF_ISOLATED ? 2 : 1;
    r->prefills_per_frame = (double)(x->pf1 - x->pf0) / F;
    if (x->pf1 - x->pf0 != (uint64_t)want * (uint64_t)F)
        fail(r, "%d prefills in %d measured frames, expected %d per frame",
             (int)(x->pf1 - x->pf0), F, want);
    double pas = 0;
    for (int i = 0; i < F; i++)
        pas += x->pa[i];
    r->frame_mean = x->busy / F;
    r->pa_ms = pas / F;
    r->lang_ms = r->frame_mean - r->pa_ms;
    r->begin_ms = x->begin_sum / F;
    r->step_ms = x->step_sum / F;
    r->p2_ms = x->p2_sum / F;
    r->chunk_hz = x->busy > 0 ? F / (x->busy * 1e-3) : 0;
    r->actions_hz = KV_HORIZON * r->chunk_hz;
    r->tok_s = x->busy > 0 ? (double)r->tokens / (x->busy * 1e-3) : 0;
    qsort(x->ft, (size_t)F, sizeof(double), cmp_d);
    qsort(x->at, (size_t)F, sizeof(double), cmp_d);
    r->frame_p50 = pct(x->ft, F, 0.5);
    r->frame_p99 = pct(x->ft, F, 0.99);
    r->act_p50 = pct(x->at, F, 0.5);
    r->act_p99 = pct(x->at, F, 0.99);
    switch (r->kind) {
    case CF_ACTIONS:
        r->max_blocks = 1;
        r->steady_blocks = 1;
        break;
    case CF_ISOLATED:
    case CF_SHARED:
        /* one answer per frame, within the frame: from the frame start to its end */
        r->answer_frames = 1;
        r->answer_ms = r->frame_mean;
        r->calls_frame = T - 1;
        r->batch = 1;
        r->max_slots = 1;
        r->steady_slots = 1;
        r->max_blocks = 1; /* isolated's second prefill replaces the first (refs 0) */
        r->steady_blocks = 1;
        if (r->answers != n)
            fail(r, "%d answers in %d frames", r->answers, n);
        break;
    case CF_UNIFIED:
        /* a stream begins at a frame start and gets its last token ceil(T/k) frames later */
        r->answer_frames = ceil_div(T, k);
        r->answer_ms = r->answer_frames * r->frame_mean;
        r->calls_frame = (double)x->calls / F;
        r->batch = x->calls ? (double)x->fwd / (double)x->calls : 0;
        qsort(x->slot_s, (size_t)F, sizeof(int), cmp_i);
        qsort(x->blk_s, (size_t)F, sizeof(int), cmp_i);
        r->steady_slots = x->slot_s[F / 2];
        r->steady_blocks = x->blk_s[F / 2];
        if (r->answers != r->requests - r->dropped - r->aborted)
            fail(r, "%d answers for %d requests (%d dropped, %d ended early)", r->answers,
                 r->requests, r->dropped, r->aborted);
        if (r->dropped && !r->slot_limited)
            fail(r, "%d requests found no free slot with %d slots for ceil(T/k)+1 = %d",
                 r->dropped, x->slots, r->slots_needed);
        break;
    }
    return 0;
}

static void cfg_free(kv_cfg *x) {
    free(x->act);
    free(x->ft);
    free(x->at);
    free(x->pa);
    free(x->slot_s);
    free(x->blk_s);
    vlad_runstate_free(x->rs);
    memset(x, 0, sizeof *x);
}

/* A runstate of the point's settings with `slots` stream slots; every call kind run `warm`
 * times (OpenBLAS starts its threads, buffers are touched). */
static int cfg_init(kv_cfg *x, kv_point *p, kv_row *r, int slots, int cap, int warm) {
    memset(x, 0, sizeof *x);
    vlad_err err = {0};
    x->p = p;
    x->r = r;
    x->slots = slots;
    x->cap = cap;
    vlad_runstate_opts o = {.n_threads = p->threads, .max_streams = slots, .lang_ignore_end = 1};
    x->rs = vlad_runstate_new(p->m, &o, &err);
    if (!x->rs) {
        fprintf(stderr, "vlad-bench kv: [%s T=%d N=%d] runstate: %s\n", p->name, p->T, p->N,
                err.msg);
        return -1;
    }
    const vlad_config *c = p->c;
    int ok = (x->act = malloc(sizeof(float) * (size_t)c->chunk_size * c->action_dim)) != NULL;
    ok = ok && (x->ft = calloc((size_t)cap, sizeof(double))) != NULL;
    ok = ok && (x->at = calloc((size_t)cap, sizeof(double))) != NULL;
    ok = ok && (x->pa = calloc((size_t)cap, sizeof(double))) != NULL;
    ok = ok && (x->slot_s = calloc((size_t)cap, sizeof(int))) != NULL;
    ok = ok && (x->blk_s = calloc((size_t)cap, sizeof(int))) != NULL;
    if (!ok) {
        fprintf(stderr, "vlad-bench kv: [%s] out of memory\n", p->name);
        cfg_free(x);
        return -1;
    }
    for (int i = 0; i < warm; i++) {
        if (encode(x, 0, &err) || actions(x, &err))
            goto fail;
        if (vlad_lang_begin(x->rs, 0, k_question, strlen(k_question), &err) ||
            vlad_lang_step(x->rs, 2, &err) < 0) {
            engine_err(p, "language warm-up", &err);
            goto fail;
        }
        vlad_lang_end(x->rs, 0);
    }
    return 0;
fail:
    cfg_free(x);
    return -1;
}

static void point_free(kv_point *p) {
    for (int f = 0; f < KV_NIMG; f++) {
        for (int i = 0; i < KV_CAMS; i++)
            free(p->imgs[f][i]);
        free(p->ref[f]);
    }
    free(p->state);
    free(p->noise);
    memset(p, 0, sizeof *p);
}

static int point_init(kv_point *p, const char *name, vlad_model *m, int T, int N, int threads) {
    memset(p, 0, sizeof *p);
    vlad_err err = {0};
    p->name = name;
    p->m = m;
    p->T = T;
    p->N = N;
    p->threads = threads;
    m->cfg.max_text_tokens = T;
    m->cfg.flow_steps = N;
    if (vlad_config_validate(&m->cfg, &err)) {
        fprintf(stderr, "vlad-bench kv: [%s] config with max_text_tokens=%d flow_steps=%d "
                        "refused: %s\n", name, T, N, err.msg);
        return -1;
    }
    p->c = &m->cfg;
    const vlad_config *c = p->c;
    size_t isz = (size_t)c->image_size * c->image_size * 3;
    int ok = 1;
    for (int f = 0; f < KV_NIMG; f++) {
        for (int i = 0; i < c->n_cameras; i++)
            ok = ok && (p->imgs[f][i] = malloc(isz)) != NULL;
        ok = ok && (p->ref[f] = malloc((size_t)T)) != NULL;
    }
    ok = ok && (p->state = malloc(sizeof(float) * (size_t)c->state_dim)) != NULL;
    ok = ok && (p->noise = malloc(sizeof(float) * (size_t)c->chunk_size * c->action_dim)) != NULL;
    if (!ok) {
        fprintf(stderr, "vlad-bench kv: [%s] out of memory\n", name);
        point_free(p);
        return -1;
    }
    vlad_rng r;
    vlad_rng_seed(&r, 7);
    for (int f = 0; f < KV_NIMG; f++)
        for (int i = 0; i < c->n_cameras; i++)
            for (size_t q = 0; q < isz; q++)
                p->imgs[f][i][q] = (uint8_t)(vlad_rng_u64(&r) & 0xff);
    for (int i = 0; i < c->state_dim; i++)
        p->state[i] = (float)vlad_rng_normal(&r);
    for (int i = 0; i < c->chunk_size * c->action_dim; i++)
        p->noise[i] = (float)vlad_rng_normal(&r);
    return 0;
}

/* ---- the sweep ------------------------------------------------------------------------------ */

typedef struct {
    int threads;
    double t_start, budget_s; /* budget_s > 0: skip what would end past it */
    kv_row *rows;
    int nrows;
} kv_opts;

/* What a model runs. */
typedef struct {
    const int *Ts, *Ns, *ks;
    int nT, nN, nk;
    int frames;     /* measured frames, every configuration */
    int frames_T100; /* > 0: measured frames at T=100 instead */
    int interleave; /* one frame of each configuration in turn (else one after the other) */
    int fast_warm;  /* unified warm-up by staggered streams on one frame, not ceil(T/k) frames */
    int no_drain;   /* streams still decoding after the measured frames are ended, not drained */
    int skip_slot_limited; /* unified configurations needing more than 64 slots are not run */
    int warm_calls; /* warm-up calls of each kind on every configuration's runstate */
} kv_plan;

/* Per-call costs from a runstate's warm-up, for the time-budget guard (ms). */
typedef struct {
    double prefix, actions, begin, d1, row;
} kv_cal;

/* Estimated seconds of a configuration: a batched decode call of B streams costs about
 * d1 + (B-1)*row, row being the backbone's cost per prefix row. */
static double est_config_s(const kv_cal *c, const kv_row *r, int T, int slots, int warm_calls) {
    double fr = c->prefix + c->actions, n = r->warm + r->frames;
    double wu = warm_calls * (fr + c->begin + 2 * c->d1);
    switch (r->kind) {
    case CF_ACTIONS:
        return (wu + n * fr) * 1e-3;
    case CF_SHARED:
        return (wu + n * (fr + c->begin + T * c->d1)) * 1e-3;
    case CF_ISOLATED:
        return (wu + n * (fr + c->prefix + c->begin + T * c->d1)) * 1e-3;
    case CF_UNIFIED:
        break;
    }
    int W = ceil_div(T, r->k) < slots ? ceil_div(T, r->k) : slots, k = r->k;
    double warm = 0;
    for (int B = 1; B < W; B++)
        warm += c->begin + k * (c->d1 + (B - 1) * c->row);
    double frame = fr + c->begin + k * (c->d1 + (W - 1) * c->row);
    double drain = r->no_drain ? 0 : warm;
    if (!r->fast_warm)
        warm = r->warm * frame;
    if (r->fast_warm)
        warm += fr; /* the warm-up frame the staggered streams begin on */
    return (wu + warm + n * frame + drain) * 1e-3;
}

static kv_row *new_row(kv_opts *o, const char *model, int T, int N, int k, cf_kind kind) {
    if (o->nrows >= KV_MAX_ROWS)
        return NULL;
    kv_row *r = &o->rows[o->nrows++];
    memset(r, 0, sizeof *r);
    r->model = model;
    r->T = T;
    r->N = N;
    r->k = k;
    r->kind = kind;
    return r;
}

static void log_row(const kv_row *r, double secs, double est) {
    if (r->skipped)
        fprintf(stderr, "[%s T=%d N=%d] %-12s k=%d: %s\n", r->model, r->T, r->N, k_kind[r->kind],
                r->k, r->note);
    else
        fprintf(stderr, "[%s T=%d N=%d] %-12s k=%d: %d+%d frames, %.2f ms/frame, %.0f tok/s "
                        "(%.1f s, estimated %.1f s)%s\n",
                r->model, r->T, r->N, k_kind[r->kind], r->k, r->warm, r->frames, r->frame_mean,
                r->tok_s, secs, est, r->failed ? "  CHECK FAILED" : "");
}

/* Every configuration of one (model, T, N). */
static int bench_point(kv_opts *o, kv_point *p, const kv_plan *pl) {
    int T = p->T, N = p->N, rc = 0, nc = 3 + pl->nk;
    int frames = T == 100 && pl->frames_T100 > 0 ? pl->frames_T100 : pl->frames;
    int cap = frames + KV_SLOTS_MAX + 8;
    kv_row *rows[KV_MAX_CFG];
    kv_cfg cfg[KV_MAX_CFG];
    double est[KV_MAX_CFG];
    memset(cfg, 0, sizeof cfg);
    /* calibration: the per-call costs of a one-slot runstate (its warm-up) */
    kv_row cal_row = {.model = p->name, .T = T, .N = N};
    kv_cfg calx;
    if (cfg_init(&calx, p, &cal_row, 1, 1, pl->warm_calls ? pl->warm_calls : 1))
        return -1;
    const vlad_timing *t = vlad_runstate_timing(calx.rs);
    int S = vlad_runstate_prefix_len(calx.rs);
    kv_cal cal = {t->prefix_ms, t->sample_ms, t->lang_begin_ms,
                  t->lang_step_ms / (t->lang_step_tokens ? t->lang_step_tokens : 1),
                  t->backbone_ms / (S > 0 ? S : 1)};
    cfg_free(&calx);
    fprintf(stderr, "[%s T=%d N=%d] prefill %.1f ms (S=%d), actions %.1f ms, lang begin %.1f "
                    "ms, decode %.2f ms/token (B=1)\n",
            p->name, T, N, cal.prefix, S, cal.actions, cal.begin, cal.d1);
    static const cf_kind order[3] = {CF_ACTIONS, CF_SHARED, CF_ISOLATED}; /* display order */
    for (int i = 0; i < nc; i++) {
        cf_kind kind = i < 3 ? order[i] : CF_UNIFIED;
        int k = i < 3 ? 0 : pl->ks[i - 3];
        kv_row *r = rows[i] = new_row(o, p->name, T, N, k, kind);
        if (!r)
            return -1;
        r->frames = frames;
        r->slots_avail = 1;
        if (kind == CF_SHARED && pl->interleave) {
            r->warm = KV_NIMG; /* shared's answers on every image set: the reference texts */
        } else if (kind != CF_UNIFIED) {
            r->warm = kind == CF_ACTIONS && !pl->fast_warm ? 2 : 0;
        } else {
            r->slots_needed = ceil_div(T, k) + 1;
            r->slots_avail = r->slots_needed < KV_SLOTS_MAX ? r->slots_needed : KV_SLOTS_MAX;
            r->slot_limited = r->slots_needed > KV_SLOTS_MAX;
            r->fast_warm = pl->fast_warm;
            r->no_drain = pl->no_drain;
            /* the batch is full after ceil(T/k) frames (slot-limited: after the slots) */
            int w = ceil_div(T, k) < r->slots_avail ? ceil_div(T, k) : r->slots_avail;
            r->warm = pl->fast_warm ? 0 : w;
            if (r->slot_limited)
                snprintf(r->note, sizeof r->note,
                         "slot-limited: needs %d slots, %d available; requests without a free "
                         "slot are dropped",
                         r->slots_needed, r->slots_avail);
        }
        est[i] = est_config_s(&cal, r, T, r->slots_avail, pl->warm_calls);
    }
    /* skips: slot-limited (plan); time budget (interleaved: all configurations' estimates
     * added up now; one after the other: each one's estimate just before it runs) */
    static const int run_order[KV_MAX_CFG] = {1, 0, 2, 3, 4, 5, 6, 7}; /* shared first */
    double acc = 0, left0 = o->budget_s - (now_ms() - o->t_start) * 1e-3;
    for (int i = 0; i < nc; i++) {
        kv_row *r = rows[i];
        if (r->slot_limited && pl->skip_slot_limited) {
            r->skipped = 1;
            snprintf(r->note, sizeof r->note,
                     "skipped: slot-limited (needs %d slots, 64 at most), estimated %.0f s",
                     r->slots_needed, est[i]);
        } else if (pl->interleave && o->budget_s > 0 && acc + est[i] > left0) {
            r->skipped = 1;
            snprintf(r->note, sizeof r->note,
                     "skipped: estimated %.0f s, %.0f s left of the %.0f s budget", est[i],
                     left0 - acc, o->budget_s);
        } else {
            acc += est[i];
        }
    }
    vlad_err err = {0};
    if (pl->interleave) {
        double t0 = now_ms();
        int ok = 1;
        for (int j = 0; j < nc && ok; j++) {
            int i = run_order[j];
            if (rows[i]->skipped)
                continue;
            ok = cfg_init(&cfg[i], p, rows[i], rows[i]->slots_avail, cap, pl->warm_calls) == 0 &&
                 cfg_warm(&cfg[i], &err) == 0;
        }
        /* one frame of each in turn, the starting configuration rotating */
        for (int f = 0; f < frames && ok; f++)
            for (int j = 0; j < nc && ok; j++) {
                int i = run_order[(j + f) % nc];
                if (!rows[i]->skipped)
                    ok = cfg_frame(&cfg[i], &err) == 0;
            }
        for (int i = 0; i < nc && ok; i++)
            if (!rows[i]->skipped)
                ok = cfg_finish(&cfg[i], &err) == 0;
        for (int i = 0; i < nc; i++) {
            if (!rows[i]->skipped && !cfg[i].rs)
                rows[i]->failed = 1; /* never started */
            if (!ok && !rows[i]->skipped)
                rows[i]->failed = 1;
            cfg_free(&cfg[i]);
            if (rows[i]->skipped)
                log_row(rows[i], 0, est[i]);
            else
                fprintf(stderr, "[%s T=%d N=%d] %-12s k=%d: %d+%d frames, %.2f ms/frame "
                                "(interleaved, estimated %.1f s)%s\n",
                        p->name, T, N, k_kind[rows[i]->kind], rows[i]->k, rows[i]->warm,
                        rows[i]->frames, rows[i]->frame_mean, est[i],
                        rows[i]->failed ? "  CHECK FAILED" : "");
        }
        if (!ok)
            rc = -1;
        fprintf(stderr, "[%s T=%d N=%d] interleaved run: %.1f s\n", p->name, T, N,
                (now_ms() - t0) * 1e-3);
    } else {
        for (int j = 0; j < nc; j++) {
            int i = run_order[j];
            kv_row *r = rows[i];
            double left = o->budget_s - (now_ms() - o->t_start) * 1e-3;
            if (!r->skipped && o->budget_s > 0 && est[i] > left) {
                r->skipped = 1;
                snprintf(r->note, sizeof r->note,
                         "skipped: estimated %.0f s, %.0f s left of the %.0f s budget", est[i],
                         left, o->budget_s);
            }
            if (r->skipped) {
                log_row(r, 0, est[i]);
                continue;
            }
            double t0 = now_ms();
            int ok = cfg_init(&cfg[i], p, r, r->slots_avail, cap, pl->warm_calls) == 0 &&
                     cfg_warm(&cfg[i], &err) == 0;
            while (ok && cfg[i].f < r->warm + r->frames)
                ok = cfg_frame(&cfg[i], &err) == 0;
            ok = ok && cfg_finish(&cfg[i], &err) == 0;
            cfg_free(&cfg[i]);
            if (!ok) {
                r->failed = 1;
                rc = -1;
            }
            log_row(r, (now_ms() - t0) * 1e-3, est[i]);
        }
    }
    /* ratios within this (model, T, N) */
    kv_row *iso = NULL, *act = NULL;
    for (int i = 0; i < nc; i++) {
        if (rows[i]->skipped || rows[i]->failed)
            continue;
        if (rows[i]->kind == CF_ISOLATED)
            iso = rows[i];
        if (rows[i]->kind == CF_ACTIONS)
            act = rows[i];
    }
    for (int i = 0; i < nc; i++) {
        kv_row *r = rows[i];
        r->speedup = iso && r->frame_mean > 0 ? iso->frame_mean / r->frame_mean : NAN;
        r->act_p99_ratio = act && act->act_p99 > 0 && r->act_p99 > 0 ? r->act_p99 / act->act_p99
                                                                      : NAN;
        if (r->failed && !rc)
            rc = 1;
    }
    return rc;
}

static int bench_model(kv_opts *o, const char *name, vlad_model *m, const kv_plan *pl) {
    int rc = 0;
    vlad_config saved = m->cfg;
    for (int ti = 0; ti < pl->nT; ti++)
        for (int ni = 0; ni < pl->nN; ni++) {
            kv_point p;
            double t0 = now_ms();
            if (point_init(&p, name, m, pl->Ts[ti], pl->Ns[ni], o->threads)) {
                rc = -1;
                continue;
            }
            int r = bench_point(o, &p, pl);
            if (r && !rc)
                rc = r;
            fprintf(stderr, "[%s T=%d N=%d] done in %.1f s (%.0f s since the start)\n", name,
                    p.T, p.N, (now_ms() - t0) * 1e-3, (now_ms() - o->t_start) * 1e-3);
            point_free(&p);
        }
    m->cfg = saved;
    return rc;
}

/* ---- output -------------------------------------------------------------------------------- */

static void print_rows(const kv_opts *o) {
    static const char *const h1[] = {"model", "T", "N", "config", "k", "frames", "frame_ms",
                                     "p50", "p99", "chunk/s", "act/s", "tok/s", "act_p50",
                                     "act_p99", "slots", "blocks", "pref", "vs_iso", "answer",
                                     "act_p99"};
    static const char *const h2[] = {"", "", "", "", "", "meas", "mean", "ms", "ms", "", "x10",
                                     "lang", "ms", "ms", "max/st", "max/st", "/frame", "thru",
                                     "ms", "/no-lang"};
    static const int w[] = {-7, 3, 2, -12, 2, 6, 8, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 8, 8};
    for (int l = 0; l < 2; l++) {
        printf("\n");
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
            printf("%s%*s", i ? " " : "", w[i], l ? h2[i] : h1[i]);
    }
    printf("\n");
    for (int i = 0; i < o->nrows; i++) {
        const kv_row *r = &o->rows[i];
        char kk[8] = "-", sl[16], bl[16];
        if (r->kind == CF_UNIFIED)
            snprintf(kk, sizeof kk, "%d", r->k);
        if (r->skipped) {
            printf("%-7s %3d %2d %-12s %2s   %s\n", r->model, r->T, r->N, k_kind[r->kind], kk,
                   r->note);
            continue;
        }
        snprintf(sl, sizeof sl, "%d/%.0f", r->max_slots, r->steady_slots);
        snprintf(bl, sizeof bl, "%d/%.0f", r->max_blocks, r->steady_blocks);
        printf("%-7s %3d %2d %-12s %2s %6d %8.2f %7.2f %7.2f %7.2f %7.1f %7.0f %7.2f %7.2f "
               "%6s %6s %6.2f %5.2fx %8.1f %7.2fx%s%s\n",
               r->model, r->T, r->N, k_kind[r->kind], kk, r->frames, r->frame_mean, r->frame_p50,
               r->frame_p99, r->chunk_hz, r->actions_hz, r->tok_s, r->act_p50, r->act_p99, sl,
               bl, r->prefills_per_frame, r->speedup, r->answer_ms, r->act_p99_ratio,
               r->slot_limited ? "  [slot-limited]" : "", r->failed ? "  [CHECK FAILED]" : "");
    }
}

/* Milliseconds of lang_step per stream-token (a token of one stream) in a measured frame. */
static double tok_cost(const kv_row *r) {
    double tpf = r->frames ? (double)r->tokens / r->frames : 0;
    return tpf > 0 ? r->step_ms / tpf : 0;
}

static int same_point(const kv_row *a, const kv_row *b) {
    return a->model == b->model && a->T == b->T && a->N == b->N;
}
static int candidate(const kv_row *r) {
    return r->kind == CF_UNIFIED && !r->slot_limited && !r->failed && !r->skipped;
}

/* The best k of each (model, T, N) with the reason drawn from the figures; adds a JSON array.
 * k changes only the language part of a frame (prefix + actions are the same work for every
 * k), so k is ranked by lang_step time per frame; within 3% of the lowest, the larger k wins
 * (its answers end in fewer frames). */
static void print_best(const kv_opts *o, cJSON *arr) {
    printf("\nbest k. A stream-token = one token of one stream; in steady state every k decodes "
           "~T stream-tokens per frame (one answer ends per frame) in k batched calls of B ~ "
           "T/k streams, so k changes only the language part of a frame: k is ranked by "
           "lang_step time per frame (within 3%% of the lowest: the larger k, whose answers end "
           "in fewer frames). Slot-limited configurations are left out (they cannot take one "
           "request per frame):\n");
    for (int i = 0; i < o->nrows; i++) {
        const kv_row *iso = &o->rows[i];
        if (iso->kind != CF_ISOLATED || iso->skipped || iso->failed)
            continue;
        const kv_row *low = NULL, *kmin = NULL, *kmax = NULL, *fast = NULL;
        for (int j = 0; j < o->nrows; j++) {
            const kv_row *r = &o->rows[j];
            if (!same_point(r, iso) || !candidate(r))
                continue;
            if (!low || r->step_ms < low->step_ms)
                low = r;
            if (!fast || r->frame_mean < fast->frame_mean)
                fast = r;
            if (!kmin || r->k < kmin->k)
                kmin = r;
            if (!kmax || r->k > kmax->k)
                kmax = r;
        }
        if (!low)
            continue;
        const kv_row *best = low;
        for (int j = 0; j < o->nrows; j++) {
            const kv_row *r = &o->rows[j];
            if (same_point(r, iso) && candidate(r) && r->step_ms <= 1.03 * low->step_ms &&
                r->k > best->k)
                best = r;
        }
        printf("  %s T=%d N=%d: best k=%d: lang_step %.2f ms per frame; frame %.2f ms = %.2fx "
               "isolated's %.2f ms",
               iso->model, iso->T, iso->N, best->k, best->step_ms, best->frame_mean,
               best->speedup, iso->frame_mean);
        if (fast != best)
            printf(" (the shortest frame was k=%d's, %.2f ms: the difference is in prefix + "
                   "actions, %.2f vs %.2f ms, work that k does not change)",
                   fast->k, fast->frame_mean, fast->pa_ms, best->pa_ms);
        printf(".\n");
        for (int j = 0; j < o->nrows; j++) {
            const kv_row *r = &o->rows[j];
            if (!same_point(r, iso) || r->kind != CF_UNIFIED || r->skipped)
                continue;
            printf("    k=%d: frame %.2f ms = %.2f prefix+actions + %.2f language (begin %.2f, "
                   "lang_step %.2f: %.1f calls x B=%.1f, %.3f ms/call, %.4f ms per "
                   "stream-token); answer in %d frames%s\n",
                   r->k, r->frame_mean, r->pa_ms, r->lang_ms, r->begin_ms, r->step_ms,
                   r->calls_frame, r->batch, r->calls_frame > 0 ? r->step_ms / r->calls_frame : 0,
                   tok_cost(r), (int)r->answer_frames, r->slot_limited ? " [slot-limited]" : "");
        }
        printf("    isolated: lang_step %.2f ms per frame, %.4f ms per stream-token (B=1)\n",
               iso->step_ms, tok_cost(iso));
        char why[1024];
        int off = 0;
        double hi = 0;
        for (int j = 0; j < o->nrows; j++) {
            const kv_row *r = &o->rows[j];
            if (same_point(r, iso) && candidate(r) && r->step_ms > hi)
                hi = r->step_ms;
        }
        double c1 = tok_cost(iso), cb = tok_cost(best);
        if (kmin == kmax)
            off = snprintf(why, sizeof why, "the only k run");
        else if (best == kmin)
            off = snprintf(why, sizeof why,
                           "batching pays: a stream-token costs %.4f ms at B=%.1f (k=%d) but "
                           "%.4f ms at B=%.1f (k=%d) and %.4f ms at B=1 (isolated): a batched "
                           "call reads the weights once for all its streams, so fewer, fuller "
                           "calls decode the same ~T stream-tokens per frame for less, and the "
                           "smallest k wins. The price is answer latency: %d frames (%.0f ms) "
                           "at k=%d vs %d (%.0f ms) at k=%d",
                           cb, best->batch, best->k, tok_cost(kmax), kmax->batch, kmax->k, c1,
                           (int)best->answer_frames, best->answer_ms, best->k,
                           (int)kmax->answer_frames, kmax->answer_ms, kmax->k);
        else if (best == kmax)
            off = snprintf(why, sizeof why,
                           "larger batches do not pay here: a stream-token costs %.4f ms at "
                           "B=%.1f (k=%d) vs %.4f ms at B=%.1f (k=%d), whose lang_step per "
                           "frame is the lowest or within 3%% of it, though %.4f ms at B=1 "
                           "(isolated): past small batches the batched call is "
                           "compute-bound on this CPU, and a larger batch also reads more "
                           "streams' KV and more prefix blocks (ceil(T/k) distinct ones) per "
                           "token; so the largest k, whose answers also end soonest (%d frames, "
                           "%.0f ms), wins",
                           tok_cost(kmin), kmin->batch, kmin->k, cb, best->batch, best->k, c1,
                           (int)best->answer_frames, best->answer_ms);
        else if (tok_cost(kmin) <= 1.03 * cb)
            off = snprintf(why, sizeof why,
                           "a stream-token costs about the same at B=%.1f (k=%d, %.4f ms) as at "
                           "B=%.1f (k=%d, %.4f ms) but more at B=%.1f (k=%d, %.4f ms), and "
                           "%.4f ms at B=1 (isolated): batching stops paying past B~%.0f (the "
                           "batched call is compute-bound on this CPU), so k=%d, the largest k "
                           "before the per-token cost rises, wins (answers in %d frames)",
                           kmin->batch, kmin->k, tok_cost(kmin), best->batch, best->k, cb,
                           kmax->batch, kmax->k, tok_cost(kmax), c1, best->batch, best->k,
                           (int)best->answer_frames);
        else
            off = snprintf(why, sizeof why,
                           "a stream-token is cheapest at B=%.1f (k=%d, %.4f ms) against %.4f "
                           "ms at B=%.1f (k=%d) and %.4f ms at B=%.1f (k=%d), %.4f ms at B=1 "
                           "(isolated): smaller batches share the weight reads among fewer "
                           "streams, larger ones read more streams' KV and prefix blocks",
                           best->batch, best->k, cb, tok_cost(kmin), kmin->batch, kmin->k,
                           tok_cost(kmax), kmax->batch, kmax->k, c1);
        if (best != kmax && off > 0 && (size_t)off < sizeof why && hi < 1.1 * best->step_ms)
            snprintf(why + off, sizeof why - (size_t)off,
                     ". Still, k matters little for throughput here: lang_step per frame spans "
                     "%.2f-%.2f ms over k (%.0f%%), so a larger k's shorter answer latency may "
                     "be worth it (k=%d: %d frames)",
                     best->step_ms, hi, 100 * (hi / best->step_ms - 1), kmax->k,
                     (int)kmax->answer_frames);
        printf("    why: %s.\n", why);
        if (arr) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "model", iso->model);
            cJSON_AddNumberToObject(e, "T", iso->T);
            cJSON_AddNumberToObject(e, "N", iso->N);
            cJSON_AddNumberToObject(e, "best_k", best->k);
            cJSON_AddNumberToObject(e, "best_k_lang_step_ms_per_frame", best->step_ms);
            cJSON_AddNumberToObject(e, "best_k_frame_ms", best->frame_mean);
            cJSON_AddNumberToObject(e, "best_k_speedup_vs_isolated", best->speedup);
            cJSON_AddNumberToObject(e, "shortest_frame_k", fast->k);
            cJSON_AddNumberToObject(e, "shortest_frame_speedup_vs_isolated", fast->speedup);
            cJSON_AddStringToObject(e, "why", why);
            cJSON_AddItemToArray(arr, e);
        }
    }
}

/* OxyGen's figure: unified frame throughput >= 3.7x isolated at T=100, N=10. Measured: the
 * best k's frame throughput over isolated's. Pooled: the same with prefix + actions (the same
 * work in every configuration of the point) replaced by its mean over all of them, which
 * takes that part's run-to-run noise out of the ratio (it matters with few frames). The
 * ceiling (language free) is isolated's frame over prefix + actions. */
static void print_target(const kv_opts *o, cJSON *arr) {
    printf("\ntarget: unified frame throughput >= 3.7x isolated at T=100, N=10 (OxyGen):\n");
    for (int i = 0; i < o->nrows; i++) {
        const kv_row *iso = &o->rows[i];
        if (iso->kind != CF_ISOLATED || iso->T != 100 || iso->N != 10 || iso->skipped ||
            iso->failed)
            continue;
        const kv_row *best = NULL, *low = NULL;
        double pa = 0, pa2 = 0;
        int npa = 0;
        for (int j = 0; j < o->nrows; j++) {
            const kv_row *r = &o->rows[j];
            if (!same_point(r, iso) || r->skipped || r->failed)
                continue;
            double v = r->pa_ms - (r->kind == CF_ISOLATED ? r->p2_ms : 0);
            pa += v;
            pa2 += v * v;
            npa++;
            if (candidate(r) && (!best || r->speedup > best->speedup))
                best = r;
            if (candidate(r) && (!low || r->step_ms < low->step_ms))
                low = r;
        }
        if (!best || !npa)
            continue;
        pa /= npa;
        double sd = sqrt(pa2 / npa - pa * pa > 0 ? pa2 / npa - pa * pa : 0);
        double iso_pool = pa + iso->p2_ms + iso->lang_ms;
        double pooled = iso_pool / (pa + low->lang_ms);
        double ceil_x = iso_pool / pa;
        printf("  %s: measured %.2fx (k=%d) — %s; pooled %.2fx (k=%d, the lowest language time; "
               "prefix+actions pooled over %d configurations: %.1f ms, sd %.1f) — %s. Ceiling "
               "with free language: %.2fx.\n",
               iso->model, best->speedup, best->k, best->speedup >= 3.7 ? "met" : "NOT met",
               pooled, low->k, npa, pa, sd, pooled >= 3.7 ? "met" : "NOT met", ceil_x);
        printf("    isolated frame %.1f ms = prefill+actions %.1f + 2nd prefill %.1f + language "
               "%.1f; unified (k=%d) frame %.1f ms = prefill+actions %.1f + language %.1f\n",
               iso->frame_mean, iso->pa_ms - iso->p2_ms, iso->p2_ms, iso->lang_ms, best->k,
               best->frame_mean, best->pa_ms, best->lang_ms);
        if (arr) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "model", iso->model);
            cJSON_AddNumberToObject(e, "measured_speedup", best->speedup);
            cJSON_AddNumberToObject(e, "measured_k", best->k);
            cJSON_AddNumberToObject(e, "pooled_speedup", pooled);
            cJSON_AddNumberToObject(e, "pooled_k", low->k);
            cJSON_AddNumberToObject(e, "prefix_actions_ms_pooled", pa);
            cJSON_AddNumberToObject(e, "prefix_actions_ms_sd", sd);
            cJSON_AddNumberToObject(e, "ceiling_free_language", ceil_x);
            cJSON_AddBoolToObject(e, "met", best->speedup >= 3.7);
            cJSON_AddItemToArray(arr, e);
        }
    }
}

static void cpu_model(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (!fp)
        return;
    char line[512];
    while (fgets(line, sizeof line, fp)) {
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(out, cap, "%s", p);
            }
            break;
        }
    }
    fclose(fp);
}

static cJSON *rows_json(const kv_opts *o) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < o->nrows; i++) {
        const kv_row *r = &o->rows[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", r->model);
        cJSON_AddNumberToObject(j, "T", r->T);
        cJSON_AddNumberToObject(j, "N", r->N);
        cJSON_AddStringToObject(j, "config", k_kind[r->kind]);
        if (r->kind == CF_UNIFIED)
            cJSON_AddNumberToObject(j, "k", r->k);
        else
            cJSON_AddNullToObject(j, "k");
        cJSON_AddBoolToObject(j, "skipped", r->skipped);
        if (r->skipped) {
            cJSON_AddStringToObject(j, "note", r->note);
            cJSON_AddItemToArray(arr, j);
            continue;
        }
        cJSON_AddNumberToObject(j, "warmup_frames", r->warm);
        cJSON_AddBoolToObject(j, "warmup_staggered_streams", r->fast_warm && r->kind == CF_UNIFIED);
        cJSON_AddNumberToObject(j, "frames", r->frames);
        cJSON_AddNumberToObject(j, "frame_ms_mean", r->frame_mean);
        cJSON_AddNumberToObject(j, "frame_ms_p50", r->frame_p50);
        cJSON_AddNumberToObject(j, "frame_ms_p99", r->frame_p99);
        cJSON_AddNumberToObject(j, "chunks_per_s", r->chunk_hz);
        cJSON_AddNumberToObject(j, "actions_per_s", r->actions_hz);
        cJSON_AddNumberToObject(j, "lang_tokens_per_s", r->tok_s);
        cJSON_AddNumberToObject(j, "lang_tokens", (double)r->tokens);
        cJSON_AddNumberToObject(j, "action_latency_ms_p50", r->act_p50);
        cJSON_AddNumberToObject(j, "action_latency_ms_p99", r->act_p99);
        cJSON_AddNumberToObject(j, "prefix_and_actions_ms", r->pa_ms);
        if (r->kind == CF_ISOLATED)
            cJSON_AddNumberToObject(j, "second_prefill_ms", r->p2_ms);
        cJSON_AddNumberToObject(j, "language_ms_per_frame", r->lang_ms);
        cJSON_AddNumberToObject(j, "lang_begin_ms_per_frame", r->begin_ms);
        cJSON_AddNumberToObject(j, "lang_step_ms_per_frame", r->step_ms);
        cJSON_AddNumberToObject(j, "lang_step_ms_per_stream_token", tok_cost(r));
        cJSON_AddNumberToObject(j, "decode_calls_per_frame", r->calls_frame);
        cJSON_AddNumberToObject(j, "decode_batch", r->batch);
        cJSON_AddNumberToObject(j, "answer_ms", r->answer_ms);
        cJSON_AddNumberToObject(j, "answer_frames", r->answer_frames);
        cJSON_AddNumberToObject(j, "slots_max", r->max_slots);
        cJSON_AddNumberToObject(j, "slots_steady", r->steady_slots);
        cJSON_AddNumberToObject(j, "prefix_blocks_max", r->max_blocks);
        cJSON_AddNumberToObject(j, "prefix_blocks_steady", r->steady_blocks);
        cJSON_AddNumberToObject(j, "slots_available", r->slots_avail);
        if (r->kind == CF_UNIFIED)
            cJSON_AddNumberToObject(j, "slots_needed", r->slots_needed);
        cJSON_AddBoolToObject(j, "slot_limited", r->slot_limited);
        cJSON_AddNumberToObject(j, "dropped_requests", r->dropped);
        cJSON_AddNumberToObject(j, "streams_ended_early", r->aborted);
        cJSON_AddNumberToObject(j, "prefills_per_frame", r->prefills_per_frame);
        cJSON_AddNumberToObject(j, "answers", r->answers);
        cJSON_AddNumberToObject(j, "answers_with_T_bytes", r->answers_T_bytes);
        cJSON_AddNumberToObject(j, "answers_compared_with_shared", r->match_n);
        cJSON_AddNumberToObject(j, "answers_identical_to_shared", r->match_ok);
        if (isfinite(r->speedup))
            cJSON_AddNumberToObject(j, "speedup_vs_isolated", r->speedup);
        if (isfinite(r->act_p99_ratio))
            cJSON_AddNumberToObject(j, "action_p99_vs_actions_only", r->act_p99_ratio);
        cJSON_AddBoolToObject(j, "check_failed", r->failed);
        if (r->note[0])
            cJSON_AddStringToObject(j, "note", r->note);
        cJSON_AddItemToArray(arr, j);
    }
    return arr;
}

/* ---- models --------------------------------------------------------------------------------- */

static int load_model(const char *path, vlad_model **m) {
    vlad_err err = {0};
    if (vlad_model_load(path, m, &err)) {
        fprintf(stderr, "vlad-bench kv: %s\n", err.msg);
        return -1;
    }
    if (vlad_model_widen_all(*m, &err)) {
        fprintf(stderr, "vlad-bench kv: %s\n", err.msg);
        vlad_model_free(*m);
        *m = NULL;
        return -1;
    }
    return 0;
}

static int smolvla_model(const char *keep, vlad_model **m) {
    char dir[4096], ckpt[4200];
    vlad_err err = {0};
    if (keep) {
        snprintf(dir, sizeof dir, "%s", keep);
    } else {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/vlad-bench-kv-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            fprintf(stderr, "vlad-bench kv: cannot make a temp dir\n");
            return -1;
        }
    }
    snprintf(ckpt, sizeof ckpt, "%s/smolvla.safetensors", dir);
    vlad_config c = vlad_config_smolvla();
    int rc = 0;
    if (keep && access(ckpt, R_OK) == 0) {
        fprintf(stderr, "[smolvla] reusing %s\n", ckpt);
    } else {
        fprintf(stderr, "[smolvla] writing random checkpoint %s (bf16)\n", ckpt);
        if (vlad_model_write_random(&c, VLAD_DT_BF16, 1234, ckpt, &err)) {
            fprintf(stderr, "vlad-bench kv: %s\n", err.msg);
            rc = -1;
        }
    }
    if (!rc)
        rc = load_model(ckpt, m);
    if (!keep) {
        unlink(ckpt);
        rmdir(dir);
    }
    return rc;
}

/* --plot DIR: DIR/kv-throughput.png, one panel per (model, T, N): frames per second (a frame =
 * an action chunk + the language work) of each configuration, labelled with its speed-up
 * over isolated execution measured in the same run. */
static void plot_throughput(const char *dir, const kv_opts *o) {
    static const char *who = "vlad-bench kv";
    int np = 0;
    for (int i = 0; i < o->nrows; i++)
        np += o->rows[i].kind == CF_ISOLATED && !o->rows[i].skipped;
    if (!np || bench_plot_dir(who, dir))
        return;
    int cols = np < 3 ? np : 3, nrow = (np + cols - 1) / cols;
    char png[4200];
    bench_plot_path(dir, "kv-throughput.png", png, sizeof png);
    vlad_err err;
    vlad_plot *p = vlad_plot_new(png, 460 * cols + 140, 380 * nrow + 40, NULL, &err);
    if (!p) {
        fprintf(stderr, "%s: %s\n", who, err.msg);
        return;
    }
    static const int rgb[] = {0x999999, 0xee6677, 0xccbb44, 0x228833}; /* by cf_kind */
    vlad_plot_printf(p, "set multiplot layout %d,%d title 'vlad-bench kv: frames/s (chunk + language), "
                        "speed-up over isolated'\n"
                        "set style fill solid 0.8 border -1\nset boxwidth 0.7\nset yrange [0:*]\n"
                        "set ylabel 'frames/s'\nset xtics rotate by -30 nomirror\nset offsets 0.5, 0.5, "
                        "graph 0.12, 0\n",
                     nrow, cols);
    int pi = 0;
    for (int i = 0; i < o->nrows; i++) {
        const kv_row *iso = &o->rows[i];
        if (iso->kind != CF_ISOLATED || iso->skipped)
            continue;
        char name[16];
        snprintf(name, sizeof name, "k%d", pi++);
        vlad_plot_data(p, name);
        for (int j = 0; j < o->nrows; j++) {
            const kv_row *r = &o->rows[j];
            if (!same_point(r, iso) || r->skipped || !(r->frame_mean > 0))
                continue;
            char lab[32];
            if (r->kind == CF_UNIFIED)
                snprintf(lab, sizeof lab, "unified k=%d%s", r->k, r->slot_limited ? "*" : "");
            else
                snprintf(lab, sizeof lab, "%s", k_kind[r->kind]);
            /* actions only does no language work: no speed-up to show (-1) */
            vlad_plot_printf(p, "\"%s\" %.6g %.6g %d\n", lab, 1000.0 / r->frame_mean,
                             r->kind != CF_ACTIONS && isfinite(r->speedup) ? r->speedup : -1,
                             rgb[r->kind]);
        }
        vlad_plot_end_data(p);
        vlad_plot_printf(p, "set title '%s, T = %d, N = %d'\n"
                            "plot $%s using 0:2:(0.7):4:xtic(1) with boxes lc rgb variable, "
                            "$%s using 0:2:($3 > 0 ? sprintf('%%.2fx', $3) : '') with labels "
                            "offset 0,0.8\n",
                         iso->model, iso->T, iso->N, name, name);
    }
    vlad_plot_printf(p, "unset multiplot\n");
    bench_plot_done(who, p, png, "frames per second per configuration, speed-up over isolated");
}

static const char *default_ckpt(const char *opt) {
    static char path[4200];
    if (opt)
        return opt;
    if (access("models/vlad-default.safetensors", R_OK) == 0)
        return "models/vlad-default.safetensors";
    snprintf(path, sizeof path, "%s/models/vlad-default.safetensors", VLAD_SOURCE_DIR);
    return path;
}

int bench_kv_main(int argc, char **argv) {
    const char *json = NULL, *keep = NULL, *model = NULL, *plot_dir = NULL;
    const char *loop_profile = "configs/sim-arm.yaml";
    int threads = 1, quick = 0, frames = 0, smol_full = 0, fast = 0, loop_eps = -1;
    double budget = -1;
    bench_choice onlyc = {.allowed = "default|smolvla"};
    bench_choice clockc = {.allowed = "wall|lockstep", .value = "wall"};
    const vlad_opt opts[] = {
        BENCH_STR("json", &json, "FILE", "write the results as JSON"),
        BENCH_FLAG("quick", &quick, "the default model, T = 32, N = 5, k = 2 and 4, 6 frames"),
        BENCH_CALL("only", &onlyc, "default|smolvla", "one model scale (default: both)",
                   bench_opt_choice),
        BENCH_INT("threads", &threads, "N", "OpenBLAS threads", 1, 64),
        BENCH_INT("frames", &frames, "N", "measured frames per configuration (0: 30, 6 with --quick, "
                  "1 on SmolVLA-scale)", 0, 10000),
        BENCH_STR("model", &model, "PATH", "the default-scale checkpoint"),
        BENCH_STR("keep", &keep, "DIR", "keep the SmolVLA-scale checkpoint there and reuse it"),
        BENCH_FLAG("smolvla-full", &smol_full, "the full T x N x k sweep on SmolVLA-scale (no budget)"),
        BENCH_DBL("budget", &budget, "S", "skip configurations that would end past S seconds (-1: 570, "
                  "0: none)", -1, 1e7),
        BENCH_FLAG("fast-warmup", &fast, "the default model measured the way SmolVLA-scale is"),
        BENCH_INT("closed-loop", &loop_eps, "EPISODES", "closed-loop episodes with and without language "
                  "(-1: 10, 0 with --quick)", 0, 1000),
        BENCH_CALL("closed-loop-clock", &clockc, "wall|lockstep", "clock of the closed loop (default wall)",
                   bench_opt_choice),
        BENCH_STR("profile", &loop_profile, "P", "robot profile of the closed loop"),
        BENCH_STR("plot", &plot_dir, "DIR", "write DIR/kv-throughput.png (gnuplot)"),
        BENCH_OPT_END,
    };
    int status;
    if (!bench_opts("vlad-bench kv", "vlad-bench kv [options]", opts, argc, argv, &status))
        return status;
    const char *only = onlyc.value, *loop_clock = clockc.value;
    if (loop_eps < 0)
        loop_eps = quick ? 0 : 10;
    if (quick && only && !strcmp(only, "smolvla")) {
        fprintf(stderr, "vlad-bench kv: --quick runs the default model only\n");
        return 2;
    }
    /* the whole default run fits 10 minutes: a guard skips configurations that would end past
     * the budget (0: none) */
    kv_opts o = {.threads = threads, .budget_s = budget >= 0 ? budget : smol_full ? 0 : 570};
    o.rows = calloc(KV_MAX_ROWS, sizeof *o.rows);
    if (!o.rows) {
        fprintf(stderr, "vlad-bench kv: out of memory\n");
        return 1;
    }
    o.t_start = now_ms();
    int rc = 0;
    static const int Ts[] = {32, 100}, Ns[] = {5, 10}, ks[] = {1, 2, 4, 8}, kq[] = {2, 4};
    static const int Ts_smol[] = {100, 32}, Ns_smol[] = {10};
    kv_plan dpl = {.Ts = Ts, .Ns = Ns, .ks = ks, .nT = 2, .nN = 2, .nk = 4,
                   .frames = frames ? frames : 30, .interleave = 1, .warm_calls = 2};
    if (quick)
        dpl = (kv_plan){.Ts = Ts, .Ns = Ns, .ks = kq, .nT = 1, .nN = 1, .nk = 2,
                        .frames = frames ? frames : 6, .interleave = 1, .warm_calls = 2};
    if (fast) { /* the default model measured as SmolVLA is: to compare the two methods */
        dpl.interleave = 0;
        dpl.fast_warm = 1;
        dpl.no_drain = 1;
    }
    /* SmolVLA-scale: seconds per prefill and 0.1-0.2 s per decode call on this 2-core machine
     * (OpenBLAS, 1 thread): sized for the 10-minute budget (see the printed notes) */
    kv_plan spl = {.Ts = Ts_smol, .Ns = Ns_smol, .ks = ks, .nT = 2, .nN = 1, .nk = 4,
                   .frames = frames ? frames : 1, .frames_T100 = 0, .fast_warm = 1,
                   .no_drain = 1, .skip_slot_limited = 1, .warm_calls = 0};
    if (smol_full)
        spl = (kv_plan){.Ts = Ts, .Ns = Ns, .ks = ks, .nT = 2, .nN = 2, .nk = 4,
                        .frames = frames ? frames : 1, .fast_warm = 1, .no_drain = 1};
    int ran_smol = 0;
    if (!only || !strcmp(only, "default")) {
        vlad_model *m = NULL;
        const char *p = default_ckpt(model);
        fprintf(stderr, "[default] %s\n", p);
        if (load_model(p, &m)) {
            rc = 1;
        } else {
            if (bench_model(&o, "default", m, &dpl))
                rc = 1;
            vlad_model_free(m);
        }
    }
    if (!quick && (!only || !strcmp(only, "smolvla"))) {
        vlad_model *m = NULL;
        double t0 = now_ms();
        if (smolvla_model(keep, &m)) {
            rc = 1;
        } else {
            fprintf(stderr, "[smolvla] checkpoint ready in %.1f s\n", (now_ms() - t0) * 1e-3);
            ran_smol = 1;
            if (bench_model(&o, "smolvla", m, &spl))
                rc = 1;
            vlad_model_free(m);
        }
    }
    double total_s = (now_ms() - o.t_start) * 1e-3;
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    const char *core = openblas_get_corename();
    printf("\nvlad-bench kv — unified KV cache (OxyGen) on the C engine; %d OpenBLAS thread(s), "
           "OpenBLAS kernels: %s; CPU: %s\n",
           threads, core ? core : "?", cpu);
    if (core && !strcmp(core, "Prescott") && __builtin_cpu_supports("avx2"))
        printf("note: OpenBLAS did not recognise this CPU and runs its SSE3 (Prescott) kernels on "
               "an AVX2%s machine; OPENBLAS_CORETYPE=SkylakeX (or Haswell) selects faster ones.\n",
               __builtin_cpu_supports("avx512f") ? "/AVX-512" : "");
    printf("workload: one request (\"%s\") per frame, answers of exactly T tokens (end token "
           "disabled), an action chunk per frame; actions/s = %d (execution horizon) x "
           "chunks/s.\n",
           k_question, KV_HORIZON);
    if (!only || !strcmp(only, "default")) {
        if (fast)
            printf("measured frames only. default model (--fast-warmup): %d measured frames per "
                   "configuration, measured the smolvla way (below).\n", dpl.frames);
        else
            printf("measured frames only. default model: %d measured frames per configuration, "
                   "the configurations interleaved (one frame of each in turn, each on its own "
                   "runstate of the same settings); unified measured after a warm-up of "
                   "ceil(T/k) frames (the batch is then at its steady state of ceil(T/k) "
                   "streams), the streams left at the end decoded to their end and checked "
                   "(not timed).\n",
                   dpl.frames);
    }
    if (ran_smol || fast)
        printf("smolvla (random weights): %d measured frame(s) per configuration (%d at T=100; "
               "p50/p99 of so few frames are their median/max)%s; configurations one after "
               "the other (one runstate at a time; no warm-up calls on each: a one-off "
               "runstate per (T, N) makes them, and a runstate's first-touch costs are ms "
               "against frames of seconds); unified warm-up: ceil(T/k)-1 streams begun on one "
               "frame, each followed by one lang_step(k), which is the steady-state batch "
               "(staggered progress) without ceil(T/k) frames of prefill + actions (so its "
               "streams share one prefix block: blocks in use read 2); streams still decoding "
               "at the end are ended, not drained.%s\n",
               spl.frames, spl.frames_T100 > 0 ? spl.frames_T100 : spl.frames,
               smol_full ? ""
                         : "; N=10 only (N changes only the action part, measured on the "
                           "default model), T=100 and 32",
               smol_full ? ""
                         : " Slot-limited configurations (k=1 at T=100) are skipped on smolvla "
                           "(their warm-up alone is ~1.5 min here); --smolvla-full runs the "
                           "whole sweep.");
    printf("k=1 at T=100 needs ceil(T/k)+1 = 101 slots > 64: run on 64 slots, requests that "
           "find no free slot are dropped, marked slot-limited and left out of the best k.\n");
    printf("slots/blocks: max over the run / median over measured frames, sampled after the "
           "frame's lang_step; prefix blocks include the current frame's. answer ms: request "
           "(frame start) to its last token (unified: ceil(T/k) frames x mean frame). vs_iso: "
           "frame throughput over isolated's, same run.\n");
    print_rows(&o);
    cJSON *root = json ? cJSON_CreateObject() : NULL;
    cJSON *best = root ? cJSON_CreateArray() : NULL;
    print_best(&o, best);
    cJSON *target = root ? cJSON_CreateArray() : NULL;
    print_target(&o, target);
    int failed = 0;
    for (int i = 0; i < o.nrows; i++)
        failed += o.rows[i].failed;
    printf("\nchecks: %s (prefills per frame, T tokens per answer, no slot or prefix block left "
           "in use)\n",
           failed ? "FAILED" : "all passed");
    /* the daemon driving the simulator with and without language: success, Δ, latency */
    cJSON *loop = cJSON_CreateArray();
    if (loop_eps > 0 && (!only || !strcmp(only, "default"))) {
        static vlad_profile lp;
        char work[128];
        bench_default_work(work, sizeof work, "kv");
        vlad_err lerr = {0};
        bench_kv_loop_opts lo = {.base = &lp, .model = default_ckpt(model), .tasks = "all",
                                 .episodes = loop_eps, .seed = 1,
                                 .wall = !strcmp(loop_clock, "wall"), .streams = 16, .k = 4,
                                 .workdir = work};
        if (bench_setup("vlad-bench kv", loop_profile, &lp) ||
            bench_kv_closed_loop(&lo, loop, &lerr)) {
            if (lerr.msg[0])
                fprintf(stderr, "vlad-bench kv: closed loop: %s\n", lerr.msg);
            rc = 1;
        }
    }
    printf("total time %.1f s\n", total_s);
    if (root) {
        cJSON *mi = cJSON_AddObjectToObject(root, "machine");
        cJSON_AddNumberToObject(mi, "threads", threads);
        cJSON_AddStringToObject(mi, "cpu_model", cpu);
        cJSON_AddNumberToObject(mi, "online_cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
        const char *bc = openblas_get_config();
        cJSON_AddStringToObject(mi, "openblas", bc ? bc : "");
        cJSON_AddStringToObject(mi, "openblas_core", core ? core : "");
        cJSON_AddStringToObject(root, "question", k_question);
        cJSON_AddNumberToObject(root, "execution_horizon", KV_HORIZON);
        cJSON_AddBoolToObject(root, "quick", quick);
        cJSON_AddNumberToObject(root, "total_s", total_s);
        cJSON_AddBoolToObject(root, "checks_passed", !failed && !rc);
        cJSON_AddItemToObject(root, "rows", rows_json(&o));
        cJSON_AddItemToObject(root, "best_k", best);
        cJSON_AddItemToObject(root, "target_3_7x_T100_N10", target);
        cJSON_AddItemToObject(root, "closed_loop", loop);
        loop = NULL;
        bench_write_json(json, root);
    }
    cJSON_Delete(loop);
    if (plot_dir && *plot_dir)
        plot_throughput(plot_dir, &o);
    free(o.rows);
    return rc || failed ? 1 : 0;
}
