/* kv_loop.c — the closed-loop half of `vlad-bench kv`: the daemon with the default model
 * drives vlad-sim on every task twice with the same seeds, once without language and once
 * with the OxyGen workload running beside it (one new question per frame, every answer
 * read: bench_run.lang_load), and reports task success (with 95% Wilson intervals),
 * completion time, stall ticks, the delay Δ, action-inference latency and the language
 * throughput side by side. */
#include "kv_loop.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"

typedef struct loop_result {
    bench_task_stats st[BENCH_MAX_TASKS];
    int n;
    bench_daemon_stats d;
    double seconds;
} loop_result;

/* success over every task (with its interval) and stall ticks summed over episodes */
typedef struct run_total {
    int successes, episodes;
    double stalls, lo, hi;
} run_total;

static run_total totals(const loop_result *r) {
    run_total t = {0};
    for (int i = 0; i < r->n; i++) {
        t.successes += r->st[i].successes, t.episodes += r->st[i].episodes;
        t.stalls += r->st[i].stall_ticks * r->st[i].episodes;
    }
    bench_wilson(t.successes, t.episodes, &t.lo, &t.hi);
    return t;
}

static double tokens_per_s(const bench_daemon_stats *d) {
    return d->lang_seconds > 0 ? (double)d->lang_tokens / d->lang_seconds : 0;
}

static void add_run(cJSON *arr, const char *name, const loop_result *r, const bench_kv_loop_opts *o) {
    cJSON *run = cJSON_CreateObject();
    cJSON_AddStringToObject(run, "run", name);
    cJSON_AddStringToObject(run, "clock", o->wall ? "wall" : "lockstep");
    cJSON_AddNumberToObject(run, "seconds", r->seconds);
    cJSON *tasks = cJSON_AddArrayToObject(run, "tasks");
    for (int i = 0; i < r->n; i++) {
        const bench_task_stats *t = &r->st[i];
        double lo, hi;
        bench_wilson(t->successes, t->episodes, &lo, &hi);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "task", t->task);
        cJSON_AddNumberToObject(j, "episodes", t->episodes);
        cJSON_AddNumberToObject(j, "success", t->success);
        cJSON_AddNumberToObject(j, "success_ci95_lo", lo);
        cJSON_AddNumberToObject(j, "success_ci95_hi", hi);
        if (isfinite(t->completion_s))
            cJSON_AddNumberToObject(j, "completion_s", t->completion_s);
        cJSON_AddNumberToObject(j, "stall_ticks_per_episode", t->stall_ticks);
        cJSON_AddItemToArray(tasks, j);
    }
    run_total tot = totals(r);
    cJSON_AddNumberToObject(run, "success", tot.episodes ? (double)tot.successes / tot.episodes : 0);
    cJSON_AddNumberToObject(run, "success_ci95_lo", tot.lo);
    cJSON_AddNumberToObject(run, "success_ci95_hi", tot.hi);
    cJSON_AddNumberToObject(run, "stall_ticks", tot.stalls);
    const bench_daemon_stats *d = &r->d;
    cJSON_AddNumberToObject(run, "inference_p50_ms", d->infer_p50_us / 1e3);
    cJSON_AddNumberToObject(run, "inference_p99_ms", d->infer_p99_us / 1e3);
    cJSON_AddNumberToObject(run, "inference_max_ms", d->infer_max_us / 1e3);
    cJSON_AddNumberToObject(run, "jitter_p99_us", d->jitter_p99_us);
    if (isfinite(d->delay_mean_ticks))
        cJSON_AddNumberToObject(run, "delay_mean_ticks", d->delay_mean_ticks);
    cJSON_AddNumberToObject(run, "delay_ticks_end", d->delay_ticks);
    cJSON_AddNumberToObject(run, "daemon_stall_ticks", (double)d->stall_ticks);
    cJSON_AddNumberToObject(run, "prefills", (double)d->prefills);
    cJSON_AddNumberToObject(run, "frames", (double)d->frames);
    cJSON_AddNumberToObject(run, "lang_tokens", (double)d->lang_tokens);
    cJSON_AddNumberToObject(run, "lang_answers", (double)d->answers);
    cJSON_AddNumberToObject(run, "asks", (double)d->asks);
    cJSON_AddNumberToObject(run, "asks_refused", (double)d->asks_refused);
    cJSON_AddNumberToObject(run, "lang_tokens_per_s", tokens_per_s(d));
    cJSON_AddNumberToObject(run, "slices_preempted", (double)d->preempted);
    cJSON_AddItemToArray(arr, run);
}

static void print_run(const char *name, const loop_result *r) {
    for (int i = 0; i < r->n; i++) {
        const bench_task_stats *t = &r->st[i];
        double lo, hi;
        bench_wilson(t->successes, t->episodes, &lo, &hi);
        printf("| %-13s | %-6s | %4d | %5.1f%% [%4.1f, %5.1f] | %6.2f | %6.2f |\n", name, t->task,
               t->episodes, 100 * t->success, 100 * lo, 100 * hi, t->completion_s, t->stall_ticks);
    }
    run_total tot = totals(r);
    int eps = tot.episodes;
    printf("| %-13s | %-6s | %4d | %5.1f%% [%4.1f, %5.1f] |        | %6.2f |\n", name, "all", eps,
           eps ? 100.0 * tot.successes / eps : 0, 100 * tot.lo, 100 * tot.hi,
           eps ? tot.stalls / eps : 0);
}

int bench_kv_closed_loop(const bench_kv_loop_opts *o, cJSON *json_runs, vlad_err *err) {
    static loop_result res[2]; /* without, with language */
    const char *names[2] = {"no language", "with language"};
    for (int i = 0; i < 2; i++) {
        bench_run r = {.base = o->base, .model = o->model, .mode = "vlash",
                       .K = o->base->async.execution_horizon,
                       .threshold = o->base->async.trigger_threshold,
                       .margin = o->base->async.delay_margin, .wall = o->wall, .threads = 1,
                       .noise_scale = o->base->policy.noise_scale, .tasks = o->tasks,
                       .episodes = o->episodes, .seed = o->seed, .lang_streams = o->streams,
                       .lang_k = o->k, .lang_load = i == 1, .stats = &res[i].d};
        char dir[1100];
        snprintf(dir, sizeof dir, "%s/%s", o->workdir, i ? "lang" : "nolang");
        memset(&res[i], 0, sizeof res[i]);
        res[i].d.delay_mean_ticks = NAN;
        int64_t t0 = vlad_now_ns();
        int rc = bench_closed_loop(&r, dir, res[i].st, &res[i].n, err);
        res[i].seconds = (double)(vlad_now_ns() - t0) / 1e9;
        if (rc)
            return rc;
        if (!res[i].d.ok)
            return vlad_err_set(err, VLAD_EIO, "closed loop %s: no Status from the daemon (see %s)",
                                names[i], dir);
    }
    printf("\nclosed loop, %s clock: the default model driving vlad-sim (vlash), %d episodes per "
           "task, seed %u; the same run with one new question per frame (streams %d, k %d)\n",
           o->wall ? "wall" : "lockstep", o->episodes, o->seed, o->streams, o->k);
    printf("| run           | task   | eps  | success [95%% CI]      | compl s | stalls/ep |\n");
    printf("|---------------|--------|-----:|-----------------------|--------:|----------:|\n");
    for (int i = 0; i < 2; i++)
        print_run(names[i], &res[i]);
    printf("| run           | Δ mean (ticks) | inference p50 / p99 / max ms | stall ticks | "
           "prefills / frames | answers | tokens | tok/s | asks refused | preempted |\n");
    printf("|---------------|---------------:|-----------------------------:|------------:|"
           "------------------:|--------:|-------:|------:|-------------:|----------:|\n");
    for (int i = 0; i < 2; i++) {
        const bench_daemon_stats *d = &res[i].d;
        printf("| %-13s | %14.2f | %8.2f / %6.2f / %7.2f | %11llu | %8llu / %-7llu | %7llu | "
               "%6llu | %5.0f | %12llu | %9llu |\n",
               names[i], d->delay_mean_ticks, d->infer_p50_us / 1e3, d->infer_p99_us / 1e3,
               d->infer_max_us / 1e3, d->stall_ticks, d->prefills, d->frames, d->answers,
               d->lang_tokens, tokens_per_s(d),
               d->asks_refused, d->preempted);
    }
    if (res[0].d.infer_p99_us > 0)
        printf("action-inference p99 with language / without: %.3f\n",
               res[1].d.infer_p99_us / res[0].d.infer_p99_us);
    for (int i = 0; i < 2; i++)
        add_run(json_runs, names[i], &res[i], o);
    return VLAD_OK;
}
