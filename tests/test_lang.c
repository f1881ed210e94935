/* test_lang — the language channel (daemon/lang.h) and the worker's stream scheduler
 * (daemon/lang_sched.h) over the real engine and a fixture model:
 *   - slots are bounded: reservations refuse the one too many, commentary is skipped (counted)
 *     when every slot is busy, and the frame's action inference is unaffected;
 *   - a stream conditions on the frame it started on: its prefix block outlives the frame
 *     (newer frames go to other blocks) and is freed with its last reader;
 *   - streams batched across frames give each the text it gets decoded alone on its frame
 *     (no stream sees another's tokens); the pieces carry that frame and sequential indices;
 *   - one prefill per frame (prefills == frames);
 *   - a due action inference preempts a slice between tokens (wall clock), lockstep runs it
 *     whole;
 *   - nothing allocates in steady state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_count.h"
#include "engine.h"
#include "lang.h"
#include "lang_sched.h"
#include "model.h"
#include "obs.h"
#include "policy_testutil.h"

typedef struct fx {
    vlad_model *m;
    vlad_obs obs;
    const uint8_t *a[16]; /* frame A: the fixture's images */
    const uint8_t *b[16]; /* frame B: their negative */
    uint8_t *neg[16];
} fx;

static void fx_load(fx *f) {
    char dir[2048], p[2300];
    vlad_err err = {0};
    tu_fixture_dir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/tiny_f32_1cam.safetensors", dir);
    assert_int_equal(vlad_model_load(p, &f->m, &err), 0);
    snprintf(p, sizeof p, "%s/tiny_f32_1cam.obs.json", dir);
    assert_int_equal(vlad_obs_load(p, &f->m->cfg, &f->obs, &err), 0);
    size_t isz = (size_t)f->m->cfg.image_size * f->m->cfg.image_size * 3;
    for (int i = 0; i < f->obs.n_images; i++) {
        f->a[i] = f->obs.images[i].rgb;
        f->neg[i] = malloc(isz);
        assert_non_null(f->neg[i]);
        for (size_t k = 0; k < isz; k++)
            f->neg[i][k] = (uint8_t)(255 - f->a[i][k]);
        f->b[i] = f->neg[i];
    }
}

static void fx_free(fx *f) {
    for (int i = 0; i < f->obs.n_images; i++)
        free(f->neg[i]);
    vlad_obs_free(&f->obs);
    vlad_model_free(f->m);
}

/* the answer to q decoded alone, on its own runstate, on one frame */
static int alone(const fx *f, const uint8_t *const *imgs, const char *q, char *out, size_t cap) {
    vlad_err err = {0};
    vlad_runstate_opts o = {.n_threads = 1, .max_streams = 1};
    vlad_runstate *rs = vlad_runstate_new(f->m, &o, &err);
    assert_non_null(rs);
    assert_true(vlad_encode_prefix(rs, imgs, f->obs.prompt, strlen(f->obs.prompt), &err) >= 0);
    size_t len = 0;
    assert_int_equal(vlad_lang_generate(rs, q, strlen(q), out, cap, &len, &err), 0);
    vlad_runstate_free(rs);
    return (int)len;
}

/* one frame as the worker serves it: prefill, action chunk, then the scheduler */
static void frame(vlad_runstate *rs, vlad_lang_sched *s, const fx *f, const uint8_t *const *imgs,
                  int64_t tick) {
    vlad_err err = {0};
    float act[512];
    assert_true(vlad_encode_prefix(rs, imgs, f->obs.prompt, strlen(f->obs.prompt), &err) >= 0);
    assert_int_equal(vlad_sample_actions(rs, f->obs.state, NULL, (uint64_t)tick, act, &err), 0);
    vlad_lang_sched_frame(s, tick, tick + 1000);
}

static uint32_t ask(vlad_lang *ch, const char *q) {
    assert_true(vlad_lang_reserve(ch));
    vlad_lang_req r = {.stream_id = vlad_lang_next_id(ch), .qlen = (uint32_t)strlen(q)};
    memcpy(r.question, q, r.qlen);
    assert_int_equal(vlad_lang_submit(ch, &r, NULL), 0);
    return r.stream_id;
}

typedef struct got {
    uint32_t id;
    char text[512];
    int len, pieces, done;
    int64_t obs_tick, obs_robot_tick;
    uint64_t frame;
    char question[VLAD_LANG_Q_MAX + 1];
} got;

/* take every queued piece into per-stream records (checking their order) */
static void collect(vlad_lang *ch, got *g, int n) {
    vlad_lang_piece p;
    while (vlad_lang_next_piece(ch, &p)) {
        got *x = NULL;
        for (int i = 0; i < n; i++)
            if (g[i].id == p.stream_id)
                x = &g[i];
        assert_non_null(x);
        assert_false(x->done);                        /* nothing after the last piece */
        assert_int_equal(p.index, (uint32_t)x->pieces); /* 0, 1, 2, ... */
        if (p.index == 0) {
            x->obs_tick = p.obs_tick;
            x->obs_robot_tick = p.obs_robot_tick;
            x->frame = p.frame;
            memcpy(x->question, p.question, p.qlen);
            x->question[p.qlen] = 0;
        } else { /* every piece names the same frame */
            assert_int_equal(p.obs_tick, x->obs_tick);
            assert_int_equal(p.frame, x->frame);
        }
        assert_string_equal(p.error, "");
        memcpy(x->text + x->len, p.text, p.n);
        x->len += (int)p.n;
        x->pieces++;
        x->done = p.done;
    }
}

static void test_channel(void **state) {
    (void)state;
    vlad_err err = {0};
    assert_null(vlad_lang_new(65, 32, -1, &err));
    assert_non_null(strstr(err.msg, "max_streams"));
    vlad_lang *off = vlad_lang_new(0, 32, -1, &err);
    assert_non_null(off);
    assert_false(vlad_lang_reserve(off));
    vlad_lang_free(off);
    vlad_lang_free(NULL);
    vlad_lang *ch = vlad_lang_new(3, 32, -1, &err);
    assert_non_null(ch);
    assert_int_equal(vlad_lang_max_question(ch), 32);
    for (int i = 0; i < 3; i++)
        assert_true(vlad_lang_reserve(ch));
    assert_false(vlad_lang_reserve(ch)); /* the fourth is refused */
    assert_int_equal(atomic_load(&vlad_lang_stats_of(ch)->reserved), 3);
    vlad_lang_unreserve(ch);
    assert_true(vlad_lang_reserve(ch));
    uint32_t a = vlad_lang_next_id(ch), b = vlad_lang_next_id(ch);
    assert_true(a >= 1 && b == a + 1);
    /* requests: FIFO, as many as slots */
    for (uint32_t i = 0; i < 3; i++) {
        vlad_lang_req r = {.stream_id = 10 + i};
        assert_int_equal(vlad_lang_submit(ch, &r, &err), 0);
    }
    vlad_lang_req r;
    for (uint32_t i = 0; i < 3; i++) {
        assert_true(vlad_lang_take(ch, &r));
        assert_int_equal(r.stream_id, 10 + i);
    }
    assert_false(vlad_lang_take(ch, &r));
    /* pieces: FIFO; a full ring with the daemon stopping is refused, not blocking */
    static vlad_lang_piece p, q;
    _Atomic bool stop = true;
    int n = 0;
    for (;; n++) {
        p.index = (uint32_t)n;
        if (vlad_lang_emit(ch, &p, &stop) != VLAD_OK)
            break;
    }
    assert_true(n >= 64);
    for (int i = 0; i < n; i++) {
        assert_true(vlad_lang_next_piece(ch, &q));
        assert_int_equal(q.index, (uint32_t)i);
    }
    assert_false(vlad_lang_next_piece(ch, &q));
    vlad_lang_free(ch);
}

/* a warm-up frame and stream, as the daemon does before serving (the first calls allocate) */
static void warm(vlad_runstate *rs, const fx *f) {
    vlad_err err = {0};
    float act[512];
    assert_true(vlad_encode_prefix(rs, f->a, "", 0, &err) >= 0);
    assert_int_equal(vlad_sample_actions(rs, f->obs.state, NULL, 0, act, &err), 0);
    assert_int_equal(vlad_lang_begin(rs, 0, "?", 1, &err), 0);
    assert_true(vlad_lang_step(rs, 2, &err) >= 0);
    vlad_lang_end(rs, 0);
}

static void test_streams_across_frames(void **state) {
    (void)state;
    fx f = {0};
    fx_load(&f);
    vlad_err err = {0};
    const char *q[3] = {"what now?", "where is it", "colour"};
    const uint8_t *const *on[3] = {f.a, f.b, f.a}; /* the frame each is asked on */
    char want[3][512];
    int wlen[3];
    for (int i = 0; i < 3; i++)
        wlen[i] = alone(&f, on[i], q[i], want[i], sizeof want[i]);
    assert_true(wlen[0] >= 2); /* long enough to outlive its frame at k = 1 */
    vlad_runstate_opts o = {.n_threads = 1, .max_streams = 4};
    vlad_runstate *rs = vlad_runstate_new(f.m, &o, &err);
    assert_non_null(rs);
    warm(rs, &f);
    vlad_lang *ch = vlad_lang_new(4, f.m->cfg.max_prompt_tokens, -1, &err);
    assert_non_null(ch);
    vlad_lang_stats *st = vlad_lang_stats_of(ch);
    vlad_lang_sched_opts so = {.tokens_per_frame = 1};
    vlad_lang_sched *s = vlad_lang_sched_new(ch, rs, &so, &err);
    assert_non_null(s);
    const vlad_kvcache *kv = vlad_runstate_kv(rs);

    static got g[3];
    memset(g, 0, sizeof g);
    g[0].id = ask(ch, q[0]);
    /* before any served frame the ask waits (never on the warm-up's blank frame) */
    assert_true(vlad_lang_sched_run(s, VLAD_BETWEEN_WAKE, NULL, NULL));
    assert_int_equal(atomic_load(&st->active), 0);
    frame(rs, s, &f, f.a, 10);
    assert_true(vlad_lang_sched_run(s, VLAD_BETWEEN_FRAME, NULL, NULL));
    int block_a = vlad_runstate_prefix_block(rs);
    assert_int_equal(kv->prefix[block_a].refs, 2); /* current frame + the stream */
    g[1].id = ask(ch, q[1]);
    frame(rs, s, &f, f.b, 20);
    /* frame A is no longer current, but its stream still reads it */
    assert_int_not_equal(vlad_runstate_prefix_block(rs), block_a);
    assert_int_equal(kv->prefix[block_a].refs, 1);
    vlad_lang_sched_run(s, VLAD_BETWEEN_FRAME, NULL, NULL);
    g[2].id = ask(ch, q[2]);
    int frames = 2;
    int64_t tick = 30;
    long allocs = 0;
    for (int it = 0; it < 400 && !(g[0].done && g[1].done && g[2].done); it++, tick += 10) {
        vlad_alloc_counting = it >= 2; /* steady state: after every stream started */
        frame(rs, s, &f, it % 2 ? f.b : f.a, tick);
        vlad_lang_sched_run(s, VLAD_BETWEEN_FRAME, NULL, NULL);
        vlad_alloc_counting = 0;
        allocs += vlad_allocs_here;
        vlad_allocs_here = 0;
        frames++;
        collect(ch, g, 3);
    }
    int64_t asked_at[3] = {10, 20, 30};
    for (int i = 0; i < 3; i++) {
        assert_true(g[i].done);
        printf("stream %u on frame %llu (tick %lld): \"%.*s\" in %d pieces\n", g[i].id,
               (unsigned long long)g[i].frame, (long long)g[i].obs_tick, g[i].len, g[i].text,
               g[i].pieces);
        assert_int_equal(g[i].len, wlen[i]); /* batched across frames = decoded alone */
        assert_memory_equal(g[i].text, want[i], (size_t)wlen[i]);
        assert_int_equal(g[i].obs_tick, asked_at[i]);
        assert_int_equal(g[i].obs_robot_tick, asked_at[i] + 1000);
        assert_int_equal(g[i].frame, (uint64_t)(i + 1));
        assert_string_equal(g[i].question, q[i]);
    }
    assert_int_equal(kv->prefix[block_a].refs, 0); /* freed with its last reader */
    assert_int_equal(allocs, 0);
    /* one prefill per frame; every slot back */
    assert_int_equal(atomic_load(&st->prefills), (uint64_t)frames);
    assert_int_equal(atomic_load(&st->frames), (uint64_t)frames);
    assert_int_equal(atomic_load(&st->done), 3);
    assert_int_equal(atomic_load(&st->active), 0);
    assert_int_equal(atomic_load(&st->reserved), 0);
    assert_int_equal(atomic_load(&st->blocks_in_use), 1); /* the current frame only */
    assert_true(atomic_load(&st->tokens) >= (uint64_t)(wlen[0] + wlen[1] + wlen[2]));
    vlad_lang_sched_free(s);
    vlad_lang_free(ch);
    vlad_runstate_free(rs);
    fx_free(&f);
}

/* every slot busy: the next reservation is refused, a commentary due is skipped and counted,
 * and the frame's actions are computed as ever */
static void test_exhaustion(void **state) {
    (void)state;
    fx f = {0};
    fx_load(&f);
    vlad_err err = {0};
    vlad_runstate_opts o = {.n_threads = 1, .max_streams = 2};
    vlad_runstate *rs = vlad_runstate_new(f.m, &o, &err);
    warm(rs, &f);
    vlad_lang *ch = vlad_lang_new(2, f.m->cfg.max_prompt_tokens, -1, &err);
    vlad_lang_stats *st = vlad_lang_stats_of(ch);
    vlad_lang_sched_opts so = {.tokens_per_frame = 1, .commentary_every = 1};
    vlad_lang_sched *s = vlad_lang_sched_new(ch, rs, &so, &err);
    assert_non_null(s);
    /* more slots than the runstate has, or a k out of range, are refused */
    vlad_lang *big = vlad_lang_new(3, 32, -1, &err);
    assert_null(vlad_lang_sched_new(big, rs, &so, &err));
    vlad_lang_free(big);
    vlad_lang_sched_opts bad = {.tokens_per_frame = 65};
    assert_null(vlad_lang_sched_new(ch, rs, &bad, &err));

    frame(rs, s, &f, f.a, 1); /* the commentary starts: one slot */
    vlad_lang_sched_run(s, VLAD_BETWEEN_FRAME, NULL, NULL);
    assert_int_equal(atomic_load(&st->requests), 1);
    ask(ch, "what now?"); /* the second slot */
    assert_false(vlad_lang_reserve(ch)); /* a third ask is refused */
    float act[512], act2[512];
    assert_true(vlad_encode_prefix(rs, f.b, f.obs.prompt, strlen(f.obs.prompt), &err) >= 0);
    assert_int_equal(vlad_sample_actions(rs, f.obs.state, f.obs.noise, 7, act, &err), 0);
    vlad_lang_sched_frame(s, 2, 2);
    vlad_lang_sched_run(s, VLAD_BETWEEN_FRAME, NULL, NULL);
    assert_int_equal(atomic_load(&st->active), 2);
    assert_int_equal(atomic_load(&st->refused), 1); /* the commentary due on frame 2 */
    /* the same chunk as with no language at all */
    vlad_runstate_opts o1 = {.n_threads = 1};
    vlad_runstate *plain = vlad_runstate_new(f.m, &o1, &err);
    assert_true(vlad_encode_prefix(plain, f.b, f.obs.prompt, strlen(f.obs.prompt), &err) >= 0);
    assert_int_equal(vlad_sample_actions(plain, f.obs.state, f.obs.noise, 7, act2, &err), 0);
    assert_memory_equal(act, act2, sizeof(float) * (size_t)(f.m->cfg.chunk_size * f.m->cfg.action_dim));
    vlad_runstate_free(plain);
    /* ending the scheduler gives every slot back */
    vlad_lang_sched_free(s);
    assert_int_equal(atomic_load(&st->reserved), 0);
    vlad_lang_free(ch);
    vlad_runstate_free(rs);
    fx_free(&f);
}

static bool yield_after_one(void *arg) { return ++*(int *)arg > 1; }

/* wall clock: a queued action inference stops the slice after the token in progress;
 * lockstep: the slice runs whole whatever is queued */
static void test_preempt(void **state) {
    (void)state;
    fx f = {0};
    fx_load(&f);
    vlad_err err = {0};
    char want[512];
    int wlen = alone(&f, f.a, "what now?", want, sizeof want);
    assert_true(wlen >= 3);
    for (int wall = 1; wall >= 0; wall--) {
        vlad_runstate_opts o = {.n_threads = 1, .max_streams = 1};
        vlad_runstate *rs = vlad_runstate_new(f.m, &o, &err);
        warm(rs, &f);
        vlad_lang *ch = vlad_lang_new(1, f.m->cfg.max_prompt_tokens, -1, &err);
        vlad_lang_stats *st = vlad_lang_stats_of(ch);
        vlad_lang_sched_opts so = {.tokens_per_frame = 8, .preempt = wall};
        vlad_lang_sched *s = vlad_lang_sched_new(ch, rs, &so, &err);
        static got g[1];
        memset(g, 0, sizeof g);
        g[0].id = ask(ch, "what now?");
        frame(rs, s, &f, f.a, 5);
        int calls = 0;
        vlad_lang_sched_run(s, VLAD_BETWEEN_FRAME, yield_after_one, &calls);
        collect(ch, g, 1);
        int expect = wall ? 1 : (wlen < 8 ? wlen : 8);
        printf("%s: %d byte(s) in the first slice, %llu preempted\n", wall ? "wall" : "lockstep",
               g[0].len, (unsigned long long)atomic_load(&st->preempted));
        assert_int_equal(g[0].len, expect);
        assert_int_equal(atomic_load(&st->preempted), wall ? 1 : 0);
        /* idle slices (no frame: an e-stop, a stale robot) finish it, text unchanged */
        for (int it = 0; it < 100 && !g[0].done; it++) {
            vlad_lang_sched_run(s, VLAD_BETWEEN_IDLE, NULL, NULL);
            collect(ch, g, 1);
        }
        assert_true(g[0].done);
        assert_int_equal(g[0].len, wlen);
        assert_memory_equal(g[0].text, want, (size_t)wlen);
        vlad_lang_sched_free(s);
        vlad_lang_free(ch);
        vlad_runstate_free(rs);
    }
    fx_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel),
        cmocka_unit_test(test_streams_across_frames),
        cmocka_unit_test(test_exhaustion),
        cmocka_unit_test(test_preempt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
