/* vladctl_metrics.c — Status as Prometheus text exposition 0.0.4 (see vladctl_metrics.h). */
#include "vladctl_metrics.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

/* HELP text of the fields proto/vlad.proto documents; a new field gets a generic line. */
static const struct {
    const char *field, *help;
} k_help[] = {
    {"tick", "Current control tick."},
    {"actions_published", "Actions published."},
    {"observations_received", "Valid observations accepted."},
    {"bad_messages", "Malformed or invalid messages dropped, all sockets."},
    {"bad_observations", "Malformed or invalid messages dropped on the observation socket."},
    {"bad_commands", "Malformed or invalid messages dropped on the control socket."},
    {"stall_ticks", "Ticks with no fresh action (the last target held)."},
    {"watchdog_trips", "Watchdog trips: observations older than safety.watchdog_ms, holding."},
    {"clamped_actions", "Actions whose values the safety limits changed."},
    {"uptime_s", "Seconds since the daemon started."},
    {"control_hz", "Control rate (profile control_hz)."},
    {"overruns", "Ticks whose deadline had passed before the tick began."},
    {"episode", "Resets so far (the episode number)."},
    {"episode_ticks", "Ticks since the last reset (or start)."},
    {"episode_stall_ticks", "Stall ticks since the last reset."},
    {"episode_chunks", "Chunks installed since the last reset."},
    {"chunks_installed", "Action chunks installed into the queue."},
    {"chunks_refused", "Finished chunks not installed (entirely late, or invalid)."},
    {"chunks_clamped", "Installed chunks whose values safety changed."},
    {"inference_errors", "Inference errors."},
    {"obs_out_of_limits", "Observations dropped: a position outside the limits and margin."},
    {"obs_absurd", "Observations dropped: tick >= 2^53 or a negative stamp."},
    {"robot_restarts", "Times the robot's tick went back."},
    {"delay_limited_ticks", "Ticks whose delay estimate exceeded async.max_delay_ticks."},
    {"delay_ticks", "Current inference delay estimate (ticks, before the limit)."},
    {"max_delay_ticks", "The delay limit in force (ticks)."},
    {"phase_locked", "1 when the wall-clock tick phase follows the observation stream (phase_lock)."},
    {"phase_error_us", "The newest phase error: tick deadline minus observation arrival, minus the lead (us)."},
    {"early_starts", "Inferences started as an observation arrived, before its tick (async.early_start)."},
    {"curve", "1 when CURVE security is on."},
    {"client_keys", "Client keys allowed."},
    {"handshakes_refused", "Handshakes refused: unknown keys, other mechanisms, missing rights."},
    {"commands_denied", "Commands denied to known keys without the command right."},
    {"subscriptions_refused", "Subscriptions refused (anything but this robot's topics)."},
    {"oversized_frames", "Frames over the size cap, dropped."},
    {"log_lines_lost", "Log lines dropped (queue full) or not written (file error)."},
    {"connections", "Connections open now, all sockets."},
    {"connections_refused", "Connections refused at the handshake (security.max_connections)."},
    {"disconnects", "Connections closed."},
    {"lang_streams_active", "Language streams decoding now."},
    {"lang_max_streams", "Language stream slots (profile lang.max_streams)."},
    {"prefix_blocks_in_use", "Prefix KV blocks held (current frame and streams')."},
    {"prefix_blocks", "Prefix KV blocks allocated."},
    {"prefills", "Prefix prefills (observation frames encoded)."},
    {"frames", "Action inferences (each on one prefill)."},
    {"lang_requests", "Asks accepted (and commentary streams started)."},
    {"lang_refused", "Asks refused (no slot, too long, no model, e-stop)."},
    {"lang_streams_done", "Language streams finished."},
    {"lang_tokens", "Language tokens decoded."},
    {"lang_tokens_per_s", "Language tokens decoded per second over the last second."},
    {"lang_slices_preempted", "Decode slices cut short because an action inference was due."},
    {"remote_up", "1 when the newest call to the vlad-serve hosts got its answer."},
    {"remote_requests", "Messages sent to the vlad-serve hosts (resends, status requests included)."},
    {"remote_replies", "Replies from the vlad-serve hosts taken as answers."},
    {"remote_timeouts", "Remote calls without a reply in attempts x timeout_ms."},
    {"remote_dropped_stale", "Remote replies dropped: not the outstanding request's (late, duplicate)."},
    {"remote_reconnects", "Handshakes with a vlad-serve host this daemon had been connected to."},
    {"remote_refusals", "Handshakes a vlad-serve host refused (unknown key, no infer right)."},
    {"remote_errors", "Error replies from the vlad-serve hosts (BUSY, LATE, SHAPE, ...)."},
    {"remote_fallbacks", "Inferences the local fallback model ran instead of the servers."},
    {"remote_request_bytes", "Mean bytes of an inference request sent to the vlad-serve hosts."},
    {"remote_encode_us", "Mean microseconds to JPEG-encode one request's views (0: raw images)."},
    {"mode", "Daemon mode: 1 for the current one."},
    {"inference", "Inference latency, observation taken to chunk ready"},
    {"jitter", "Tick jitter, publish time minus tick deadline"},
    {"wake", "Wall clock: the control thread's start of a tick's step minus its deadline (spin_us)"},
};

static const char *help_of(const char *field) {
    for (size_t i = 0; i < sizeof k_help / sizeof k_help[0]; i++)
        if (!strcmp(k_help[i].field, field))
            return k_help[i].help;
    return NULL;
}

bool vladctl_metric_name_ok(const char *name) {
    if (!name || !name[0] || !(isalpha((unsigned char)name[0]) || name[0] == '_' || name[0] == ':'))
        return false;
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == ':'))
            return false;
    return true;
}

typedef struct {
    FILE *out;
    const char *prefix, *robot;
    int samples;
} expo;

/* a label value: backslash, double quote and newline escaped */
static void put_label_value(FILE *out, const char *v) {
    fputc('"', out);
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '"')
            fputs("\\\"", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* HELP text: backslash and newline escaped */
static void put_help(expo *e, const char *name, const char *help, const char *type) {
    fprintf(e->out, "# HELP %s_%s ", e->prefix, name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", e->out);
        else if (*p == '\n')
            fputs("\\n", e->out);
        else
            fputc(*p, e->out);
    }
    fprintf(e->out, "\n# TYPE %s_%s %s\n", e->prefix, name, type);
}

static void put_double(FILE *out, double v) {
    if (isnan(v))
        fputs("NaN", out);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", out);
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        fprintf(out, "%.0f", v);
    else
        fprintf(out, "%.9g", v);
}

/* `<prefix>_<name>{robot="..."[,extra_k="extra_v"]} ` — the value follows */
static void put_series(expo *e, const char *name, const char *extra_k, const char *extra_v) {
    fprintf(e->out, "%s_%s{robot=", e->prefix, name);
    put_label_value(e->out, e->robot);
    if (extra_k) {
        fprintf(e->out, ",%s=", extra_k);
        put_label_value(e->out, extra_v);
    }
    fputs("} ", e->out);
    e->samples++;
}

static void sample_u64(expo *e, const char *name, uint64_t v) {
    put_series(e, name, NULL, NULL);
    fprintf(e->out, "%llu\n", (unsigned long long)v);
}

static void sample_i64(expo *e, const char *name, int64_t v) {
    put_series(e, name, NULL, NULL);
    fprintf(e->out, "%lld\n", (long long)v);
}

static void sample_double(expo *e, const char *name, const char *extra_k, const char *extra_v,
                          double v) {
    put_series(e, name, extra_k, extra_v);
    put_double(e->out, v);
    fputc('\n', e->out);
}

/* field name -> metric name: "_s" -> "_seconds", "_per_s" -> "_per_second" */
static void metric_name(const char *field, const char *suffix, char *buf, size_t cap) {
    size_t n = strlen(field);
    if (n > 6 && !strcmp(field + n - 6, "_per_s"))
        snprintf(buf, cap, "%.*s_per_second%s", (int)(n - 6), field, suffix);
    else if (n > 2 && !strcmp(field + n - 2, "_s"))
        snprintf(buf, cap, "%.*s_seconds%s", (int)(n - 2), field, suffix);
    else
        snprintf(buf, cap, "%s%s", field, suffix);
}

static void latency(expo *e, const char *field, const Vlad__LatencyStats *l) {
    char name[160], maxn[176], help[256];
    if (!strcmp(field, "inference"))
        snprintf(name, sizeof name, "inference_latency_seconds");
    else if (!strcmp(field, "jitter"))
        snprintf(name, sizeof name, "tick_jitter_seconds");
    else
        snprintf(name, sizeof name, "%s_seconds", field);
    const char *h = help_of(field);
    uint64_t count = l ? l->count : 0;
    snprintf(help, sizeof help, "%s (seconds; quantiles over every sample since the daemon "
             "started, NaN before the first).", h ? h : field);
    put_help(e, name, help, "summary");
    sample_double(e, name, "quantile", "0.5", count ? l->p50_us * 1e-6 : NAN);
    sample_double(e, name, "quantile", "0.99", count ? l->p99_us * 1e-6 : NAN);
    char sub[192];
    snprintf(sub, sizeof sub, "%s_sum", name);
    sample_double(e, sub, NULL, NULL, count ? l->mean_us * (double)count * 1e-6 : 0.0);
    snprintf(sub, sizeof sub, "%s_count", name);
    sample_u64(e, sub, count);
    /* "x_seconds" -> "x_max_seconds" */
    snprintf(maxn, sizeof maxn, "%.*s_max_seconds", (int)(strlen(name) - 8), name);
    snprintf(help, sizeof help, "%s: the largest sample since the daemon started (seconds).",
             h ? h : field);
    put_help(e, maxn, help, "gauge");
    sample_double(e, maxn, NULL, NULL, count ? l->max_us * 1e-6 : NAN);
}

/* one gauge per enum value (but the unspecified 0), 1 for the current one; the label value is
 * the value's name without the enum's prefix, lower case ("MODE_RUNNING" -> "running") */
static void enum_family(expo *e, const ProtobufCFieldDescriptor *f, int cur) {
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    const char *h = help_of(f->name);
    char help[160];
    snprintf(help, sizeof help, "%s", h ? h : "Status enum field: 1 for the current value.");
    put_help(e, f->name, help, "gauge");
    for (unsigned k = 0; k < ed->n_values; k++) {
        const ProtobufCEnumValue *v = &ed->values[k];
        if (v->value == 0)
            continue;
        const char *us = strchr(v->name, '_');
        const char *lbl = us ? us + 1 : v->name;
        char low[128];
        size_t i = 0;
        for (; lbl[i] && i < sizeof low - 1; i++)
            low[i] = (char)tolower((unsigned char)lbl[i]);
        low[i] = '\0';
        sample_double(e, f->name, f->name, low, v->value == cur ? 1 : 0);
    }
}

static void info_family(expo *e, const ProtobufCMessage *m, const char *clock) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    put_help(e, "info", "Daemon settings and text state as labels (value always 1).", "gauge");
    fprintf(e->out, "%s_info{robot=", e->prefix);
    put_label_value(e->out, e->robot);
    if (clock) {
        fputs(",clock=", e->out);
        put_label_value(e->out, clock);
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED ||
            !strcmp(f->name, "robot"))
            continue;
        const char *v = *(char *const *)((const char *)m + f->offset);
        fprintf(e->out, ",%s=", f->name);
        put_label_value(e->out, v);
    }
    fputs("} 1\n", e->out);
    e->samples++;
}

int vladctl_metrics_write(FILE *out, const char *prefix, const char *robot, const char *clock,
                          const Vlad__Status *s, int *samples, vlad_err *err) {
    if (!vladctl_metric_name_ok(prefix))
        return vlad_err_set(err, VLAD_EINVAL,
                            "metrics prefix '%s' is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                            prefix ? prefix : "");
    expo e = {out, prefix, s && s->robot && s->robot[0] ? s->robot : robot, 0};
    put_help(&e, "up", "1 when the daemon answered vladctl's status request, else 0.", "gauge");
    sample_u64(&e, "up", s ? 1 : 0);
    if (s) {
        const ProtobufCMessage *m = &s->base;
        const ProtobufCMessageDescriptor *d = m->descriptor;
        for (unsigned i = 0; i < d->n_fields; i++) {
            const ProtobufCFieldDescriptor *f = &d->fields[i];
            if (f->label == PROTOBUF_C_LABEL_REPEATED)
                continue;
            const char *at = (const char *)m + f->offset;
            const char *h = help_of(f->name);
            char name[160], help[200];
            snprintf(help, sizeof help, "%s", h ? h : "");
            if (!h)
                snprintf(help, sizeof help, "Status field %s (proto/vlad.proto).", f->name);
            bool episode = !strncmp(f->name, "episode_", 8);
            switch (f->type) {
            case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: {
                uint64_t v = *(const uint64_t *)at;
                size_t n = strlen(f->name);
                bool has_total = n > 6 && !strcmp(f->name + n - 6, "_total");
                metric_name(f->name, episode || has_total ? "" : "_total", name, sizeof name);
                put_help(&e, name, help, episode ? "gauge" : "counter");
                sample_u64(&e, name, v);
                break;
            }
            case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
                metric_name(f->name, "", name, sizeof name);
                put_help(&e, name, help, "gauge");
                sample_i64(&e, name, *(const int64_t *)at);
                break;
            case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
                metric_name(f->name, "", name, sizeof name);
                put_help(&e, name, help, "gauge");
                sample_i64(&e, name, *(const int32_t *)at);
                break;
            case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
                metric_name(f->name, "", name, sizeof name);
                put_help(&e, name, help, "gauge");
                sample_u64(&e, name, *(const uint32_t *)at);
                break;
            case PROTOBUF_C_TYPE_FLOAT: case PROTOBUF_C_TYPE_DOUBLE:
                metric_name(f->name, "", name, sizeof name);
                put_help(&e, name, help, "gauge");
                sample_double(&e, name, NULL, NULL,
                              f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)at
                                                               : *(const double *)at);
                break;
            case PROTOBUF_C_TYPE_BOOL:
                metric_name(f->name, "", name, sizeof name);
                put_help(&e, name, help, "gauge");
                sample_u64(&e, name, *(const protobuf_c_boolean *)at ? 1 : 0);
                break;
            case PROTOBUF_C_TYPE_ENUM:
                enum_family(&e, f, *(const int *)at);
                break;
            case PROTOBUF_C_TYPE_MESSAGE:
                if (f->descriptor == &vlad__latency_stats__descriptor)
                    latency(&e, f->name, *(const Vlad__LatencyStats *const *)at);
                break;
            default: /* strings: vlad_info's labels */
                break;
            }
        }
        info_family(&e, m, clock);
    }
    if (samples)
        *samples = e.samples;
    if (fflush(out) || ferror(out))
        return vlad_err_set(err, VLAD_EIO, "metrics: writing the exposition failed");
    return VLAD_OK;
}
