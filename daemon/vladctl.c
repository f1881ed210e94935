/* vladctl — talk to a running vlad.
 *   vladctl --profile FILE [--set KEY=VALUE]... [--key FILE] [--timeout MS] [--json] COMMAND
 *   vladctl keygen BASE [--name NAME] [--rights RIGHTS]
 * COMMAND: status | estop [REASON] | release | reset | instruction TEXT | ask [QUESTION]
 * ask prints the answer's pieces as they arrive on lang.<robot> and exits when the stream is
 * done (--json: one object with the whole answer and the frame it was conditioned on);
 * --timeout is then also the longest wait between two pieces.
 * Exit status: 0 ok, 1 the daemon refused (reply.ok false) or ended the stream with an
 * error, 2 usage, 3 no reply (or the stream stopped coming). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "client.h"
#include "keys.h"
#include "profile.h"

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
    if (s->jitter)
        printf("jitter us: p50 %.0f  p99 %.0f  max %.0f  (n=%llu)\n", s->jitter->p50_us,
               s->jitter->p99_us, s->jitter->max_us, (unsigned long long)s->jitter->count);
    if (s->instruction && s->instruction[0])
        printf("instruction: %s\n", s->instruction);
}

static int usage(void) {
    fprintf(stderr, "usage: vladctl --profile FILE [--set KEY=VALUE]... [--key FILE] [--timeout MS] [--json] "
                    "status|estop [REASON]|release|reset|instruction TEXT|ask [QUESTION]\n"
                    "       vladctl keygen BASE [--name NAME] [--rights observe,publish,command|all]\n"
                    "         writes BASE.key (public: give it to the daemon's security.client_keys_dir)\n"
                    "         and BASE.key_secret (mode 0600: keep it; --key or $VLAD_CLIENT_KEY)\n");
    return 2;
}

static int keygen(int argc, char **argv) {
    if (argc < 3)
        return usage();
    const char *base = argv[2], *name = NULL, *rights_s = "observe";
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--name") && i + 1 < argc)
            name = argv[++i];
        else if (!strcmp(argv[i], "--rights") && i + 1 < argc)
            rights_s = argv[++i];
        else
            return usage();
    }
    unsigned rights;
    vlad_err err;
    if (vlad_rights_parse(rights_s, &rights, &err)) {
        fprintf(stderr, "vladctl: %s\n", err.msg);
        return 2;
    }
    if (!name) {
        const char *b = strrchr(base, '/');
        name = b ? b + 1 : base;
    }
    if (vlad_cert_generate(base, name, rights, &err)) {
        fprintf(stderr, "vladctl: %s\n", err.msg);
        return 1;
    }
    vlad_cert c;
    char sec[600];
    snprintf(sec, sizeof sec, "%s.key_secret", base);
    if (vlad_cert_read(sec, true, &c, &err)) {
        fprintf(stderr, "vladctl: %s\n", err.msg);
        return 1;
    }
    printf("%s.key and %s.key_secret written; public key %s (rights %s)\n", base, base,
           c.public_key, rights_s);
    return 0;
}

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
static int ask_stream(const vlad_profile *p, const char *key, Vlad__Command *cmd, int timeout, int json) {
    vlad_err err;
    vlad_client *c = vlad_client_new_keyed(
        p, VLAD_CLIENT_CONTROL | VLAD_CLIENT_LANG, key, &err);
    if (!c) {
        fprintf(stderr, "vladctl: %s\n", err.msg);
        return 3;
    }
    await_subscription(c, p);
    Vlad__Reply *r;
    if (vlad_client_command(c, cmd, timeout, &r, &err)) {
        fprintf(stderr, "vladctl: %s\n", err.msg);
        vlad_client_free(c);
        return 3;
    }
    if (!r->ok) {
        if (json)
            print_json(r);
        else
            printf("refused: %s\n", r->error);
        vlad__reply__free_unpacked(r, NULL);
        vlad_client_free(c);
        return 1;
    }
    uint32_t id = r->stream_id;
    vlad__reply__free_unpacked(r, NULL);
    char answer[4096];
    size_t len = 0;
    int rc = 3, pieces = 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "stream_id", id);
    cJSON_AddStringToObject(o, "question", cmd->ask->question ? cmd->ask->question : "");
    if (!json) {
        printf("stream %u: ", id);
        fflush(stdout);
    }
    for (;;) {
        vlad_msg m;
        if (vlad_client_recv(c, timeout, &m, &err) != VLAD_OK) {
            fprintf(stderr, "%svladctl: stream %u: no piece for %d ms\n", json ? "" : "\n", id,
                    timeout);
            break;
        }
        if (m.kind != VLAD_MSG_LANG || m.u.lang->stream_id != id) {
            vlad_msg_clear(&m);
            continue;
        }
        const Vlad__LanguageToken *t = m.u.lang;
        if (pieces++ == 0) {
            cJSON_AddNumberToObject(o, "frame", (double)t->frame);
            cJSON_AddNumberToObject(o, "obs_tick", (double)t->obs_tick);
            cJSON_AddNumberToObject(o, "obs_robot_tick", (double)t->obs_robot_tick);
            cJSON_AddNumberToObject(o, "first_tick", (double)t->tick);
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
            cJSON_AddNumberToObject(o, "last_tick", (double)t->tick);
            rc = t->error && t->error[0] ? 1 : 0;
            if (rc)
                fprintf(stderr, "%svladctl: stream %u ended: %s\n", json ? "" : "\n", id, t->error);
        }
        vlad_msg_clear(&m);
        if (done)
            break;
    }
    answer[len] = '\0';
    if (json) {
        cJSON_AddStringToObject(o, "answer", answer);
        cJSON_AddNumberToObject(o, "pieces", pieces);
        cJSON_AddBoolToObject(o, "done", rc != 3);
        char *txt = cJSON_Print(o);
        printf("%s\n", txt);
        free(txt);
    } else if (rc != 3) {
        printf("\n");
    }
    cJSON_Delete(o);
    vlad_client_free(c);
    return rc;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "keygen"))
        return keygen(argc, argv);
    const char *path = NULL, *key = NULL, *sets[32];
    int timeout = 2000, json = 0, n_sets = 0, i;
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--profile") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_sets < 32)
            sets[n_sets++] = argv[++i];
        else if (!strcmp(argv[i], "--key") && i + 1 < argc)
            key = argv[++i];
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
            timeout = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else
            return usage();
    }
    if (!path || i >= argc || timeout <= 0)
        return usage();
    const char *verb = argv[i], *arg = i + 1 < argc ? argv[i + 1] : "";
    Vlad__Command cmd = VLAD__COMMAND__INIT;
    Vlad__StatusRequest st = VLAD__STATUS_REQUEST__INIT;
    Vlad__EStop es = VLAD__ESTOP__INIT;
    Vlad__ReleaseEStop rel = VLAD__RELEASE_ESTOP__INIT;
    Vlad__Reset rs = VLAD__RESET__INIT;
    Vlad__SetInstruction si = VLAD__SET_INSTRUCTION__INIT;
    Vlad__Ask ask = VLAD__ASK__INIT;
    if (!strcmp(verb, "status")) {
        cmd.body_case = VLAD__COMMAND__BODY_STATUS;
        cmd.status = &st;
    } else if (!strcmp(verb, "estop")) {
        es.reason = (char *)(arg[0] ? arg : "vladctl");
        cmd.body_case = VLAD__COMMAND__BODY_ESTOP;
        cmd.estop = &es;
    } else if (!strcmp(verb, "release")) {
        cmd.body_case = VLAD__COMMAND__BODY_RELEASE_ESTOP;
        cmd.release_estop = &rel;
    } else if (!strcmp(verb, "reset")) {
        cmd.body_case = VLAD__COMMAND__BODY_RESET;
        cmd.reset = &rs;
    } else if (!strcmp(verb, "instruction") && i + 1 < argc) {
        si.text = (char *)arg;
        cmd.body_case = VLAD__COMMAND__BODY_SET_INSTRUCTION;
        cmd.set_instruction = &si;
    } else if (!strcmp(verb, "ask")) {
        ask.question = (char *)arg;
        cmd.body_case = VLAD__COMMAND__BODY_ASK;
        cmd.ask = &ask;
    } else {
        return usage();
    }
    static vlad_profile prof;
    vlad_err err;
    if (vlad_profile_load(&prof, path, &err)) {
        fprintf(stderr, "vladctl: %s\n", err.msg);
        return 2;
    }
    for (int k = 0; k < n_sets; k++) { /* KEY=VALUE, as vlad --set */
        char kv[VLAD_PATH_MAX + 128];
        snprintf(kv, sizeof kv, "%s", sets[k]);
        char *eq = strchr(kv, '=');
        if (!eq) {
            fprintf(stderr, "vladctl: --set %s: expected KEY=VALUE\n", sets[k]);
            return 2;
        }
        *eq = '\0';
        if (vlad_profile_set(&prof, kv, eq + 1, &err)) {
            fprintf(stderr, "vladctl: --set %s: %s\n", sets[k], err.msg);
            return 2;
        }
    }
    if (cmd.body_case == VLAD__COMMAND__BODY_ASK)
        return ask_stream(&prof, key, &cmd, timeout, json);
    vlad_client *c = vlad_client_new_keyed(&prof, VLAD_CLIENT_CONTROL, key, &err);
    if (!c) {
        fprintf(stderr, "vladctl: %s\n", err.msg);
        return 3;
    }
    Vlad__Reply *r;
    int rc = vlad_client_command(c, &cmd, timeout, &r, &err);
    if (rc) {
        fprintf(stderr, "vladctl: %s\n", err.msg);
        vlad_client_free(c);
        return 3;
    }
    if (json)
        print_json(r);
    else
        print_text(r);
    int ok = r->ok;
    vlad__reply__free_unpacked(r, NULL);
    vlad_client_free(c);
    return ok ? 0 : 1;
}
