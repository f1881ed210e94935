/* report.c — vlad-sim's results as JSON and as a table; see report.h. */
#include "report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void num_or_null(cJSON *o, const char *k, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

typedef struct summary {
    int episodes, successes, stalls, with_latency, missing_latency;
    double completion_s, jerk, score, lat_mean, lat_max;
} summary;

static void summarize(const vlad_sim_results *res, vlad_task_kind k, summary *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < res->n; i++) {
        const vlad_episode_result *e = &res->ep[i];
        if (e->task != k)
            continue;
        s->episodes++;
        s->stalls += e->stall_ticks;
        s->jerk += e->jerk;
        s->score += e->score;
        if (e->success) {
            s->successes++;
            s->completion_s += e->completion_ticks / res->control_hz;
        }
        if (e->reactions > 0) {
            s->with_latency++;
            s->lat_mean += e->latency_mean_ticks;
            if (e->latency_max_ticks > s->lat_max)
                s->lat_max = e->latency_max_ticks;
        } else if (e->world_changes > 0) {
            s->missing_latency++;
        }
    }
    if (s->episodes) {
        s->jerk /= s->episodes;
        s->score /= s->episodes;
    }
    s->completion_s = s->successes ? s->completion_s / s->successes : NAN;
    s->lat_mean = s->with_latency ? s->lat_mean / s->with_latency : NAN;
    if (!s->with_latency)
        s->lat_max = NAN;
}

char *vlad_sim_results_json(const vlad_sim_results *res) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "robot", res->robot);
    cJSON_AddStringToObject(root, "clock", vlad_clock_mode_name(res->clock));
    cJSON_AddNumberToObject(root, "seed", (double)res->seed);
    cJSON_AddNumberToObject(root, "control_hz", res->control_hz);
    cJSON_AddBoolToObject(root, "expert", res->expert);
    cJSON_AddNumberToObject(root, "expert_delay", res->expert_delay);
    cJSON_AddNumberToObject(root, "expert_chunk", res->expert_chunk);
    cJSON *eps = cJSON_AddArrayToObject(root, "episodes");
    const double ms = 1000.0 / res->control_hz;
    for (int i = 0; i < res->n; i++) {
        const vlad_episode_result *e = &res->ep[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "task", vlad_task_name(e->task));
        cJSON_AddNumberToObject(o, "episode", e->episode);
        char hx[24];
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)e->seed);
        cJSON_AddStringToObject(o, "seed", hx);
        cJSON_AddStringToObject(o, "instruction", e->instruction);
        cJSON_AddNumberToObject(o, "first_tick", (double)e->first_tick);
        cJSON_AddNumberToObject(o, "ticks", e->ticks);
        cJSON_AddBoolToObject(o, "success", e->success);
        if (e->completion_ticks >= 0) {
            cJSON_AddNumberToObject(o, "completion_ticks", e->completion_ticks);
            cJSON_AddNumberToObject(o, "completion_s", e->completion_ticks / res->control_hz);
        } else {
            cJSON_AddNullToObject(o, "completion_ticks");
            cJSON_AddNullToObject(o, "completion_s");
        }
        cJSON_AddNumberToObject(o, "score", e->score);
        cJSON_AddNumberToObject(o, "mean_sq_jerk", e->jerk);
        cJSON_AddNumberToObject(o, "stall_ticks", e->stall_ticks);
        cJSON_AddNumberToObject(o, "unanswered_commands", e->unanswered_commands);
        cJSON_AddNumberToObject(o, "lockstep_timeouts", e->lockstep_timeouts);
        cJSON_AddNumberToObject(o, "world_changes", e->world_changes);
        cJSON_AddNumberToObject(o, "reactions", e->reactions);
        num_or_null(o, "reaction_latency_mean_ticks", e->latency_mean_ticks);
        num_or_null(o, "reaction_latency_max_ticks", e->latency_max_ticks);
        num_or_null(o, "reaction_latency_mean_ms", e->latency_mean_ticks * ms);
        num_or_null(o, "reaction_latency_max_ms", e->latency_max_ticks * ms);
        num_or_null(o, "reaction_e2e_mean_ms", e->e2e_mean_ms);
        num_or_null(o, "reaction_e2e_max_ms", e->e2e_max_ms);
        cJSON_AddNumberToObject(o, "chunk_switches", e->chunk_switches);
        num_or_null(o, "discontinuity_mean", e->disc_mean);
        num_or_null(o, "discontinuity_max", e->disc_max);
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)e->traj_hash);
        cJSON_AddStringToObject(o, "trajectory_hash", hx);
        cJSON_AddItemToArray(eps, o);
    }
    cJSON *sum = cJSON_AddArrayToObject(root, "summary");
    for (int k = 0; k < VLAD_TASK_COUNT; k++) {
        summary s;
        summarize(res, (vlad_task_kind)k, &s);
        if (!s.episodes)
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "task", vlad_task_name((vlad_task_kind)k));
        cJSON_AddNumberToObject(o, "episodes", s.episodes);
        cJSON_AddNumberToObject(o, "successes", s.successes);
        cJSON_AddNumberToObject(o, "success_rate", (double)s.successes / s.episodes);
        cJSON_AddNumberToObject(o, "mean_score", s.score);
        num_or_null(o, "mean_completion_s", s.completion_s);
        cJSON_AddNumberToObject(o, "mean_sq_jerk", s.jerk);
        cJSON_AddNumberToObject(o, "stall_ticks", s.stalls);
        num_or_null(o, "reaction_latency_mean_ticks", s.lat_mean);
        num_or_null(o, "reaction_latency_max_ticks", s.lat_max);
        num_or_null(o, "reaction_latency_mean_ms", s.lat_mean * ms);
        cJSON_AddNumberToObject(o, "episodes_missing_reaction", s.missing_latency);
        cJSON_AddItemToArray(sum, o);
    }
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    return txt;
}

int vlad_sim_results_write_json(const vlad_sim_results *res, const char *path, vlad_err *err) {
    char *txt = vlad_sim_results_json(res);
    if (!txt)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    FILE *f = fopen(path, "w");
    if (!f) {
        free(txt);
        return vlad_err_set(err, VLAD_EIO, "cannot write %s", path);
    }
    bool ok = fputs(txt, f) >= 0 && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    free(txt);
    return ok ? VLAD_OK : vlad_err_set(err, VLAD_EIO, "write %s failed", path);
}

void vlad_sim_results_print(const vlad_sim_results *res, FILE *out) {
    const double ms = 1000.0 / res->control_hz;
    fprintf(out, "\nvlad-sim results: robot %s, %s, seed %llu, %s%s%s\n", res->robot,
            vlad_clock_mode_name(res->clock), (unsigned long long)res->seed,
            res->expert ? "scripted expert" : "daemon", res->expert && res->expert_delay ? " (delayed)" : "",
            res->expert && res->expert_chunk ? " (open-loop chunks)" : "");
    fprintf(out, "| task  | episodes | success | score | completion s | sq jerk (rad/s^3)^2 | stall ticks | reaction ticks (ms) mean / max | no reaction |\n");
    fprintf(out, "|-------|---------:|--------:|------:|-------------:|--------------------:|------------:|-------------------------------:|------------:|\n");
    for (int k = 0; k < VLAD_TASK_COUNT; k++) {
        summary s;
        summarize(res, (vlad_task_kind)k, &s);
        if (!s.episodes)
            continue;
        char comp[32], lat[64];
        if (isfinite(s.completion_s))
            snprintf(comp, sizeof comp, "%.2f", s.completion_s);
        else
            snprintf(comp, sizeof comp, "-");
        if (isfinite(s.lat_mean))
            snprintf(lat, sizeof lat, "%.1f (%.0f) / %.0f", s.lat_mean, s.lat_mean * ms, s.lat_max);
        else
            snprintf(lat, sizeof lat, "-");
        fprintf(out, "| %-5s | %8d | %6.0f%% | %5.2f | %12s | %19.4g | %11d | %30s | %11d |\n",
                vlad_task_name((vlad_task_kind)k), s.episodes, 100.0 * s.successes / s.episodes, s.score,
                comp, s.jerk, s.stalls, lat, s.missing_latency);
    }
    fprintf(out, "%lld ticks in %.2f s wall (%.0f ticks/s; real time is %.0f)\n", (long long)res->ticks,
            res->wall_s, res->wall_s > 0 ? (double)res->ticks / res->wall_s : 0, res->control_hz);
}

