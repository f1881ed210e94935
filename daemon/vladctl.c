/* vladctl — talk to a running vlad.
 *   vladctl --profile FILE [--timeout MS] [--json] COMMAND
 *   vladctl keygen BASE [--name NAME] [--rights RIGHTS]
 * COMMAND: status | estop [REASON] | release | reset | instruction TEXT | ask [QUESTION]
 * Exit status: 0 ok, 1 the daemon refused (reply.ok false), 2 usage, 3 no reply. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (s->jitter)
        printf("jitter us: p50 %.0f  p99 %.0f  max %.0f  (n=%llu)\n", s->jitter->p50_us,
               s->jitter->p99_us, s->jitter->max_us, (unsigned long long)s->jitter->count);
    if (s->instruction && s->instruction[0])
        printf("instruction: %s\n", s->instruction);
}

static int usage(void) {
    fprintf(stderr, "usage: vladctl --profile FILE [--key FILE] [--timeout MS] [--json] "
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

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "keygen"))
        return keygen(argc, argv);
    const char *path = NULL, *key = NULL;
    int timeout = 2000, json = 0, i;
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--profile") && i + 1 < argc)
            path = argv[++i];
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
