/* vlad-replay — read, replay and plot a recording of `vlad --record DIR` (daemon/record.h).
 *
 *   vlad-replay --dump FILE.vrec
 *       one line per entry: seq, time (s since the recording started), kind, tick, details
 *   vlad-replay --profile FILE [--set K=V ...] [--spawn] [--tolerance X] [--json OUT]
 *               [--plot DIR] [--timeout MS] FILE.vrec
 *       connect as the robot to a daemon running the same profile in lockstep (--spawn: start
 *       `vlad --profile FILE --set clock=lockstep --set record.dir= --set record.file=
 *       --set safety.estop_file=none [the --set's]` and stop it after), feed it the recording's
 *       observations in order with vlad_client_lockstep and its commands (all but status) where
 *       they were in the sequence, and diff each Action against the recorded one for the same
 *       step: max |Δ| over all targets, the first divergent tick (|Δ| > --tolerance, default 0:
 *       bit-identical), counts, and the latencies (recorded / replayed: chunk inference latency
 *       from ActionChunk.inference_latency_us; response latency: recorded observation receipt to
 *       Action publication on the daemon's clock, replayed the round trip seen here).
 *   vlad-replay --plot DIR FILE.vrec
 *       without --profile: only the plots (DIR/joints.png: targets and observed positions per
 *       joint over time, replayed targets too after a replay; DIR/latency.png: response and
 *       inference latency per action / chunk), through gnuplot (common/plot.h).
 *
 * A step is one observation and the first Action published after it whose robot_tick is the
 * observation's tick (its answer); an observation repeating the previous one's tick with no
 * command between (a lockstep resend) is the same step and is not replayed. An observation
 * that got no answer (the daemon dropped it: out of limits, absurd) is published without
 * waiting. Observations recorded without pixels (record.images hash|none) are replayed without
 * images (the actions then differ; a warning says so).
 *
 * Exit status: 0 every step identical within the tolerance, 1 divergent (or an answer missing),
 * 2 usage, 3 I/O (the file, no daemon, a timeout; with --plot alone, a plot not drawn). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "client.h"
#include "clock.h"
#include "opts.h"
#include "plot.h"
#include "proc.h"
#include "profile.h"
#include "record.h"

enum { EXIT_SAME = 0, EXIT_DIVERGENT = 1, EXIT_USAGE = 2, EXIT_IO = 3 };

#define MAX_CMDS 256 /* commands between two observations that are replayed */

static struct {
    const char *profile, *json, *plot, *log;
    vlad_sets sets;
    int spawn, dump, timeout;
    double tolerance;
} o = {.timeout = 10000};


static const vlad_opt k_opts[] = {
    {"profile", VLAD_OPT_STR, &o.profile, "FILE", "the profile the daemon runs (replay: endpoints, joints)", 0, 0, NULL},
    {"set", VLAD_OPT_CALL, &o.sets, "KEY=VALUE", "override a profile key, as vlad --set (repeatable)", 0, 0, vlad_sets_add},
    {"spawn", VLAD_OPT_FLAG, &o.spawn, NULL, "start vlad in lockstep with the profile for the replay, stop it after", 0, 0, NULL},
    {"tolerance", VLAD_OPT_DOUBLE, &o.tolerance, "X", "largest |target difference| that is not a divergence", 0, 1e9, NULL},
    {"timeout", VLAD_OPT_INT, &o.timeout, "MS", "wait this long for each answer (and for a spawned daemon)", 1, 3600000, NULL},
    {"json", VLAD_OPT_STR, &o.json, "FILE", "also write the report as JSON", 0, 0, NULL},
    {"plot", VLAD_OPT_STR, &o.plot, "DIR", "write DIR/joints.png and DIR/latency.png (gnuplot)", 0, 0, NULL},
    {"log", VLAD_OPT_STR, &o.log, "FILE", "--spawn: the daemon's output (default: this stderr)", 0, 0, NULL},
    {"dump", VLAD_OPT_FLAG, &o.dump, NULL, "print one line per entry and exit", 0, 0, NULL},
    {0},
};

static void usage(FILE *f) {
    vlad_opts_usage(f,
                    "vlad-replay --dump FILE.vrec\n"
                    "       vlad-replay --profile FILE [--set K=V ...] [--spawn] [--tolerance X] "
                    "[--json OUT] [--plot DIR] FILE.vrec\n"
                    "       vlad-replay --plot DIR FILE.vrec\n"
                    "exit: 0 identical within the tolerance, 1 divergent, 2 usage, 3 I/O or no daemon",
                    k_opts);
}

/* ---- growable arrays ------------------------------------------------------------------- */

typedef struct dvec {
    double *v;
    size_t n, cap;
} dvec;

static int dpush(dvec *d, double x) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        double *nv = realloc(d->v, cap * sizeof *nv);
        if (!nv)
            return VLAD_ENOMEM;
        d->v = nv;
        d->cap = cap;
    }
    d->v[d->n++] = x;
    return VLAD_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* quantile q of d (sorted in place); NaN when empty */
static double quantile(dvec *d, double q) {
    if (!d->n)
        return NAN;
    qsort(d->v, d->n, sizeof *d->v, cmp_double);
    size_t i = (size_t)ceil(q * (double)d->n);
    return d->v[i ? i - 1 : 0];
}

/* ---- the pass over a recording ------------------------------------------------------ */

typedef struct report {
    int nj;                       /* joints (the header's, or the profile's) */
    char robot[VLAD_NAME_MAX], clock[16], images[16], version[32];
    int64_t start_ns;
    uint64_t entries, by_kind[9], last_seq, gaps, dropped;
    bool truncated, header;
    /* steps */
    uint64_t steps, duplicates, unanswered, commands, cmds_replayed, replies_differ;
    uint64_t compared, identical, divergent, missing, source_differ;
    double max_abs;
    int64_t first_tick, first_robot_tick; /* of the first divergent step (-1: none) */
    int first_joint;
    double first_delta;
    bool no_pixels;
    /* series (seconds since start_ns; targets/positions nj per row) */
    dvec obs_t, obs_pos, act_t, act_tgt, rep_t, rep_tgt;
    dvec lat_rec_resp, lat_rep_resp, lat_rec_inf, lat_rep_inf;
    dvec resp_t, inf_t, rep_resp_t, rep_inf_t;
} report;

typedef struct step {
    Vlad__RecordEntry *obs;       /* NULL: none pending */
    Vlad__RecordEntry *answer;    /* the recorded Action answering it, or NULL */
    Vlad__RecordEntry *cmds[MAX_CMDS];
    bool cmd_reply_ok[MAX_CMDS], cmd_has_reply[MAX_CMDS];
    int ncmds;
} step;

typedef struct replayer {
    report *rep;
    const vlad_profile *p;
    vlad_client *c;               /* NULL: no replay (plot only) */
    step cur;
    bool warned_pixels;
    int io_error;                 /* an exit code once replay failed (0: fine) */
} replayer;

static double rel_s(const report *r, int64_t t_ns) { return (double)(t_ns - r->start_ns) / 1e9; }

static void on_replayed_msg(void *arg, vlad_msg *m) {
    replayer *rp = arg;
    if (m->kind == VLAD_MSG_CHUNK) {
        dpush(&rp->rep->lat_rep_inf, m->u.chunk->inference_latency_us);
        /* at the recorded time of the step being replayed */
        dpush(&rp->rep->rep_inf_t, rp->cur.obs ? rel_s(rp->rep, rp->cur.obs->t_ns) : 0.0);
    }
    vlad_msg_clear(m);
}

static void compare(replayer *rp, const Vlad__Action *rec, const Vlad__Action *got) {
    report *r = rp->rep;
    r->compared++;
    double worst = 0;
    int wj = -1;
    size_t n = rec->n_joint_targets;
    bool shape = n == got->n_joint_targets;
    for (size_t j = 0; shape && j < n; j++) {
        double d = fabs(rec->joint_targets[j] - got->joint_targets[j]);
        if (d != d) /* NaN on one side only */
            d = INFINITY;
        if (d > worst || wj < 0)
            worst = d, wj = (int)j;
    }
    if (!shape)
        worst = INFINITY;
    if (worst > r->max_abs)
        r->max_abs = worst;
    if (rec->source != got->source)
        r->source_differ++;
    if (worst <= o.tolerance) {
        r->identical++;
        return;
    }
    if (!r->divergent++) {
        r->first_tick = rec->tick;
        r->first_robot_tick = rec->robot_tick;
        r->first_joint = wj;
        r->first_delta = worst;
    }
}

/* replay one command (not status), waiting for its reply */
static void replay_command(replayer *rp, const Vlad__RecordEntry *e, bool has_reply, bool reply_ok) {
    Vlad__Command *c = e->command;
    if (!c || c->body_case == VLAD__COMMAND__BODY_STATUS || c->body_case == VLAD__COMMAND__BODY__NOT_SET)
        return;
    rp->rep->cmds_replayed++;
    uint64_t rid = c->request_id;
    c->request_id = 0; /* ours: the client numbers its requests */
    Vlad__Reply *reply = NULL;
    vlad_err err;
    int rc = vlad_client_command(rp->c, c, o.timeout, &reply, &err);
    c->request_id = rid;
    if (rc) {
        fprintf(stderr, "vlad-replay: command (entry %llu): %s\n", (unsigned long long)e->seq, err.msg);
        rp->io_error = EXIT_IO;
        return;
    }
    if (has_reply && reply->ok != reply_ok)
        rp->rep->replies_differ++;
    vlad__reply__free_unpacked(reply, NULL);
}

/* the pending step: publish its observation, take the answer, compare, then its commands */
static void run_step(replayer *rp) {
    step *s = &rp->cur;
    report *r = rp->rep;
    if (!s->obs)
        return;
    Vlad__Observation *ob = s->obs->observation;
    Vlad__Action *rec = s->answer ? s->answer->action : NULL;
    if (rec)
        dpush(&r->lat_rec_resp, (double)(s->answer->t_ns - s->obs->t_ns) / 1e3),
            dpush(&r->resp_t, rel_s(r, s->answer->t_ns));
    else
        r->unanswered++;
    if (rp->c && !rp->io_error) {
        /* no pixels kept: replay without the images (the daemon refuses empty ones) */
        size_t keep = 0;
        for (size_t i = 0; i < ob->n_images; i++)
            if (ob->images[i]->data.len)
                ob->images[keep++] = ob->images[i];
            else
                rp->rep->no_pixels = true;
        size_t n_images = ob->n_images;
        ob->n_images = keep;
        if (r->no_pixels && !rp->warned_pixels) {
            rp->warned_pixels = true;
            fprintf(stderr, "vlad-replay: warning: the recording kept no pixels (record.images: %s): "
                            "observations are replayed without images, the actions will differ\n",
                    r->images);
        }
        vlad_err err;
        int64_t t0 = vlad_now_ns();
        if (rec) {
            Vlad__Action *got = NULL;
            if (vlad_client_lockstep(rp->c, ob, o.timeout, 200, on_replayed_msg, rp, &got, &err)) {
                fprintf(stderr, "vlad-replay: observation (entry %llu, robot tick %lld): %s "
                                "(is the daemon running this profile in lockstep?)\n",
                        (unsigned long long)s->obs->seq, (long long)ob->tick, err.msg);
                rp->io_error = EXIT_IO;
            } else {
                double t = rel_s(r, s->answer->t_ns);
                dpush(&r->lat_rep_resp, (double)(vlad_now_ns() - t0) / 1e3);
                dpush(&r->rep_resp_t, t);
                compare(rp, rec, got);
                dpush(&r->rep_t, t);
                for (int j = 0; j < r->nj; j++)
                    dpush(&r->rep_tgt, (size_t)j < got->n_joint_targets ? got->joint_targets[j] : NAN);
                vlad__action__free_unpacked(got, NULL);
            }
        } else if (vlad_client_publish_observation(rp->c, ob, &err)) {
            fprintf(stderr, "vlad-replay: publish: %s\n", err.msg);
            rp->io_error = EXIT_IO;
        }
        ob->n_images = n_images;
        for (int i = 0; i < s->ncmds && !rp->io_error; i++)
            replay_command(rp, s->cmds[i], s->cmd_has_reply[i], s->cmd_reply_ok[i]);
    }
    vlad__record_entry__free_unpacked(s->obs, NULL);
    if (s->answer)
        vlad__record_entry__free_unpacked(s->answer, NULL);
    for (int i = 0; i < s->ncmds; i++)
        vlad__record_entry__free_unpacked(s->cmds[i], NULL);
    memset(s, 0, sizeof *s);
}

static void take_header(report *r, const Vlad__RecordHeader *h) {
    r->header = true;
    snprintf(r->robot, sizeof r->robot, "%s", h->robot ? h->robot : "");
    snprintf(r->clock, sizeof r->clock, "%s", h->clock ? h->clock : "");
    snprintf(r->images, sizeof r->images, "%s", h->images ? h->images : "");
    snprintf(r->version, sizeof r->version, "%s", h->vlad_version ? h->vlad_version : "");
    r->start_ns = h->start_ns;
    if (!r->nj)
        r->nj = (int)(h->n_joints < VLAD_MAX_JOINTS ? h->n_joints : VLAD_MAX_JOINTS);
}

/* One entry of the pass. Takes e. */
static void on_entry(replayer *rp, Vlad__RecordEntry *e) {
    report *r = rp->rep;
    step *s = &rp->cur;
    r->entries++;
    if (e->kind >= 0 && e->kind <= 8)
        r->by_kind[e->kind]++;
    if (r->entries > 1 && e->seq > r->last_seq + 1)
        r->gaps += e->seq - r->last_seq - 1;
    r->last_seq = e->seq;
    r->dropped = e->dropped;
    if (!r->start_ns)
        r->start_ns = e->t_ns;
    switch (e->body_case) {
    case VLAD__RECORD_ENTRY__BODY_HEADER:
        take_header(r, e->header);
        break;
    case VLAD__RECORD_ENTRY__BODY_OBSERVATION: {
        const Vlad__Observation *ob = e->observation;
        dpush(&r->obs_t, rel_s(r, e->t_ns));
        for (int j = 0; j < r->nj; j++)
            dpush(&r->obs_pos, (size_t)j < ob->n_joint_pos ? ob->joint_pos[j] : NAN);
        if (s->obs && !s->ncmds && ob->tick == s->obs->observation->tick) {
            r->duplicates++; /* a resend: the same step */
            break;
        }
        run_step(rp);
        r->steps++;
        s->obs = e;
        return;
    }
    case VLAD__RECORD_ENTRY__BODY_ACTION: {
        const Vlad__Action *a = e->action;
        dpush(&r->act_t, rel_s(r, e->t_ns));
        for (int j = 0; j < r->nj; j++)
            dpush(&r->act_tgt, (size_t)j < a->n_joint_targets ? a->joint_targets[j] : NAN);
        if (s->obs && !s->answer && a->robot_tick == s->obs->observation->tick) {
            s->answer = e;
            return;
        }
        break;
    }
    case VLAD__RECORD_ENTRY__BODY_CHUNK:
        dpush(&r->lat_rec_inf, e->chunk->inference_latency_us);
        dpush(&r->inf_t, rel_s(r, e->t_ns));
        break;
    case VLAD__RECORD_ENTRY__BODY_COMMAND:
        r->commands++;
        if (!s->obs) { /* before any observation: now */
            if (rp->c && !rp->io_error)
                replay_command(rp, e, false, false);
            break;
        }
        if (s->ncmds == MAX_CMDS) {
            fprintf(stderr, "vlad-replay: more than %d commands between two observations: entry "
                            "%llu is not replayed\n", MAX_CMDS, (unsigned long long)e->seq);
            break;
        }
        s->cmds[s->ncmds++] = e;
        return;
    case VLAD__RECORD_ENTRY__BODY_REPLY:
        for (int i = 0; i < s->ncmds; i++)
            if (s->cmds[i]->command->request_id == e->reply->request_id && !s->cmd_has_reply[i]) {
                s->cmd_has_reply[i] = true;
                s->cmd_reply_ok[i] = e->reply->ok;
                break;
            }
        break;
    default:
        break;
    }
    vlad__record_entry__free_unpacked(e, NULL);
}

/* Read the whole file through on_entry. EXIT_SAME, or EXIT_IO after saying why. */
static int pass(const char *path, replayer *rp) {
    vlad_err err;
    vlad_rec_reader *rd = vlad_rec_reader_open(path, &err);
    if (!rd) {
        fprintf(stderr, "vlad-replay: %s\n", err.msg);
        return EXIT_IO;
    }
    int rc = EXIT_SAME;
    for (;;) {
        Vlad__RecordEntry *e;
        if (vlad_rec_reader_next(rd, &e, &err)) {
            fprintf(stderr, "vlad-replay: %s\n", err.msg);
            rc = EXIT_IO;
            break;
        }
        if (!e)
            break;
        on_entry(rp, e);
        if (rp->io_error)
            break;
    }
    if (!rp->io_error)
        run_step(rp);
    else
        run_step(rp), rc = rp->io_error;
    rp->rep->truncated = vlad_rec_reader_truncated(rd);
    if (rp->rep->truncated)
        fprintf(stderr, "vlad-replay: %s: the last entry is cut short (ignored)\n", path);
    vlad_rec_reader_free(rd);
    return rc;
}

/* ---- --dump ------------------------------------------------------------------------------ */

static const char *cmd_name(const Vlad__Command *c) {
    switch (c->body_case) {
    case VLAD__COMMAND__BODY_SET_INSTRUCTION: return "instruction";
    case VLAD__COMMAND__BODY_ASK: return "ask";
    case VLAD__COMMAND__BODY_ESTOP: return "estop";
    case VLAD__COMMAND__BODY_RELEASE_ESTOP: return "release";
    case VLAD__COMMAND__BODY_RESET: return "reset";
    case VLAD__COMMAND__BODY_STATUS: return "status";
    default: return "?";
    }
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v) {
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    return ev ? ev->name : "?";
}

static int dump(const char *path) {
    vlad_err err;
    vlad_rec_reader *rd = vlad_rec_reader_open(path, &err);
    if (!rd) {
        fprintf(stderr, "vlad-replay: %s\n", err.msg);
        return EXIT_IO;
    }
    int64_t start = 0;
    int rc = EXIT_SAME;
    printf("#   seq       time_s kind        tick  details\n");
    for (bool first = true;; first = false) {
        Vlad__RecordEntry *e;
        if (vlad_rec_reader_next(rd, &e, &err)) {
            fprintf(stderr, "vlad-replay: %s\n", err.msg);
            rc = EXIT_IO;
            break;
        }
        if (!e)
            break;
        if (first)
            start = e->body_case == VLAD__RECORD_ENTRY__BODY_HEADER ? e->header->start_ns : e->t_ns;
        printf("%7llu %12.6f %-11s ", (unsigned long long)e->seq, (double)(e->t_ns - start) / 1e9,
               vlad_record_kind_name(e->kind));
        switch (e->body_case) {
        case VLAD__RECORD_ENTRY__BODY_HEADER: {
            const Vlad__RecordHeader *h = e->header;
            printf("%6s  robot=%s clock=%s async=%s images=%s joints=%zu version=%s model=%s\n", "-",
                   h->robot, h->clock, h->async_mode, h->images, h->n_joints, h->vlad_version,
                   h->model);
            break;
        }
        case VLAD__RECORD_ENTRY__BODY_OBSERVATION: {
            const Vlad__Observation *ob = e->observation;
            size_t px = 0;
            for (size_t i = 0; i < ob->n_images; i++)
                px += ob->images[i]->data.len;
            printf("%6lld  seq=%llu images=%zu pixel_bytes=%zu digests=%zu events=%zu\n",
                   (long long)ob->tick, (unsigned long long)ob->seq, ob->n_images, px,
                   e->n_image_digests, ob->n_events);
            break;
        }
        case VLAD__RECORD_ENTRY__BODY_COMMAND:
            printf("%6s  request_id=%llu %s\n", "-", (unsigned long long)e->command->request_id,
                   cmd_name(e->command));
            break;
        case VLAD__RECORD_ENTRY__BODY_ACTION: {
            const Vlad__Action *a = e->action;
            printf("%6lld  robot_tick=%lld source=%s chunk=%llu target[0]=%.17g\n", (long long)a->tick,
                   (long long)a->robot_tick, enum_name(&vlad__action_source__descriptor, a->source),
                   (unsigned long long)a->chunk_id,
                   a->n_joint_targets ? a->joint_targets[0] : NAN);
            break;
        }
        case VLAD__RECORD_ENTRY__BODY_CHUNK:
            printf("%6lld  chunk=%llu horizon=%u obs_tick=%lld latency_us=%u\n",
                   (long long)e->chunk->start_tick, (unsigned long long)e->chunk->chunk_id,
                   e->chunk->horizon, (long long)e->chunk->obs_tick, e->chunk->inference_latency_us);
            break;
        case VLAD__RECORD_ENTRY__BODY_LANGUAGE:
            printf("%6lld  stream=%u index=%u done=%d text=\"%.*s\"\n", (long long)e->language->tick,
                   e->language->stream_id, e->language->index, e->language->done,
                   (int)e->language->text.len, (const char *)e->language->text.data);
            break;
        case VLAD__RECORD_ENTRY__BODY_EVENT:
            printf("%6lld  %s %s\n", (long long)e->event->tick,
                   enum_name(&vlad__event__kind__descriptor, e->event->kind), e->event->message);
            break;
        case VLAD__RECORD_ENTRY__BODY_REPLY:
            printf("%6lld  request_id=%llu ok=%d%s%s\n",
                   (long long)(e->reply->status ? e->reply->status->tick : -1),
                   (unsigned long long)e->reply->request_id, e->reply->ok,
                   e->reply->error && e->reply->error[0] ? " error=" : "",
                   e->reply->error ? e->reply->error : "");
            break;
        default:
            printf("%6s  (no body)\n", "-");
            break;
        }
        vlad__record_entry__free_unpacked(e, NULL);
    }
    if (vlad_rec_reader_truncated(rd))
        fprintf(stderr, "vlad-replay: %s: the last entry is cut short (ignored)\n", path);
    vlad_rec_reader_free(rd);
    return rc;
}

/* ---- plots ------------------------------------------------------------------------------ */

static void data_rows(vlad_plot *pl, const char *name, const dvec *t, const dvec *v, int nj) {
    vlad_plot_data(pl, name);
    double row[1 + VLAD_MAX_JOINTS];
    for (size_t i = 0; i < t->n; i++) {
        row[0] = t->v[i];
        for (int j = 0; j < nj; j++)
            row[1 + j] = v ? v->v[i * (size_t)nj + (size_t)j] : NAN;
        vlad_plot_row(pl, row, v ? 1 + nj : 1);
    }
    vlad_plot_end_data(pl);
}

static void data_xy(vlad_plot *pl, const char *name, const dvec *t, const dvec *y, double scale) {
    vlad_plot_data(pl, name);
    for (size_t i = 0; i < t->n && i < y->n; i++) {
        double row[2] = {t->v[i], y->v[i] * scale};
        vlad_plot_row(pl, row, 2);
    }
    vlad_plot_end_data(pl);
}

static int plots(const char *dir, report *r, const vlad_profile *p, bool replayed) {
    if (mkdir(dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "vlad-replay: --plot %s: %s\n", dir, strerror(errno));
        return EXIT_IO;
    }
    char path[VLAD_PATH_MAX + 32], title[256];
    vlad_err err;
    int rc = EXIT_SAME, nj = r->nj;
    snprintf(path, sizeof path, "%s/joints.png", dir);
    vlad_plot *pl = vlad_plot_new(path, 1000, 80 + 220 * (nj ? nj : 1), NULL, &err);
    if (!pl) {
        fprintf(stderr, "vlad-replay: %s\n", err.msg);
        return EXIT_IO;
    }
    data_rows(pl, "obs", &r->obs_t, &r->obs_pos, nj);
    data_rows(pl, "act", &r->act_t, &r->act_tgt, nj);
    if (replayed)
        data_rows(pl, "rep", &r->rep_t, &r->rep_tgt, nj);
    snprintf(title, sizeof title, "%s: joint targets and observed positions (%s clock)", r->robot,
             r->clock);
    vlad_plot_printf(pl, "set multiplot layout %d,1 title '%s'\nset key top right opaque\n", nj ? nj : 1,
                     title);
    for (int j = 0; j < nj; j++) {
        const char *name = p && j < p->n_joints ? p->joints[j].name : "";
        vlad_plot_printf(pl, "set ylabel 'joint %d %s'\n%s", j, name,
                         j == nj - 1 ? "set xlabel 'time since the recording started (s)'\n" : "");
        vlad_plot_printf(pl, "plot $act using 1:%d with steps lw 1.5 title 'target (recorded)', "
                             "$obs using 1:%d with lines dt 3 title 'observed position'",
                         j + 2, j + 2);
        if (replayed)
            vlad_plot_printf(pl, ", $rep using 1:%d with points pt 7 ps 0.3 title 'target (replayed)'",
                             j + 2);
        vlad_plot_printf(pl, "\n");
    }
    vlad_plot_printf(pl, "unset multiplot\n");
    if (vlad_plot_finish(pl, 0, &err)) {
        fprintf(stderr, "vlad-replay: %s\n", err.msg);
        rc = EXIT_IO;
    } else {
        printf("plot: %s\n", path);
    }
    snprintf(path, sizeof path, "%s/latency.png", dir);
    snprintf(title, sizeof title, "%s: latency per action and per chunk", r->robot);
    pl = vlad_plot_new(path, 1000, 500, title, &err);
    if (!pl) {
        fprintf(stderr, "vlad-replay: %s\n", err.msg);
        return EXIT_IO;
    }
    data_xy(pl, "resp", &r->resp_t, &r->lat_rec_resp, 1e-3);
    data_xy(pl, "inf", &r->inf_t, &r->lat_rec_inf, 1e-3);
    if (replayed) {
        data_xy(pl, "rresp", &r->rep_resp_t, &r->lat_rep_resp, 1e-3);
        data_xy(pl, "rinf", &r->rep_inf_t, &r->lat_rep_inf, 1e-3);
    }
    vlad_plot_printf(pl, "set key top right opaque\nset xlabel 'time since the recording started (s)'\n"
                         "set ylabel 'ms'\n"
                         "plot $resp using 1:2 with points pt 7 ps 0.4 title 'observation to action (daemon)', "
                         "$inf using 1:2 with points pt 5 ps 0.6 title 'chunk inference'");
    if (replayed)
        vlad_plot_printf(pl, ", $rresp using 1:2 with points pt 6 ps 0.4 title 'round trip (replay)', "
                             "$rinf using 1:2 with points pt 4 ps 0.6 title 'chunk inference (replay)'");
    vlad_plot_printf(pl, "\n");
    if (vlad_plot_finish(pl, 0, &err)) {
        fprintf(stderr, "vlad-replay: %s\n", err.msg);
        rc = EXIT_IO;
    } else {
        printf("plot: %s\n", path);
    }
    return rc;
}

/* ---- the report ---------------------------------------------------------------------- */

static cJSON *lat_json(dvec *d) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "count", (double)d->n);
    if (d->n) {
        cJSON_AddNumberToObject(j, "p50_us", quantile(d, 0.5));
        cJSON_AddNumberToObject(j, "p99_us", quantile(d, 0.99));
    }
    return j;
}

static void print_lat(const char *what, dvec *d) {
    if (d->n)
        printf("  %-34s %8zu  p50 %10.1f  p99 %10.1f\n", what, d->n, quantile(d, 0.5), quantile(d, 0.99));
    else
        printf("  %-34s %8zu\n", what, d->n);
}

static int write_json(const char *path, const char *file, report *r, bool replayed, int result) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "file", file);
    cJSON_AddStringToObject(j, "robot", r->robot);
    cJSON_AddStringToObject(j, "clock", r->clock);
    cJSON_AddStringToObject(j, "images", r->images);
    cJSON_AddStringToObject(j, "vlad_version", r->version);
    cJSON_AddNumberToObject(j, "entries", (double)r->entries);
    cJSON *k = cJSON_AddObjectToObject(j, "by_kind");
    for (int i = 1; i <= 8; i++)
        cJSON_AddNumberToObject(k, vlad_record_kind_name(i), (double)r->by_kind[i]);
    cJSON_AddNumberToObject(j, "dropped", (double)r->dropped);
    cJSON_AddNumberToObject(j, "seq_gaps", (double)r->gaps);
    cJSON_AddBoolToObject(j, "truncated", r->truncated);
    cJSON_AddNumberToObject(j, "steps", (double)r->steps);
    cJSON_AddNumberToObject(j, "duplicate_observations", (double)r->duplicates);
    cJSON_AddNumberToObject(j, "unanswered_observations", (double)r->unanswered);
    cJSON_AddNumberToObject(j, "commands", (double)r->commands);
    cJSON_AddBoolToObject(j, "replayed", replayed);
    if (replayed) {
        cJSON_AddNumberToObject(j, "commands_replayed", (double)r->cmds_replayed);
        cJSON_AddNumberToObject(j, "replies_differing", (double)r->replies_differ);
        cJSON_AddNumberToObject(j, "tolerance", o.tolerance);
        cJSON_AddNumberToObject(j, "actions_compared", (double)r->compared);
        cJSON_AddNumberToObject(j, "identical", (double)r->identical);
        cJSON_AddNumberToObject(j, "divergent", (double)r->divergent);
        cJSON_AddNumberToObject(j, "sources_differing", (double)r->source_differ);
        cJSON_AddNumberToObject(j, "max_abs_diff", isfinite(r->max_abs) ? r->max_abs : 1e308);
        cJSON_AddNumberToObject(j, "first_divergent_tick", (double)r->first_tick);
        cJSON_AddNumberToObject(j, "first_divergent_robot_tick", (double)r->first_robot_tick);
        cJSON_AddBoolToObject(j, "replayed_without_pixels", r->no_pixels);
        cJSON_AddStringToObject(j, "result", result == EXIT_SAME ? "identical"
                                             : result == EXIT_DIVERGENT ? "divergent" : "error");
    }
    cJSON *l = cJSON_AddObjectToObject(j, "latency");
    cJSON_AddItemToObject(l, "recorded_inference", lat_json(&r->lat_rec_inf));
    cJSON_AddItemToObject(l, "recorded_response", lat_json(&r->lat_rec_resp));
    if (replayed) {
        cJSON_AddItemToObject(l, "replayed_inference", lat_json(&r->lat_rep_inf));
        cJSON_AddItemToObject(l, "replayed_round_trip", lat_json(&r->lat_rep_resp));
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    FILE *f = s ? fopen(path, "w") : NULL;
    bool ok = f && fputs(s, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f))
        ok = false;
    free(s);
    if (!ok) {
        fprintf(stderr, "vlad-replay: --json %s: cannot write it\n", path);
        return EXIT_IO;
    }
    return EXIT_SAME;
}

static void print_report(const char *file, report *r, bool replayed, int result) {
    printf("recording %s: robot %s, clock %s, images %s, vlad %s\n", file, r->robot, r->clock,
           r->images, r->version);
    printf("  %-34s %8llu", "entries", (unsigned long long)r->entries);
    for (int i = 1; i <= 8; i++)
        printf("  %s %llu", vlad_record_kind_name(i), (unsigned long long)r->by_kind[i]);
    printf("\n  %-34s %8llu  (seq gaps %llu%s)\n", "dropped while recording",
           (unsigned long long)r->dropped, (unsigned long long)r->gaps,
           r->truncated ? ", last entry cut short" : "");
    printf("  %-34s %8llu  (%llu resends merged, %llu without an answer)\n", "steps",
           (unsigned long long)r->steps, (unsigned long long)r->duplicates,
           (unsigned long long)r->unanswered);
    if (replayed) {
        printf("  %-34s %8llu  (replies differing %llu)\n", "commands replayed",
               (unsigned long long)r->cmds_replayed, (unsigned long long)r->replies_differ);
        printf("  %-34s %8llu\n", "actions compared", (unsigned long long)r->compared);
        printf("  %-34s %8llu  (tolerance %g)\n", "identical", (unsigned long long)r->identical,
               o.tolerance);
        printf("  %-34s %8llu  (sources differing %llu)\n", "divergent", (unsigned long long)r->divergent,
               (unsigned long long)r->source_differ);
        printf("  %-34s %8.3g\n", "max |delta| (joint units)", r->max_abs);
        if (r->divergent)
            printf("  %-34s %8lld  (robot tick %lld, joint %d, |delta| %.3g)\n", "first divergent tick",
                   (long long)r->first_tick, (long long)r->first_robot_tick, r->first_joint,
                   r->first_delta);
        else
            printf("  %-34s %8s\n", "first divergent tick", "none");
    }
    printf("latency (us)                         count\n");
    print_lat("inference, recorded", &r->lat_rec_inf);
    if (replayed)
        print_lat("inference, replayed", &r->lat_rep_inf);
    print_lat("obs -> action, recorded (daemon)", &r->lat_rec_resp);
    if (replayed)
        print_lat("round trip, replayed (here)", &r->lat_rep_resp);
    if (replayed)
        printf("result: %s\n", result == EXIT_SAME ? "IDENTICAL" : result == EXIT_DIVERGENT ? "DIVERGENT" : "ERROR");
}

/* ---- the daemon ---------------------------------------------------------------------- */

/* vlad beside this program ($VLAD_BIN first) */
static void vlad_path(char *buf, size_t cap) {
    const char *bin = getenv("VLAD_BIN");
    if (bin && bin[0]) {
        snprintf(buf, cap, "%s/vlad", bin);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, cap, "%s/vlad", self);
            return;
        }
    }
    snprintf(buf, cap, "vlad");
}

static pid_t spawn(void) {
    static char bin[PATH_MAX + 8];
    vlad_path(bin, sizeof bin);
    char *argv[8 + 2 * VLAD_SETS_MAX + 10];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--profile";
    argv[n++] = (char *)o.profile;
    argv[n++] = "--log-level";
    argv[n++] = "warn";
    static char *fixed[] = {"clock=lockstep", "record.dir=", "record.file=", "safety.estop_file=none"};
    for (int i = 0; i < 4; i++) {
        argv[n++] = "--set";
        argv[n++] = fixed[i];
    }
    for (int i = 0; i < o.sets.n; i++) {
        argv[n++] = "--set";
        argv[n++] = (char *)o.sets.v[i];
    }
    argv[n] = NULL;
    pid_t pid = vlad_proc_start(argv, o.log);
    if (pid < 0)
        fprintf(stderr, "vlad-replay: cannot start %s\n", bin);
    return pid;
}

/* the daemon answers status (a spawned one: once its model is loaded) */
static int wait_daemon(vlad_client *c, pid_t pid, const char *endpoint) {
    int64_t deadline = vlad_now_ns() + (int64_t)(pid > 0 ? (o.timeout > 30000 ? o.timeout : 30000) : o.timeout) * VLAD_NS_PER_MS;
    vlad_err err;
    while (vlad_now_ns() < deadline) {
        Vlad__Reply *rep = NULL;
        if (!vlad_client_status(c, 200, &rep, &err)) {
            vlad__reply__free_unpacked(rep, NULL);
            return EXIT_SAME;
        }
        if (pid > 0 && vlad_proc_wait(pid, 0) >= 0) {
            fprintf(stderr, "vlad-replay: the spawned vlad exited before answering\n");
            return EXIT_IO;
        }
    }
    fprintf(stderr, "vlad-replay: no daemon answers on %s (start one in lockstep, or --spawn)\n",
            endpoint);
    return EXIT_IO;
}

/* ---- main ------------------------------------------------------------------------------- */

static void free_report(report *r) {
    dvec *all[] = {&r->obs_t, &r->obs_pos, &r->act_t, &r->act_tgt, &r->rep_t, &r->rep_tgt,
                   &r->lat_rec_resp, &r->lat_rep_resp, &r->lat_rec_inf, &r->lat_rep_inf,
                   &r->resp_t, &r->inf_t, &r->rep_resp_t, &r->rep_inf_t};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]->v);
}

int main(int argc, char **argv) {
    const char *pos[4];
    int npos = 0;
    vlad_err err;
    int prc = vlad_opts_parse(k_opts, argc, argv, pos, 4, &npos, &err);
    if (prc == VLAD_ESTATE) {
        usage(stdout);
        return 0;
    }
    if (prc) {
        fprintf(stderr, "vlad-replay: %s\n", err.msg);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (npos != 1) {
        fprintf(stderr, "vlad-replay: expected one recording (FILE.vrec), got %d\n", npos);
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *file = pos[0];
    if (o.dump)
        return dump(file);
    if (!o.profile && !o.plot) {
        fprintf(stderr, "vlad-replay: --profile (to replay) or --plot DIR (to plot) or --dump\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (o.spawn && !o.profile) {
        fprintf(stderr, "vlad-replay: --spawn needs --profile\n");
        return EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    static vlad_profile prof;
    static report r;
    r.first_tick = r.first_robot_tick = -1;
    static replayer rp;
    rp.rep = &r;
    pid_t pid = -1;
    int rc = EXIT_SAME;
    if (o.profile) {
        if (vlad_profile_load(&prof, o.profile, &err)) {
            fprintf(stderr, "vlad-replay: %s\n", err.msg);
            return EXIT_USAGE;
        }
        if (vlad_profile_apply_sets(&prof, &o.sets, &err)) {
            fprintf(stderr, "vlad-replay: %s\n", err.msg);
            return EXIT_USAGE;
        }
        rp.p = &prof;
        r.nj = prof.n_joints;
        /* the recording must be of this robot: check its header first */
        vlad_rec_reader *rd = vlad_rec_reader_open(file, &err);
        Vlad__RecordEntry *e = NULL;
        if (!rd || vlad_rec_reader_next(rd, &e, &err)) {
            fprintf(stderr, "vlad-replay: %s\n", err.msg);
            vlad_rec_reader_free(rd);
            return EXIT_IO;
        }
        vlad_rec_reader_free(rd);
        if (e && e->body_case == VLAD__RECORD_ENTRY__BODY_HEADER &&
            (strcmp(e->header->robot, prof.robot) || (int)e->header->n_joints != prof.n_joints)) {
            fprintf(stderr, "vlad-replay: %s is a recording of robot %s (%zu joints); the profile is "
                            "of %s (%d joints)\n",
                    file, e->header->robot, e->header->n_joints, prof.robot, prof.n_joints);
            vlad__record_entry__free_unpacked(e, NULL);
            return EXIT_USAGE;
        }
        if (e)
            vlad__record_entry__free_unpacked(e, NULL);
        if (o.spawn && (pid = spawn()) < 0)
            return EXIT_IO;
        rp.c = vlad_client_new(&prof, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_CHUNKS | VLAD_CLIENT_PUBLISH |
                                          VLAD_CLIENT_CONTROL, &err);
        if (!rp.c) {
            fprintf(stderr, "vlad-replay: %s\n", err.msg);
            rc = EXIT_IO;
        } else {
            rc = wait_daemon(rp.c, pid, prof.endpoints.control);
            if (!rc && pid > 0 && vlad_proc_wait(pid, 0) >= 0) { /* another daemon answered */
                fprintf(stderr, "vlad-replay: the spawned vlad exited (are the profile's endpoints "
                                "taken by another daemon? --set endpoints.*=...)\n");
                rc = EXIT_IO;
            }
        }
    }
    if (rc == EXIT_SAME)
        rc = pass(file, &rp);
    bool replayed = rp.c != NULL && rc != EXIT_IO;
    if (replayed && (r.divergent || r.compared + r.unanswered < r.steps))
        rc = EXIT_DIVERGENT;
    if (rc != EXIT_IO || r.entries) {
        print_report(file, &r, replayed, rc);
        if (o.json && write_json(o.json, file, &r, replayed, rc) && rc == EXIT_SAME)
            rc = EXIT_IO;
        /* a plot that cannot be drawn (no gnuplot) is reported; after a replay the exit status
         * still says what the diff found */
        if (o.plot && plots(o.plot, &r, o.profile ? &prof : NULL, replayed) && !replayed &&
            rc == EXIT_SAME)
            rc = EXIT_IO;
    }
    vlad_client_free(rp.c);
    if (pid > 0) {
        kill(pid, SIGTERM);
        if (vlad_proc_wait(pid, 10000) < 0)
            vlad_proc_kill(pid);
    }
    free_report(&r);
    return rc;
}
