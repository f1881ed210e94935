/* vlad-serve — a remote inference host: loads a checkpoint once and answers inference
 * requests (serve/wire.h, proto/serve.proto) from any number of vlad daemons over ZeroMQ.
 *   vlad-serve [--bind EP] [--model FILE] [--server-key FILE --keys-dir DIR] [--max-batch N]
 *              [--queue N] [--batch-wait-us N] [--threads N] [--max-connections N]
 *              [--min-latency-ms N] [--stats-interval-s N] [--log-level LEVEL] [--log-file FILE]
 *   vlad-serve --status [--connect EP] [--server-public-key KEY --client-key FILE]
 *              [--timeout-ms N]
 *              ask a running vlad-serve (default: the --bind endpoint) for its counters and
 *              print them as JSON (ServeStatus); exit 0, 1 refused, 3 no reply
 * docs/SERVE.md describes the protocol, the keys, the threads and the counters.
 * SIGINT/SIGTERM: clean shutdown (the handler only sets a flag); exit 0. Exit 1: it could not
 * start (model, keys, endpoint), 2: usage. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cpu.h"
#include "log.h"
#include "opts.h"
#include "server.h"
#include "serve/client.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

#define SYNOPSIS                                                                                   \
    "vlad-serve [--bind EP] [--model FILE] [--server-key FILE --keys-dir DIR] [--max-batch N]\n"     \
    "                  [--queue N] [--batch-wait-us N] [--threads N] [--max-connections N]\n"        \
    "                  [--min-latency-ms N] [--stats-interval-s N] [--log-level LEVEL]\n"            \
    "                  [--log-file FILE]\n"                                                 \
    "       vlad-serve --status [--connect EP] [--server-public-key KEY --client-key FILE]\n"   \
    "                  [--timeout-ms N]"

/* A message as JSON from its descriptor (scalars, strings, nested messages: ServeStatus). */
static cJSON *msg_json(const ProtobufCMessage *m) {
    cJSON *o = cJSON_CreateObject();
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *at = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            continue;
        switch (f->type) {
        case PROTOBUF_C_TYPE_UINT32: cJSON_AddNumberToObject(o, f->name, *(const uint32_t *)at); break;
        case PROTOBUF_C_TYPE_UINT64: cJSON_AddNumberToObject(o, f->name, (double)*(const uint64_t *)at); break;
        case PROTOBUF_C_TYPE_INT64: cJSON_AddNumberToObject(o, f->name, (double)*(const int64_t *)at); break;
        case PROTOBUF_C_TYPE_DOUBLE: cJSON_AddNumberToObject(o, f->name, *(const double *)at); break;
        case PROTOBUF_C_TYPE_BOOL: cJSON_AddBoolToObject(o, f->name, *(const protobuf_c_boolean *)at); break;
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

static int query_status(const char *ep, const char *pub, const char *key, int timeout_ms) {
    const char *eps[1] = {ep};
    vlad_serve_client_opts co = {.endpoints = eps, .n_endpoints = 1, .server_public_key = pub,
                                 .client_key = key, .timeout_ms = timeout_ms, .attempts = 1,
                                 .robot = "vlad-serve --status"};
    vlad_err err;
    vlad_serve_client *c = vlad_serve_client_new(&co, &err);
    if (!c) {
        fprintf(stderr, "vlad-serve: %s\n", err.msg);
        return 2;
    }
    vlad_serve_reply r;
    int rc = vlad_serve_client_status(c, &r, &err);
    if (rc == VLAD_OK) {
        cJSON *o = msg_json(&r.status->base);
        char *txt = cJSON_Print(o);
        printf("%s\n", txt ? txt : "{}");
        free(txt);
        cJSON_Delete(o);
    } else {
        fprintf(stderr, "vlad-serve: %s\n", err.msg);
    }
    vlad_serve_client_free(c);
    return rc == VLAD_OK ? 0 : r.code >= 0 ? 1 : 3;
}

static void log_stats(const vlad_serve_server *s, const char *when) {
    vlad_serve_stats st;
    vlad_serve_server_stats(s, &st);
    VLAD_LOGI("vlad-serve: %s: %llu requests, %llu replies, %llu chunks in %llu batches (mean "
              "%.2f, max %u), %llu asks, %llu statuses; refused: %llu late, %llu busy, %llu bad, "
              "%llu shape, %llu not authorised; %llu internal errors; %u queued",
              when, (unsigned long long)st.requests, (unsigned long long)st.replies,
              (unsigned long long)st.chunks, (unsigned long long)st.batches, st.mean_batch,
              st.max_batch_seen, (unsigned long long)st.asks, (unsigned long long)st.statuses,
              (unsigned long long)st.late, (unsigned long long)st.busy,
              (unsigned long long)st.bad_requests, (unsigned long long)st.shape_errors,
              (unsigned long long)st.not_authorised, (unsigned long long)st.internal_errors,
              st.queued);
}

int main(int argc, char **argv) {
    vlad_blas_coretype_init(argv); /* OpenBLAS kernels for this CPU (cpu.h); may re-exec */
    vlad_serve_opts o;
    vlad_serve_opts_default(&o);
    const char *level = "info", *log_file = NULL;
    int stats_s = 0, status = 0, timeout_ms = 2000;
    const char *connect = NULL, *server_pub = NULL, *client_key = NULL;
    const vlad_opt tab[] = {
        {"bind", VLAD_OPT_STR, &o.bind, "EP", "ROUTER endpoint (non-loopback needs CURVE)", 0, 0, NULL},
        {"model", VLAD_OPT_STR, &o.model, "FILE", "checkpoint to load once", 0, 0, NULL},
        {"server-key", VLAD_OPT_STR, &o.server_key, "FILE", "the server's secret certificate (CURVE on; with --keys-dir)", 0, 0, NULL},
        {"keys-dir", VLAD_OPT_STR, &o.keys_dir, "DIR", "allowed clients' public certificates (*.key; a key needs the infer right)", 0, 0, NULL},
        {"max-batch", VLAD_OPT_INT, &o.max_batch, "N", "requests per batch", 1, 256, NULL},
        {"queue", VLAD_OPT_INT, &o.queue, "N", "requests waiting at most (then BUSY)", 1, 65536, NULL},
        {"batch-wait-us", VLAD_OPT_INT, &o.batch_wait_us, "US", "after the first request, wait this long for more (0: run what is waiting)", 0, 10000000, NULL},
        {"threads", VLAD_OPT_INT, &o.threads, "N", "engine threads (pool + OpenBLAS)", 1, 64, NULL},
        {"max-connections", VLAD_OPT_INT, &o.max_connections, "N", "connections at most (refused at the handshake beyond)", 1, 4096, NULL},
        {"min-latency-ms", VLAD_OPT_INT, &o.min_latency_ms, "MS", "emulate a slower model: hold each batch's results this long after it started", 0, 60000, NULL},
        {"stats-interval-s", VLAD_OPT_INT, &stats_s, "S", "log the counters every S seconds (0: only at exit)", 0, 86400, NULL},
        {"log-level", VLAD_OPT_STR, &level, "LEVEL", "error, warn, info or debug", 0, 0, NULL},
        {"log-file", VLAD_OPT_STR, &log_file, "FILE", "append the log there (default: stderr)", 0, 0, NULL},
        {"status", VLAD_OPT_FLAG, &status, NULL, "ask a running vlad-serve for its counters (JSON) and exit", 0, 0, NULL},
        {"connect", VLAD_OPT_STR, &connect, "EP", "--status: the server's endpoint (default: --bind)", 0, 0, NULL},
        {"server-public-key", VLAD_OPT_STR, &server_pub, "KEY", "--status: the server's Z85 public key (CURVE)", 0, 0, NULL},
        {"client-key", VLAD_OPT_STR, &client_key, "FILE", "--status: this client's secret certificate (CURVE)", 0, 0, NULL},
        {"timeout-ms", VLAD_OPT_INT, &timeout_ms, "MS", "--status: how long to wait for the reply", 1, 600000, NULL},
        {0},
    };
    vlad_err err;
    int prc = vlad_opts_parse(tab, argc, argv, NULL, 0, NULL, &err);
    if (prc == VLAD_ESTATE) {
        vlad_opts_usage(stdout, SYNOPSIS, tab);
        return 0;
    }
    if (prc) {
        fprintf(stderr, "vlad-serve: %s\n", err.msg);
        vlad_opts_usage(stderr, SYNOPSIS, tab);
        return 2;
    }
    if (status)
        return query_status(connect ? connect : o.bind, server_pub, client_key, timeout_ms);
    vlad_log_level lvl;
    if (vlad_log_level_parse(level, &lvl)) {
        fprintf(stderr, "vlad-serve: --log-level '%s' is not one of error|warn|info|debug\n", level);
        return 2;
    }
    vlad_log_set_level(lvl);
    if (vlad_log_start(log_file, &err)) {
        fprintf(stderr, "vlad-serve: %s\n", err.msg);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    vlad_serve_server *s = vlad_serve_server_new(&o, &err);
    if (!s) {
        VLAD_LOGE("vlad-serve: %s", err.msg);
        vlad_log_stop();
        fprintf(stderr, "vlad-serve: %s\n", err.msg);
        return 1;
    }
    VLAD_LOGI("vlad-serve: serving %s on %s (%s), max batch %d, queue %d, batch wait %d us, "
              "%d thread%s",
              o.model, o.bind, o.server_key ? "CURVE" : "no CURVE: loopback only", o.max_batch,
              o.queue, o.batch_wait_us, o.threads, o.threads == 1 ? "" : "s");
    int64_t next_stats = stats_s ? vlad_now_ns() + (int64_t)stats_s * VLAD_NS_PER_S : 0;
    int rc = 0;
    while (!g_stop) {
        if (vlad_serve_server_poll(s, 100, &err)) {
            VLAD_LOGE("vlad-serve: %s", err.msg);
            rc = 1;
            break;
        }
        if (next_stats && vlad_now_ns() >= next_stats) {
            log_stats(s, "counters");
            next_stats += (int64_t)stats_s * VLAD_NS_PER_S;
        }
    }
    VLAD_LOGI("vlad-serve: shutting down");
    log_stats(s, "at exit");
    vlad_serve_server_free(s);
    vlad_log_stop();
    return rc;
}
