/* vladctl — talk to a running vlad.
 *   vladctl --profile FILE [--timeout MS] [--json] COMMAND
 * COMMAND: status | estop [REASON] | release | reset | instruction TEXT | ask [QUESTION]
 * Exit status: 0 ok, 1 the daemon refused (reply.ok false), 2 usage, 3 no reply. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
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

static cJSON *lat_json(const Vlad__LatencyStats *l) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", l ? (double)l->count : 0);
    cJSON_AddNumberToObject(o, "p50_us", l ? l->p50_us : 0);
    cJSON_AddNumberToObject(o, "p99_us", l ? l->p99_us : 0);
    cJSON_AddNumberToObject(o, "max_us", l ? l->max_us : 0);
    cJSON_AddNumberToObject(o, "mean_us", l ? l->mean_us : 0);
    return o;
}

static void print_json(const Vlad__Reply *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", r->ok);
    if (!r->ok)
        cJSON_AddStringToObject(o, "error", r->error);
    if (r->stream_id)
        cJSON_AddNumberToObject(o, "stream_id", r->stream_id);
    const Vlad__Status *s = r->status;
    if (s) {
        cJSON *j = cJSON_AddObjectToObject(o, "status");
        cJSON_AddStringToObject(j, "robot", s->robot);
        cJSON_AddStringToObject(j, "mode", mode_name(s->mode));
        cJSON_AddNumberToObject(j, "tick", (double)s->tick);
        cJSON_AddNumberToObject(j, "actions_published", (double)s->actions_published);
        cJSON_AddNumberToObject(j, "observations_received", (double)s->observations_received);
        cJSON_AddNumberToObject(j, "bad_messages", (double)s->bad_messages);
        cJSON_AddNumberToObject(j, "bad_observations", (double)s->bad_observations);
        cJSON_AddNumberToObject(j, "bad_commands", (double)s->bad_commands);
        cJSON_AddNumberToObject(j, "stall_ticks", (double)s->stall_ticks);
        cJSON_AddNumberToObject(j, "watchdog_trips", (double)s->watchdog_trips);
        cJSON_AddNumberToObject(j, "clamped_actions", (double)s->clamped_actions);
        cJSON_AddNumberToObject(j, "overruns", (double)s->overruns);
        cJSON_AddItemToObject(j, "jitter", lat_json(s->jitter));
        cJSON_AddItemToObject(j, "inference", lat_json(s->inference));
        cJSON_AddStringToObject(j, "instruction", s->instruction);
        cJSON_AddStringToObject(j, "async_mode", s->async_mode);
        cJSON_AddNumberToObject(j, "uptime_s", s->uptime_s);
        cJSON_AddNumberToObject(j, "control_hz", s->control_hz);
    }
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
    if (s->jitter)
        printf("jitter us: p50 %.0f  p99 %.0f  max %.0f  (n=%llu)\n", s->jitter->p50_us,
               s->jitter->p99_us, s->jitter->max_us, (unsigned long long)s->jitter->count);
    if (s->instruction && s->instruction[0])
        printf("instruction: %s\n", s->instruction);
}

static int usage(void) {
    fprintf(stderr, "usage: vladctl --profile FILE [--timeout MS] [--json] "
                    "status|estop [REASON]|release|reset|instruction TEXT|ask [QUESTION]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int timeout = 2000, json = 0, i;
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--profile") && i + 1 < argc)
            path = argv[++i];
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
    vlad_client *c = vlad_client_new(&prof, VLAD_CLIENT_CONTROL, &err);
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
