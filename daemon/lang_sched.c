#include "lang_sched.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define MAX_SLOTS 64

typedef struct slot {
    bool used;
    uint32_t id, index;          /* stream id, next piece number */
    int sent;                    /* text bytes already emitted */
    int block;                   /* prefix block it reads */
    uint32_t qlen;
    char question[VLAD_LANG_Q_MAX];
} slot;

typedef struct block_meta {
    int64_t obs_tick, obs_robot_tick;
} block_meta;

struct vlad_lang_sched {
    vlad_lang *ch;
    vlad_lang_stats *st;
    vlad_runstate *rs;
    vlad_lang_sched_opts o;
    int n_slots;
    slot slots[MAX_SLOTS];
    vlad_lang_req pending[MAX_SLOTS]; /* asks taken from the channel, waiting for a frame */
    int n_pending;
    block_meta *meta;                 /* per prefix block: its frame's observation */
    uint64_t frames_base;             /* kv->frames when created (warm-up excluded) */
    int since_commentary;
    bool have_frame;                  /* a served frame was encoded (not the warm-up's) */
    int64_t win_start_ns;
    uint64_t win_tokens;
    vlad_lang_piece piece;            /* being filled (too large for the stack) */
};

vlad_lang_sched *vlad_lang_sched_new(vlad_lang *ch, vlad_runstate *rs,
                                     const vlad_lang_sched_opts *o, vlad_err *err) {
    const vlad_kvcache *kv = vlad_runstate_kv(rs);
    int n = vlad_lang_max_streams(ch);
    if (n > kv->n_streams || n > MAX_SLOTS || o->tokens_per_frame < 1 ||
        o->tokens_per_frame > VLAD_LANG_PIECE_MAX || o->commentary_every < 0) {
        vlad_err_set(err, VLAD_EINVAL,
                     "lang: %d streams for %d runstate slots, k = %d (1..%d), commentary every %d",
                     n, kv->n_streams, o->tokens_per_frame, VLAD_LANG_PIECE_MAX,
                     o->commentary_every);
        return NULL;
    }
    vlad_lang_sched *s = calloc(1, sizeof *s);
    if (s)
        s->meta = calloc((size_t)kv->n_prefix, sizeof *s->meta);
    if (!s || !s->meta) {
        free(s);
        vlad_err_set(err, VLAD_ENOMEM, "lang: out of memory");
        return NULL;
    }
    s->ch = ch;
    s->st = vlad_lang_stats_of(ch);
    s->rs = rs;
    s->o = *o;
    s->n_slots = n;
    s->frames_base = kv->frames;
    atomic_store(&s->st->blocks, (uint32_t)kv->n_prefix);
    return s;
}

static void blocks_in_use(vlad_lang_sched *s) {
    const vlad_kvcache *kv = vlad_runstate_kv(s->rs);
    uint32_t n = 0;
    for (int b = 0; b < kv->n_prefix; b++)
        n += kv->prefix[b].refs > 0;
    atomic_store(&s->st->blocks_in_use, n);
}

static void end_slot(vlad_lang_sched *s, int i) {
    vlad_lang_end(s->rs, i);
    s->slots[i].used = false;
    atomic_fetch_sub(&s->st->active, 1);
    atomic_fetch_add(&s->st->done, 1);
    vlad_lang_unreserve(s->ch);
}

void vlad_lang_sched_free(vlad_lang_sched *s) {
    if (!s)
        return;
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].used)
            end_slot(s, i);
    for (int i = 0; i < s->n_pending; i++)
        vlad_lang_unreserve(s->ch);
    free(s->meta);
    free(s);
}

void vlad_lang_sched_frame(vlad_lang_sched *s, int64_t obs_tick, int64_t obs_robot_tick) {
    const vlad_kvcache *kv = vlad_runstate_kv(s->rs);
    int b = vlad_runstate_prefix_block(s->rs);
    if (b >= 0)
        s->meta[b] = (block_meta){obs_tick, obs_robot_tick};
    atomic_store(&s->st->prefills, kv->frames - s->frames_base);
    atomic_fetch_add(&s->st->frames, 1);
    s->since_commentary++;
    s->have_frame = b >= 0;
    blocks_in_use(s);
}

/* Fill s->piece for slot i with `n` bytes from `text`. */
static vlad_lang_piece *piece_for(vlad_lang_sched *s, int i, const uint8_t *text, int n, bool done,
                                  const char *error) {
    slot *sl = &s->slots[i];
    vlad_lang_piece *p = &s->piece;
    const vlad_kvcache *kv = vlad_runstate_kv(s->rs);
    p->stream_id = sl->id;
    p->index = sl->index++;
    p->tick = s->o.tick ? atomic_load(s->o.tick) : 0;
    p->obs_tick = sl->block >= 0 ? s->meta[sl->block].obs_tick : -1;
    p->obs_robot_tick = sl->block >= 0 ? s->meta[sl->block].obs_robot_tick : -1;
    p->frame = sl->block >= 0 ? kv->prefix[sl->block].frame - s->frames_base : 0;
    p->n = (uint32_t)n;
    if (n)
        memcpy(p->text, text, (size_t)n);
    p->done = done;
    p->qlen = p->index == 0 ? sl->qlen : 0;
    if (p->qlen)
        memcpy(p->question, sl->question, p->qlen);
    snprintf(p->error, sizeof p->error, "%s", error ? error : "");
    return p;
}

/* Start a stream in slot-less request r (its slot is reserved) on the current frame. */
static void begin(vlad_lang_sched *s, const vlad_lang_req *r) {
    int i = 0;
    while (i < s->n_slots && s->slots[i].used)
        i++;
    if (i == s->n_slots) { /* cannot happen: reservations bound the streams */
        vlad_lang_unreserve(s->ch);
        return;
    }
    slot *sl = &s->slots[i];
    *sl = (slot){.used = true, .id = r->stream_id, .block = vlad_runstate_prefix_block(s->rs),
                 .qlen = r->qlen};
    memcpy(sl->question, r->question, r->qlen);
    atomic_fetch_add(&s->st->active, 1);
    vlad_err err;
    if (vlad_lang_begin(s->rs, i, r->question, r->qlen, &err)) {
        vlad_lang_emit(s->ch, piece_for(s, i, NULL, 0, true, err.msg), s->o.stop);
        sl->block = -1;
        end_slot(s, i);
    }
}

/* Queued asks, then (on a frame) the commentary; all on the current frame. A due action
 * inference (wall clock) stops the starting: the rest start after it, on its frame. */
static void start_streams(vlad_lang_sched *s, vlad_between_why why, bool (*yield)(void *),
                          void *arg) {
    vlad_lang_req r;
    while (s->n_pending < MAX_SLOTS && vlad_lang_take(s->ch, &s->pending[s->n_pending]))
        s->n_pending++;
    if (!s->have_frame)
        return; /* no frame yet: they wait for the first (never the warm-up's blank one) */
    int k = 0;
    while (k < s->n_pending && !(k > 0 && s->o.preempt && yield && yield(arg)))
        begin(s, &s->pending[k++]);
    memmove(s->pending, s->pending + k, sizeof s->pending[0] * (size_t)(s->n_pending - k));
    s->n_pending -= k;
    if (s->n_pending)
        return;
    if (why == VLAD_BETWEEN_FRAME && s->o.commentary_every > 0 &&
        s->since_commentary >= s->o.commentary_every) {
        s->since_commentary = 0;
        if (vlad_lang_reserve(s->ch)) {
            r.stream_id = vlad_lang_next_id(s->ch);
            r.qlen = 0;
            atomic_fetch_add(&s->st->requests, 1);
            begin(s, &r);
        } else {
            atomic_fetch_add(&s->st->refused, 1);
        }
    }
}

/* One decode slice: k tokens for every active stream, then one piece per stream. */
static void slice(vlad_lang_sched *s, bool (*yield)(void *), void *arg) {
    if (!atomic_load(&s->st->active))
        return;
    uint64_t tokens = 0;
    const char *error = NULL;
    vlad_err err;
    for (int t = 0; t < s->o.tokens_per_frame; t++) {
        if (s->o.preempt && yield && yield(arg)) {
            atomic_fetch_add(&s->st->preempted, 1);
            break;
        }
        int left = vlad_lang_step(s->rs, 1, &err);
        if (left < 0) {
            error = err.msg;
            break;
        }
        tokens += (uint64_t)vlad_runstate_timing(s->rs)->lang_step_tokens;
        if (left == 0)
            break;
    }
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (!sl->used)
            continue;
        vlad_lang_info li;
        vlad_lang_get(s->rs, i, &li);
        bool done = li.done || error;
        int n = li.len - sl->sent;
        if (n > 0 || done) {
            vlad_lang_emit(s->ch, piece_for(s, i, li.text + sl->sent, n, done, error), s->o.stop);
            sl->sent = li.len;
        }
        if (done)
            end_slot(s, i);
    }
    atomic_fetch_add(&s->st->tokens, tokens);
    int64_t now = vlad_now_ns();
    if (!s->win_start_ns)
        s->win_start_ns = now;
    s->win_tokens += tokens;
    if (now - s->win_start_ns >= VLAD_NS_PER_S) {
        atomic_store(&s->st->tokens_per_s,
                     (double)s->win_tokens * 1e9 / (double)(now - s->win_start_ns));
        atomic_store(&s->st->rate_ns, now);
        s->win_start_ns = now;
        s->win_tokens = 0;
    }
}

bool vlad_lang_sched_run(vlad_lang_sched *s, vlad_between_why why, bool (*yield)(void *),
                         void *arg) {
    if (why == VLAD_BETWEEN_WAKE)
        vlad_lang_clear_wake(s->ch);
    start_streams(s, why, yield, arg);
    if (why != VLAD_BETWEEN_WAKE)
        slice(s, yield, arg);
    blocks_in_use(s);
    return atomic_load(&s->st->active) > 0 || s->n_pending > 0;
}
