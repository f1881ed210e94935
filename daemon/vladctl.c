/* vladctl — talk to a running vlad: the operator's tool.
 *   vladctl --profile FILE [--set KEY=VALUE]... [--key FILE] [--timeout MS] [--json] COMMAND
 *   vladctl keygen BASE [--name NAME] [--rights RIGHTS] [--json]
 * COMMAND:
 *   status [--watch [--interval MS] [--count N]]  the daemon's Status; --watch redraws a compact
 *                       live view every interval until SIGINT or N refreshes (a terminal: clear
 *                       and redraw; otherwise one block per refresh, blank line between; --json:
 *                       one JSON object per line per refresh)
 *   estop [REASON] | release | reset | instruction TEXT
 *   ask [QUESTION]      prints the answer's pieces as they arrive on lang.<robot> and exits when
 *                       the stream is done (--json: one object with the whole answer and the
 *                       frame it was conditioned on); --timeout is then also the longest wait
 *                       between two pieces
 *   metrics [--prefix P] [--output FILE]  Prometheus text exposition 0.0.4 (vladctl_metrics.h);
 *                       --output writes FILE.tmp.<pid> and renames it over FILE (atomic, for
 *                       node-exporter's textfile collector)
 * Options may come anywhere ("--" ends them). --json prints every reply, and every error, as
 * JSON on stdout ({"ok":false,"error":"..."}); errors also go to stderr.
 * Exit status:
 *   0  ok
 *   1  the daemon refused (reply.ok false) or ended the stream with an error
 *   2  usage: bad options, a profile, key or --output file that cannot be used
 *   3  no reply: the daemon is not there (or the stream stopped coming); metrics still prints
 *      <prefix>_up 0; status --watch --count N: the last refresh got no reply */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "client.h"
#include "clock.h"
#include "keys.h"
#include "opts.h"
#include "profile.h"
#include "vladctl_metrics.h"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_NOREPLY = 3 };

static int g_json; /* --json: results and errors as JSON on stdout */

/* Report an error: "vladctl: MSG" on stderr and, with --json, {"ok":false,"error":MSG} on
 * stdout. Returns code (the exit status). */
static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
    char msg[VLAD_ERR_MSG_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "vladctl: %s\n", msg);
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", 0);
        cJSON_AddStringToObject(o, "error", msg);
        cJSON_AddNumberToObject(o, "exit_code", code);
        char *txt = cJSON_PrintUnformatted(o);
        printf("%s\n", txt);
        fflush(stdout);
        free(txt);
        cJSON_Delete(o);
    }
    return code;
}

/* the message of a command that got no reply */
static int no_reply(const vlad_err *err) {
    if (err->code == VLAD_ETIMEOUT)
        return fail(EXIT_NOREPLY, "%s (is vlad running with this profile?)", err->msg);
    return fail(EXIT_NOREPLY, "%s", err->msg);
}

/* Whether the e-stop is latched, and its reason. Status has only the mode, and the mode says
 * "waiting" while no robot reports even when e-stopped; the latch file (Status.estop_file),
 * which exists exactly while the e-stop is latched, tells the rest when this host can read it
 * (the daemon writes "e-stop latched at T (unix s): REASON"). reason: "" when unknown. */
static bool estop_latched(const Vlad__Status *s, char *reason, size_t cap) {
    reason[0] = '\0';
    bool latched = s->mode == VLAD__MODE__MODE_ESTOP;
    if (!s->estop_file || !s->estop_file[0])
        return latched;
    FILE *f = fopen(s->estop_file, "r");
    if (!f)
        return latched;
    char line[1024];
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        const char *r = strstr(line, "): ");
        r = r ? r + 3 : line;
        size_t n = strlen(r) < cap - 1 ? strlen(r) : cap - 1;
        memcpy(reason, r, n);
        reason[n] = '\0';
    }
    fclose(f);
    return true;
}

static const char *mode_name(Vlad__Mode m) {
    switch (m) {
    case VLAD__MODE__MODE_WAITING: return "waiting";
    case VLAD__MODE__MODE_RUNNING: return "running";
    case VLAD__MODE__MODE_STALE: return "stale";
    case VLAD__MODE__MODE_ESTOP: return "estop";
    default: return "unknown";
    }
}

/* Any protobuf message as JSON, from its descriptor: every field, so a new Status field is
 * printed without a change here. */
static cJSON *msg_json(const ProtobufCMessage *m) {
    cJSON *o = cJSON_CreateObject();
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            continue;
        const char *at = (const char *)m + f->offset;
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
            cJSON_AddNumberToObject(o, f->name, *(const int32_t *)at); break;
        case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
            cJSON_AddNumberToObject(o, f->name, *(const uint32_t *)at); break;
        case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
            cJSON_AddNumberToObject(o, f->name, (double)*(const int64_t *)at); break;
        case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
            cJSON_AddNumberToObject(o, f->name, (double)*(const uint64_t *)at); break;
        case PROTOBUF_C_TYPE_FLOAT: cJSON_AddNumberToObject(o, f->name, *(const float *)at); break;
        case PROTOBUF_C_TYPE_DOUBLE: cJSON_AddNumberToObject(o, f->name, *(const double *)at); break;
        case PROTOBUF_C_TYPE_BOOL: cJSON_AddBoolToObject(o, f->name, *(const protobuf_c_boolean *)at); break;
        case PROTOBUF_C_TYPE_ENUM: {
            const ProtobufCEnumValue *v =
                protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)at);
            if (v)
                cJSON_AddStringToObject(o, f->name, v->name);
            else
                cJSON_AddNumberToObject(o, f->name, *(const int *)at);
            break;
        }
        case PROTOBUF_C_TYPE_STRING: {
            const char *str = *(char *const *)at;
            cJSON_AddStringToObject(o, f->name, str ? str : "");
            break;
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
            const ProtobufCMessage *sub = *(ProtobufCMessage *const *)at;
            if (sub)
                cJSON_AddItemToObject(o, f->name, msg_json(sub));
            break;
        }
        default:
            break;
        }
    }
    return o;
}

static void print_json(const Vlad__Reply *r) {
    cJSON *o = msg_json(&r->base);
    char *txt = cJSON_Print(o);
    printf("%s\n", txt);
    free(txt);
    cJSON_Delete(o);
}

/* The remote policy's line (nothing when the policy is local). */
static void print_remote(const Vlad__Status *s) {
    if (!s->remote_endpoints || !s->remote_endpoints[0])
        return;
    printf("remote %s: %s  %llu sent, %llu replies, %llu timeouts, %llu stale dropped, %llu "
           "reconnects, %llu refused, %llu errors, %llu fallbacks\n",
           s->remote_endpoints, s->remote_up ? "up" : "DOWN",
           (unsigned long long)s->remote_requests, (unsigned long long)s->remote_replies,
           (unsigned long long)s->remote_timeouts, (unsigned long long)s->remote_dropped_stale,
           (unsigned long long)s->remote_reconnects, (unsigned long long)s->remote_refusals,
           (unsigned long long)s->remote_errors, (unsigned long long)s->remote_fallbacks);
    if (s->remote_request_bytes)
        printf("remote requests: %llu bytes each (mean), JPEG encoding %.0f us\n",
               (unsigned long long)s->remote_request_bytes, s->remote_encode_us);
    if (s->remote_last_error && s->remote_last_error[0])
        printf("remote last error: %s\n", s->remote_last_error);
}

/* "NAME us: p50 X  p99 Y  max Z  (NOTE)" */
static void print_lat_us(const char *name, const Vlad__LatencyStats *l, const char *note) {
    printf("%s us: p50 %.0f  p99 %.0f  max %.0f  (%s)\n", name, l->p50_us, l->p99_us, l->max_us,
           note);
}

static void print_text(const Vlad__Reply *r) {
    if (!r->ok)
        printf("refused: %s\n", r->error);
    const Vlad__Status *s = r->status;
    if (!s)
        return;
    printf("robot %s  mode %s  tick %lld  uptime %.1f s  %.0f Hz  async %s\n", s->robot,
           mode_name(s->mode), (long long)s->tick, s->uptime_s, s->control_hz, s->async_mode);
    printf("actions %llu  observations %llu  bad %llu (obs %llu, cmd %llu)  stalls %llu  "
           "watchdog trips %llu  clamped %llu  overruns %llu\n",
           (unsigned long long)s->actions_published, (unsigned long long)s->observations_received,
           (unsigned long long)s->bad_messages, (unsigned long long)s->bad_observations,
           (unsigned long long)s->bad_commands, (unsigned long long)s->stall_ticks,
           (unsigned long long)s->watchdog_trips, (unsigned long long)s->clamped_actions,
           (unsigned long long)s->overruns);
    printf("episode %llu (%lld ticks, %llu stalls, %llu chunks)  chunks %llu installed, %llu "
           "clamped, %llu refused  inference errors %llu  delay %d ticks (limit %d, %llu ticks over)\n",
           (unsigned long long)s->episode, (long long)s->episode_ticks,
           (unsigned long long)s->episode_stall_ticks, (unsigned long long)s->episode_chunks,
           (unsigned long long)s->chunks_installed, (unsigned long long)s->chunks_clamped,
           (unsigned long long)s->chunks_refused, (unsigned long long)s->inference_errors,
           s->delay_ticks, s->max_delay_ticks, (unsigned long long)s->delay_limited_ticks);
    printf("phase %s (error %+lld us)  early starts %llu\n", s->phase_locked ? "locked" : "free",
               (long long)s->phase_error_us, (unsigned long long)s->early_starts);
    printf("observations dropped: %llu out of limits, %llu absurd  robot restarts %llu  e-stop latch %s\n",
           (unsigned long long)s->obs_out_of_limits, (unsigned long long)s->obs_absurd,
           (unsigned long long)s->robot_restarts, s->estop_file[0] ? s->estop_file : "(not persisted)");
    printf("security: %s  handshakes refused %llu  commands denied %llu  subscriptions refused %llu  "
           "oversized frames %llu\n",
           s->curve ? "CURVE" : "none (loopback only)", (unsigned long long)s->handshakes_refused,
           (unsigned long long)s->commands_denied, (unsigned long long)s->subscriptions_refused,
           (unsigned long long)s->oversized_frames);
    printf("language: %u/%u streams  prefix blocks %u/%u in use  %llu prefills for %llu frames  "
           "%llu tokens (%.0f tok/s)  %llu asked, %llu refused, %llu done  %llu slices preempted\n",
           s->lang_streams_active, s->lang_max_streams, s->prefix_blocks_in_use, s->prefix_blocks,
           (unsigned long long)s->prefills, (unsigned long long)s->frames,
           (unsigned long long)s->lang_tokens, s->lang_tokens_per_s,
           (unsigned long long)s->lang_requests, (unsigned long long)s->lang_refused,
           (unsigned long long)s->lang_streams_done, (unsigned long long)s->lang_slices_preempted);
    printf("connections: %u open  %llu refused  %llu disconnects\n", s->connections,
           (unsigned long long)s->connections_refused, (unsigned long long)s->disconnects);
    print_remote(s);
    if (s->jitter) {
        char n[32];
        snprintf(n, sizeof n, "n=%llu", (unsigned long long)s->jitter->count);
        print_lat_us("jitter", s->jitter, n);
    }
    if (s->wake && s->wake->count)
        print_lat_us("wake", s->wake, "the control thread's start of a tick after its deadline");
    if (s->instruction && s->instruction[0])
        printf("instruction: %s\n", s->instruction);
    char reason[600];
    if (estop_latched(s, reason, sizeof reason))
        printf("e-stop latched%s%s\n", reason[0] ? ": " : "", reason);
}


/* ---- options ------------------------------------------------------------------------ */


static struct {
    const char *profile, *key, *prefix, *output, *name, *rights;
    vlad_sets sets;
    int timeout, json, watch, interval, count;
} g_opt = {.prefix = "vlad", .rights = "observe", .timeout = 2000, .interval = 1000};

static const vlad_opt k_opts[] = {
    {"profile", VLAD_OPT_STR, &g_opt.profile, "FILE", "the robot profile the daemon runs (endpoints, keys)", 0, 0, NULL},
    {"set", VLAD_OPT_CALL, &g_opt.sets, "KEY=VALUE", "override a profile key, as vlad --set (repeatable)", 0, 0, vlad_sets_add},
    {"key", VLAD_OPT_STR, &g_opt.key, "FILE", "CURVE client secret key (else $VLAD_CLIENT_KEY, security.client_key_file)", 0, 0, NULL},
    {"timeout", VLAD_OPT_INT, &g_opt.timeout, "MS", "wait this long for a reply (ask: for each piece)", 1, 3600000, NULL},
    {"json", VLAD_OPT_FLAG, &g_opt.json, NULL, "replies and errors as JSON on stdout (--watch: one object per line)", 0, 0, NULL},
    {"watch", VLAD_OPT_FLAG, &g_opt.watch, NULL, "status: redraw a live view every --interval until SIGINT", 0, 0, NULL},
    {"interval", VLAD_OPT_INT, &g_opt.interval, "MS", "status --watch: time between refreshes", 50, 3600000, NULL},
    {"count", VLAD_OPT_INT, &g_opt.count, "N", "status --watch: stop after N refreshes (0: until SIGINT)", 0, 1000000000, NULL},
    {"prefix", VLAD_OPT_STR, &g_opt.prefix, "P", "metrics: metric name prefix", 0, 0, NULL},
    {"output", VLAD_OPT_STR, &g_opt.output, "FILE", "metrics: write FILE atomically (temporary file, rename)", 0, 0, NULL},
    {"name", VLAD_OPT_STR, &g_opt.name, "NAME", "keygen: the key's name (default: BASE's file name)", 0, 0, NULL},
    {"rights", VLAD_OPT_STR, &g_opt.rights, "RIGHTS", "keygen: observe,publish,command,infer (any of them) or all", 0, 0, NULL},
    {0},
};

/* An e-stop or a release takes effect on the daemon's next tick, after the reply was made: poll
 * the status (every 20 ms, up to --timeout, at most 1 s) until the e-stop is latched (want) or
 * not, and show that status instead of the reply's. A lockstep daemon with no robot ticking
 * does not get there: the reply is shown with a line that says so. */
static void settle(vlad_client *c, bool want, Vlad__Reply **r) {
    char reason[8];
    int64_t end = vlad_now_ns() + (int64_t)(g_opt.timeout < 1000 ? g_opt.timeout : 1000) * VLAD_NS_PER_MS;
    for (;;) {
        const Vlad__Status *st = (*r)->status;
        if (!st)
            return;
        bool latched = estop_latched(st, reason, sizeof reason);
        /* in effect: the control thread's mode says so (waiting: no robot, then the latch) */
        bool in_effect = want ? st->mode == VLAD__MODE__MODE_ESTOP ||
                                    (st->mode == VLAD__MODE__MODE_WAITING && latched)
                              : !latched && st->mode != VLAD__MODE__MODE_ESTOP;
        if (in_effect)
            return;
        if (vlad_now_ns() >= end) {
            if (!g_json)
                printf("(%s accepted; it takes effect on the daemon's next tick)\n",
                       want ? "e-stop" : "release");
            return;
        }
        vlad_sleep_until_ns(vlad_now_ns() + 20 * VLAD_NS_PER_MS);
        Vlad__Reply *s = NULL;
        vlad_err err;
        if (vlad_client_status(c, g_opt.timeout, &s, &err) || !s->ok) {
            if (s)
                vlad__reply__free_unpacked(s, NULL);
            return;
        }
        vlad__reply__free_unpacked(*r, NULL);
        *r = s;
    }
}

static void usage_to(FILE *f) {
    vlad_opts_usage(f,
        "vladctl --profile FILE [options] COMMAND\n"
        "       vladctl keygen BASE [--name NAME] [--rights RIGHTS] [--json]\n"
        "commands:\n"
        "  status [--watch [--interval MS] [--count N]]  mode, tick, counters, latency; --watch: a live\n"
        "                      view until SIGINT (which ends it once the request in flight is answered\n"
        "                      or times out) or N refreshes; not a terminal: one block per refresh\n"
        "  estop [REASON]      latch the e-stop: hold the last target, refuse motion (persists)\n"
        "  release             release the e-stops received before it\n"
        "  reset               clear the queue and the episode counters\n"
        "  instruction TEXT    set the task instruction\n"
        "  ask [QUESTION]      ask a question (empty: the running commentary); prints the answer\n"
        "  metrics [--prefix P] [--output FILE]  Prometheus text exposition 0.0.4; for node-exporter's\n"
        "                      textfile collector, from cron or a timer:\n"
        "                        vladctl --profile F metrics --output /var/lib/node_exporter/textfile/vlad.prom\n"
        "                      (or: vladctl ... metrics > f.prom.$$ && mv f.prom.$$ .../vlad.prom)\n"
        "  keygen BASE         write BASE.key (public: give it to the daemon's security.client_keys_dir,\n"
        "                      or vlad-serve's --keys-dir with --rights infer) and BASE.key_secret\n"
        "                      (mode 0600: keep it; --key, $VLAD_CLIENT_KEY, policy.remote.client_key)\n"
        "exit status: 0 ok, 1 refused by the daemon, 2 usage, 3 no reply (daemon not there;\n"
        "  metrics then still prints <prefix>_up 0)\n"
        "options (anywhere; \"--\" ends them):",
        k_opts);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    char msg[VLAD_ERR_MSG_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail(EXIT_USAGE, "%s", msg);
    fprintf(stderr, "(vladctl --help for the commands and options)\n");
    return EXIT_USAGE;
}

/* ---- keygen ------------------------------------------------------------------------- */

static int keygen(const char *base) {
    const char *name = g_opt.name;
    unsigned rights;
    vlad_err err;
    if (vlad_rights_parse(g_opt.rights, &rights, &err))
        return usage_error("--rights %s: %s", g_opt.rights, err.msg);
    if (!name) {
        const char *b = strrchr(base, '/');
        name = b ? b + 1 : base;
    }
    if (vlad_cert_generate(base, name, rights, &err))
        return fail(EXIT_REFUSED, "keygen %s: %s", base, err.msg);
    vlad_cert c;
    char pub[VLAD_PATH_MAX + 16], sec[VLAD_PATH_MAX + 16];
    snprintf(pub, sizeof pub, "%s.key", base);
    snprintf(sec, sizeof sec, "%s.key_secret", base);
    if (vlad_cert_read(sec, true, &c, &err))
        return fail(EXIT_REFUSED, "keygen %s: %s", base, err.msg);
    if (g_json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", 1);
        cJSON_AddStringToObject(j, "public_file", pub);
        cJSON_AddStringToObject(j, "secret_file", sec);
        cJSON_AddStringToObject(j, "public_key", c.public_key);
        cJSON_AddStringToObject(j, "name", name);
        cJSON_AddStringToObject(j, "rights", g_opt.rights);
        char *txt = cJSON_Print(j);
        printf("%s\n", txt);
        free(txt);
        cJSON_Delete(j);
    } else {
        printf("%s and %s written; public key %s (rights %s)\n", pub, sec, c.public_key, g_opt.rights);
    }
    return EXIT_OK;
}

/* ---- status --watch ----------------------------------------------------------------- */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* sleep until the CLOCK_MONOTONIC time t_ns, or a signal */
static void sleep_until(int64_t t_ns) {
    while (!g_stop) {
        int64_t left = t_ns - vlad_now_ns();
        if (left <= 0)
            return;
        struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
        nanosleep(&ts, NULL); /* EINTR: the loop looks at g_stop */
    }
}

static void fmt_us(double us, char *buf, size_t cap) {
    if (us < 1000)
        snprintf(buf, cap, "%.0f us", us);
    else if (us < 1e6)
        snprintf(buf, cap, "%.1f ms", us / 1e3);
    else
        snprintf(buf, cap, "%.2f s", us / 1e6);
}

static void fmt_lat(const Vlad__LatencyStats *l, char *buf, size_t cap) {
    if (!l || !l->count) {
        snprintf(buf, cap, "-  (no samples)");
        return;
    }
    char a[32], b[32], c[32];
    fmt_us(l->p50_us, a, sizeof a);
    fmt_us(l->p99_us, b, sizeof b);
    fmt_us(l->max_us, c, sizeof c);
    snprintf(buf, cap, "p50 %s  p99 %s  max %s  (n=%llu)", a, b, c, (unsigned long long)l->count);
}

typedef struct {
    int have;             /* a previous reply to compute rates from */
    double uptime_s;
    int64_t tick;
    uint64_t actions;
    double ticks_per_s, actions_per_s; /* < 0: not known yet */
    int64_t last_ok_ns;   /* when the last reply came (0: none yet) */
    int64_t last_tick;
    Vlad__Mode last_mode;
} watch_state;

static void watch_rates(watch_state *w, const Vlad__Status *s) {
    w->ticks_per_s = w->actions_per_s = -1;
    double dt = s->uptime_s - w->uptime_s;
    /* a daemon that restarted (uptime went back) starts the rates again */
    if (w->have && dt > 0 && s->tick >= w->tick && s->actions_published >= w->actions) {
        w->ticks_per_s = (double)(s->tick - w->tick) / dt;
        w->actions_per_s = (double)(s->actions_published - w->actions) / dt;
    }
    w->have = 1;
    w->uptime_s = s->uptime_s;
    w->tick = s->tick;
    w->actions = s->actions_published;
}

static void view_header(const vlad_profile *p, int refresh) {
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%H:%M:%S", localtime_r(&now, &tm));
    printf("vlad %s @ %s   %s   refresh %d\n", p->robot, p->endpoints.control, ts, refresh);
}

static void view_status(const vlad_profile *p, const Vlad__Reply *r, const watch_state *w,
                        int refresh) {
    const Vlad__Status *s = r->status;
    view_header(p, refresh);
    if (!r->ok)
        printf("refused: %s\n", r->error);
    if (!s)
        return;
    char rate[96] = "", a[160], reason[600];
    if (w->ticks_per_s >= 0)
        snprintf(rate, sizeof rate, "  %.1f ticks/s  %.1f actions/s", w->ticks_per_s,
                 w->actions_per_s);
    else
        snprintf(rate, sizeof rate, "  (rates from the next refresh)");
    printf("mode %-8s clock %s (profile)  async %s  %.0f Hz  uptime %.1f s\n", mode_name(s->mode),
           vlad_clock_mode_name(p->clock), s->async_mode, s->control_hz, s->uptime_s);
    printf("tick %lld%s  episode %llu (%lld ticks)\n", (long long)s->tick, rate,
           (unsigned long long)s->episode, (long long)s->episode_ticks);
    printf("delay %d ticks (limit %d, %llu ticks over)  chunks %llu installed, %llu refused  "
           "inference errors %llu\n",
           s->delay_ticks, s->max_delay_ticks, (unsigned long long)s->delay_limited_ticks,
           (unsigned long long)s->chunks_installed, (unsigned long long)s->chunks_refused,
           (unsigned long long)s->inference_errors);
    fmt_lat(s->inference, a, sizeof a);
    printf("inference %s\n", a);
    fmt_lat(s->jitter, a, sizeof a);
    printf("jitter    %s\n", a);
    if (s->wake && s->wake->count) {
        fmt_lat(s->wake, a, sizeof a);
        printf("wake      %s\n", a);
    }
    printf("stalls %llu ticks (%llu this episode)  overruns %llu\n",
           (unsigned long long)s->stall_ticks, (unsigned long long)s->episode_stall_ticks,
           (unsigned long long)s->overruns);
    printf("safety: clamped %llu actions, %llu chunks  holds: %llu watchdog trips  rejected: %llu "
           "obs out of limits, %llu absurd, %llu bad messages, %llu commands denied\n",
           (unsigned long long)s->clamped_actions, (unsigned long long)s->chunks_clamped,
           (unsigned long long)s->watchdog_trips, (unsigned long long)s->obs_out_of_limits,
           (unsigned long long)s->obs_absurd, (unsigned long long)s->bad_messages,
           (unsigned long long)s->commands_denied);
    if (estop_latched(s, reason, sizeof reason)) {
        printf("e-stop LATCHED: %s\n", reason[0] ? reason
                                   : s->estop_file[0] ? "(reason in the daemon's latch file)"
                                                      : "(not persisted; reason in the daemon's log)");
    } else {
        printf("e-stop off\n");
    }
    printf("language %u/%u streams  %.0f tok/s  %llu tokens  %llu asked, %llu refused\n",
           s->lang_streams_active, s->lang_max_streams, s->lang_tokens_per_s,
           (unsigned long long)s->lang_tokens, (unsigned long long)s->lang_requests,
           (unsigned long long)s->lang_refused);
    printf("connections %u open  %llu refused  %llu disconnects\n", s->connections,
           (unsigned long long)s->connections_refused, (unsigned long long)s->disconnects);
    print_remote(s);
}

static void view_down(const vlad_profile *p, const watch_state *w, int refresh, int64_t since_ns,
                      const vlad_err *err) {
    double for_s = (double)(vlad_now_ns() - since_ns) / 1e9;
    view_header(p, refresh);
    if (err->code == VLAD_ETIMEOUT)
        printf("no reply from %s for %.1f s; retrying every %d ms (each waits %d ms)\n",
               p->endpoints.control, for_s, g_opt.interval, g_opt.timeout);
    else
        printf("no reply from %s for %.1f s (%s); retrying every %d ms\n", p->endpoints.control,
               for_s, err->msg, g_opt.interval);
    if (w->last_ok_ns)
        printf("last reply: mode %s, tick %lld\n", mode_name(w->last_mode), (long long)w->last_tick);
    else
        printf("no reply yet: is vlad running with this profile?\n");
}

static void watch_json(const Vlad__Reply *r, const watch_state *w, int refresh, double no_reply_s,
                       const vlad_err *err) {
    cJSON *j = r ? msg_json(&r->base) : cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "refresh", refresh);
    if (r) {
        if (w->ticks_per_s >= 0) {
            cJSON_AddNumberToObject(j, "ticks_per_s", w->ticks_per_s);
            cJSON_AddNumberToObject(j, "actions_per_s", w->actions_per_s);
        } else {
            cJSON_AddNullToObject(j, "ticks_per_s");
            cJSON_AddNullToObject(j, "actions_per_s");
        }
        char reason[600];
        if (r->status) {
            bool latched = estop_latched(r->status, reason, sizeof reason);
            cJSON_AddBoolToObject(j, "estop_latched", latched);
            if (latched)
                cJSON_AddStringToObject(j, "estop_reason", reason);
        }
    } else {
        cJSON_AddBoolToObject(j, "ok", 0);
        char msg[VLAD_ERR_MSG_MAX + 64];
        snprintf(msg, sizeof msg, "%s%s", err->msg,
                 err->code == VLAD_ETIMEOUT ? " (is vlad running with this profile?)" : "");
        cJSON_AddStringToObject(j, "error", msg);
        cJSON_AddNumberToObject(j, "no_reply_s", no_reply_s);
    }
    char *txt = cJSON_PrintUnformatted(j);
    printf("%s\n", txt);
    free(txt);
    cJSON_Delete(j);
}

static int watch(vlad_client *c, const vlad_profile *p) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a sleep ends at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int tty = isatty(STDOUT_FILENO) && !g_json;
    watch_state w = {0};
    w.ticks_per_s = w.actions_per_s = -1;
    int64_t start = vlad_now_ns(), next = start;
    int rc = EXIT_OK;
    for (int refresh = 1; !g_stop && (!g_opt.count || refresh <= g_opt.count); refresh++) {
        Vlad__Reply *r = NULL;
        vlad_err err;
        int got = vlad_client_status(c, g_opt.timeout, &r, &err);
        if (g_stop && got) /* interrupted while waiting */
            break;
        if (tty)
            printf("\033[H\033[2J");
        else if (refresh > 1 && !g_json)
            printf("\n");
        if (!got) {
            if (r->status) {
                watch_rates(&w, r->status);
                w.last_tick = r->status->tick;
                w.last_mode = r->status->mode;
            }
            w.last_ok_ns = vlad_now_ns();
            if (g_json)
                watch_json(r, &w, refresh, 0, NULL);
            else
                view_status(p, r, &w, refresh);
            rc = r->ok ? EXIT_OK : EXIT_REFUSED;
            vlad__reply__free_unpacked(r, NULL);
        } else {
            int64_t since = w.last_ok_ns ? w.last_ok_ns : start;
            if (g_json)
                watch_json(NULL, &w, refresh, (double)(vlad_now_ns() - since) / 1e9, &err);
            else
                view_down(p, &w, refresh, since, &err);
            rc = EXIT_NOREPLY;
        }
        fflush(stdout);
        if (g_opt.count && refresh == g_opt.count)
            break;
        next += (int64_t)g_opt.interval * VLAD_NS_PER_MS;
        if (next < vlad_now_ns()) /* the request took longer than the interval: go on now */
            next = vlad_now_ns();
        sleep_until(next);
    }
    /* SIGINT ends a watch without --count as asked: exit 0 */
    return g_opt.count ? rc : (rc == EXIT_NOREPLY ? EXIT_OK : rc);
}

/* ---- metrics ------------------------------------------------------------------------ */

static int metrics(vlad_client *c, const vlad_profile *p) {
    Vlad__Reply *r = NULL;
    vlad_err err, cerr;
    int got = vlad_client_status(c, g_opt.timeout, &r, &cerr);
    const Vlad__Status *s = !got ? r->status : NULL;
    FILE *out = stdout;
    char tmp[VLAD_PATH_MAX + 32];
    if (g_opt.output) {
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", g_opt.output, (long)getpid());
        out = fopen(tmp, "w");
        if (!out) {
            if (r)
                vlad__reply__free_unpacked(r, NULL);
            return fail(EXIT_USAGE, "metrics --output %s: cannot create %s: %s", g_opt.output, tmp,
                        strerror(errno));
        }
    }
    int samples = 0;
    int wrc = vladctl_metrics_write(out, g_opt.prefix, p->robot, vlad_clock_mode_name(p->clock), s,
                                    &samples, &err);
    int ok_reply = s ? r->ok : 0;
    if (r)
        vlad__reply__free_unpacked(r, NULL);
    if (g_opt.output) {
        bool good = !wrc && fsync(fileno(out)) == 0;
        if (fclose(out))
            good = false;
        if (!good || rename(tmp, g_opt.output)) {
            int e = errno;
            unlink(tmp);
            if (wrc)
                return fail(EXIT_USAGE, "metrics --output %s: %s", g_opt.output, err.msg);
            return fail(EXIT_USAGE, "metrics --output %s: %s", g_opt.output, strerror(e));
        }
    } else if (wrc) {
        return fail(EXIT_USAGE, "%s", err.msg);
    }
    if (got)
        return no_reply(&cerr);
    if (g_json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", 1);
        cJSON_AddStringToObject(j, "output", g_opt.output);
        cJSON_AddNumberToObject(j, "samples", samples);
        char *txt = cJSON_PrintUnformatted(j);
        printf("%s\n", txt);
        free(txt);
        cJSON_Delete(j);
    }
    return ok_reply ? EXIT_OK : EXIT_REFUSED;
}


/* ---- ask ---------------------------------------------------------------------------- */

/* Wait until the subscription to lang.<robot> is live: subscribe to the actions after it and
 * take the first one (subscriptions travel in order, so lang's arrived before it), then drop
 * the actions again. A daemon that publishes none (no robot yet) gets 300 ms. */
static void await_subscription(vlad_client *c, const vlad_profile *p) {
    char topic[VLAD_NAME_MAX + 16];
    snprintf(topic, sizeof topic, "action.%s ", p->robot); /* the client's filters end in ' ' */
    void *sub = vlad_client_sub_socket(c);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, strlen(topic));
    vlad_msg m;
    vlad_err err;
    while (vlad_client_recv(c, 300, &m, &err) == VLAD_OK) {
        bool action = m.kind == VLAD_MSG_ACTION;
        vlad_msg_clear(&m);
        if (action)
            break;
    }
    zmq_setsockopt(sub, ZMQ_UNSUBSCRIBE, topic, strlen(topic));
}

/* vladctl ask: the reply names the stream; print its pieces until the last. */
static int ask_stream(vlad_client *c, const vlad_profile *p, Vlad__Command *cmd) {
    vlad_err err;
    int timeout = g_opt.timeout, json = g_json;
    await_subscription(c, p);
    Vlad__Reply *r;
    if (vlad_client_command(c, cmd, timeout, &r, &err))
        return no_reply(&err);
    if (!r->ok) {
        if (json)
            print_json(r);
        else
            printf("refused: %s\n", r->error);
        vlad__reply__free_unpacked(r, NULL);
        return EXIT_REFUSED;
    }
    uint32_t id = r->stream_id;
    uint64_t request_id = r->request_id;
    vlad__reply__free_unpacked(r, NULL);
    char answer[4096];
    size_t len = 0;
    int rc = EXIT_NOREPLY, pieces = 0;
    char why[VLAD_ERR_MSG_MAX] = "";
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "ok", 1); /* the ask was accepted; "done" and "error" tell the rest */
    cJSON_AddNumberToObject(j, "request_id", (double)request_id);
    cJSON_AddNumberToObject(j, "stream_id", id);
    cJSON_AddStringToObject(j, "question", cmd->ask->question ? cmd->ask->question : "");
    if (!json) {
        printf("stream %u: ", id);
        fflush(stdout);
    }
    for (;;) {
        vlad_msg m;
        if (vlad_client_recv(c, timeout, &m, &err) != VLAD_OK) {
            snprintf(why, sizeof why, "stream %u: no piece for %d ms", id, timeout);
            fprintf(stderr, "%svladctl: %s\n", json ? "" : "\n", why);
            break;
        }
        if (m.kind != VLAD_MSG_LANG || m.u.lang->stream_id != id) {
            vlad_msg_clear(&m);
            continue;
        }
        const Vlad__LanguageToken *t = m.u.lang;
        if (pieces++ == 0) {
            cJSON_AddNumberToObject(j, "frame", (double)t->frame);
            cJSON_AddNumberToObject(j, "obs_tick", (double)t->obs_tick);
            cJSON_AddNumberToObject(j, "obs_robot_tick", (double)t->obs_robot_tick);
            cJSON_AddNumberToObject(j, "first_tick", (double)t->tick);
        }
        size_t n = t->text.len < sizeof answer - 1 - len ? t->text.len : sizeof answer - 1 - len;
        if (n)
            memcpy(answer + len, t->text.data, n);
        len += n;
        if (!json && t->text.len) {
            fwrite(t->text.data, 1, t->text.len, stdout);
            fflush(stdout);
        }
        bool done = t->done;
        if (done) {
            cJSON_AddNumberToObject(j, "last_tick", (double)t->tick);
            rc = t->error && t->error[0] ? EXIT_REFUSED : EXIT_OK;
            if (rc) {
                snprintf(why, sizeof why, "stream %u ended: %s", id, t->error);
                fprintf(stderr, "%svladctl: %s\n", json ? "" : "\n", why);
            }
        }
        vlad_msg_clear(&m);
        if (done)
            break;
    }
    answer[len] = '\0';
    if (json) {
        cJSON_AddStringToObject(j, "answer", answer);
        cJSON_AddNumberToObject(j, "pieces", pieces);
        cJSON_AddBoolToObject(j, "done", rc != EXIT_NOREPLY);
        if (why[0])
            cJSON_AddStringToObject(j, "error", why);
        char *txt = cJSON_Print(j);
        printf("%s\n", txt);
        free(txt);
    } else if (rc != EXIT_NOREPLY) {
        printf("\n");
    }
    cJSON_Delete(j);
    return rc;
}

/* ---- main --------------------------------------------------------------------------- */

/* positional words from `from` joined by spaces (instruction, estop reason, question) */
static void join_words(const char **pos, int from, int n, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int k = from; k < n && len < cap; k++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", k > from ? " " : "", pos[k]);
}

int main(int argc, char **argv) {
    for (int k = 1; k < argc && strcmp(argv[k], "--"); k++) /* errors of the parse as JSON too */
        if (!strcmp(argv[k], "--json"))
            g_json = 1;
    const char *pos[64];
    int npos = 0;
    vlad_err err;
    int prc = vlad_opts_parse(k_opts, argc, argv, pos, 64, &npos, &err);
    if (prc == VLAD_ESTATE && !err.msg[0]) {
        usage_to(stdout);
        return EXIT_OK;
    }
    if (prc)
        return usage_error("%s", err.msg);
    g_json = g_opt.json;
    if (!npos)
        return usage_error("no command (status, estop, release, reset, instruction, ask, metrics, "
                           "keygen)");
    const char *verb = pos[0];
    static char text[8192];
    join_words(pos, 1, npos, text, sizeof text);
    bool is_status = !strcmp(verb, "status"), is_metrics = !strcmp(verb, "metrics");
    if ((g_opt.watch || g_opt.count || g_opt.interval != 1000) && !is_status)
        return usage_error("--watch, --interval and --count are for status");
    if (!g_opt.watch && (g_opt.count || g_opt.interval != 1000))
        return usage_error("--interval and --count need --watch");
    if ((g_opt.output || strcmp(g_opt.prefix, "vlad")) && !is_metrics)
        return usage_error("--prefix and --output are for metrics");
    if (is_metrics && !vladctl_metric_name_ok(g_opt.prefix))
        return usage_error("--prefix %s: not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", g_opt.prefix);
    if (is_metrics && g_json && !g_opt.output)
        return usage_error("metrics prints Prometheus text on stdout; --json needs --output FILE "
                           "(or use status --json)");
    if ((g_opt.name || strcmp(g_opt.rights, "observe")) && strcmp(verb, "keygen"))
        return usage_error("--name and --rights are for keygen");
    if (!strcmp(verb, "keygen")) {
        if (npos != 2)
            return usage_error("keygen needs one BASE path (writes BASE.key and BASE.key_secret)");
        return keygen(pos[1]);
    }
    int max_words = 1;
    Vlad__Command cmd = VLAD__COMMAND__INIT;
    Vlad__StatusRequest st = VLAD__STATUS_REQUEST__INIT;
    Vlad__EStop es = VLAD__ESTOP__INIT;
    Vlad__ReleaseEStop rel = VLAD__RELEASE_ESTOP__INIT;
    Vlad__Reset rs = VLAD__RESET__INIT;
    Vlad__SetInstruction si = VLAD__SET_INSTRUCTION__INIT;
    Vlad__Ask ask = VLAD__ASK__INIT;
    if (is_status || is_metrics) {
        cmd.body_case = VLAD__COMMAND__BODY_STATUS;
        cmd.status = &st;
    } else if (!strcmp(verb, "estop")) {
        es.reason = text[0] ? text : "vladctl";
        cmd.body_case = VLAD__COMMAND__BODY_ESTOP;
        cmd.estop = &es;
        max_words = npos;
    } else if (!strcmp(verb, "release")) {
        cmd.body_case = VLAD__COMMAND__BODY_RELEASE_ESTOP;
        cmd.release_estop = &rel;
    } else if (!strcmp(verb, "reset")) {
        cmd.body_case = VLAD__COMMAND__BODY_RESET;
        cmd.reset = &rs;
    } else if (!strcmp(verb, "instruction")) {
        if (npos < 2)
            return usage_error("instruction needs the TEXT");
        si.text = text;
        cmd.body_case = VLAD__COMMAND__BODY_SET_INSTRUCTION;
        cmd.set_instruction = &si;
        max_words = npos;
    } else if (!strcmp(verb, "ask")) {
        ask.question = text;
        cmd.body_case = VLAD__COMMAND__BODY_ASK;
        cmd.ask = &ask;
        max_words = npos;
    } else {
        return usage_error("unknown command '%s' (status, estop, release, reset, instruction, "
                           "ask, metrics, keygen)", verb);
    }
    if (npos > max_words)
        return usage_error("%s takes no argument ('%s')", verb, pos[1]);
    if (!g_opt.profile)
        return usage_error("--profile FILE is needed (the daemon's robot profile)");
    static vlad_profile prof;
    if (vlad_profile_load(&prof, g_opt.profile, &err))
        return fail(EXIT_USAGE, "%s", err.msg);
    if (vlad_profile_apply_sets(&prof, &g_opt.sets, &err)) /* as vlad --set */
        return fail(EXIT_USAGE, "%s", err.msg);
    unsigned flags = VLAD_CLIENT_CONTROL | (cmd.body_case == VLAD__COMMAND__BODY_ASK ? VLAD_CLIENT_LANG : 0);
    vlad_client *c = vlad_client_new_keyed(&prof, flags, g_opt.key, &err);
    if (!c) /* connecting never fails for want of a daemon: a key or endpoint that cannot be used */
        return fail(EXIT_USAGE, "%s", err.msg);
    int rc;
    if (cmd.body_case == VLAD__COMMAND__BODY_ASK) {
        rc = ask_stream(c, &prof, &cmd);
    } else if (is_metrics) {
        rc = metrics(c, &prof);
    } else if (g_opt.watch) {
        rc = watch(c, &prof);
    } else {
        Vlad__Reply *r;
        if (vlad_client_command(c, &cmd, g_opt.timeout, &r, &err)) {
            rc = no_reply(&err);
        } else {
            if (r->ok && (cmd.body_case == VLAD__COMMAND__BODY_ESTOP ||
                          cmd.body_case == VLAD__COMMAND__BODY_RELEASE_ESTOP))
                settle(c, cmd.body_case == VLAD__COMMAND__BODY_ESTOP, &r);
            if (g_json)
                print_json(r);
            else
                print_text(r);
            rc = r->ok ? EXIT_OK : EXIT_REFUSED;
            vlad__reply__free_unpacked(r, NULL);
        }
    }
    vlad_client_free(c);
    return rc;
}
