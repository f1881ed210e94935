/* vlad-bench soak — the daemon, the simulator and the default model in real time for a long
 * run: does anything drift?
 *
 *   vlad-bench soak [--minutes N] [--profile P] [--model M | --synthetic] [--task T]
 *                   [--seed S] [--interval S] [--warmup S] [--work DIR] [--json FILE] [--lang]
 *                   [--set KEY=VALUE]
 *
 * --lang adds the language load beside the robot: one new question per frame (each chunk the
 * daemon publishes), every answer read (bench_lang_load, closedloop.h); each sample then also
 * records the streams active, prefix blocks in use and prefills per frame, so slots, blocks
 * and RSS are seen to stay bounded under a request every frame.
 *
 * The daemon runs the profile as shipped (default configs/sim-arm-200hz.yaml: 200 Hz, the
 * default model, wall clock), with only its endpoints moved to ipc:// in the work folder and its
 * e-stop latch kept there too. vlad-sim drives it on the wall clock with episodes looping
 * (--episodes large; restarted with the next seed should it ever run out). Every --interval
 * seconds the bench asks the daemon for its status over the controller client library
 * (robot_io/client.h) and reads the daemon's resident set (VmRSS), thread count and open file
 * descriptors from /proc/<pid>/status and /proc/<pid>/fd; one table row per sample. At the end:
 * the sim is stopped, the daemon gets SIGTERM, and a summary (jitter p50/p99/max, stalls,
 * watchdog trips, overruns, RSS and fds at start, end and max with their drift, task success
 * from the sim's per-episode lines) is printed and written as JSON.
 *
 * "start" is the first sample at least --warmup seconds (default 30) after the sim started:
 * the model's pages, the allocator's arenas and ZeroMQ's buffers are all in use by then, so a
 * difference between start and end is growth, not warm-up. The jitter and the counters are the
 * daemon's own, over the whole run. The daemon's /proc/<pid>/smaps is copied into the work
 * folder at the start sample and at the end, and the mappings whose RSS changed are listed, so
 * a drift can be attributed (heap arena, stack, a new mapping). Exit status: 0, or 1 when the
 * daemon stopped answering, died, or did not exit 0 on SIGTERM. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "bench.h"
#include "client.h"
#include "closedloop.h"
#include "clock.h"
#include "proc.h"
#include "profile.h"

#define SOAK_MAX_SAMPLES 100000

/* p50 / p99 / max of one of the daemon's latency summaries (Status LatencyStats), in us */
typedef struct lat_us {
    double p50, p99, max;
} lat_us;

static void take_lat(lat_us *l, const Vlad__LatencyStats *st) {
    if (st)
        *l = (lat_us){st->p50_us, st->p99_us, st->max_us};
}

/* o[name] = {p50, p99[, max]} */
static void add_lat(cJSON *o, const char *name, const lat_us *l, bool with_max) {
    cJSON *j = cJSON_AddObjectToObject(o, name);
    cJSON_AddNumberToObject(j, "p50", l->p50);
    cJSON_AddNumberToObject(j, "p99", l->p99);
    if (with_max)
        cJSON_AddNumberToObject(j, "max", l->max);
}

typedef struct sample {
    double t_s;          /* since the sim started */
    long rss_kb, fds, threads;
    bool status_ok;
    int64_t tick;
    uint64_t episode, stall_ticks, watchdog_trips, overruns, chunks_installed, chunks_refused;
    uint64_t inference_errors, actions_published, observations;
    lat_us jitter, wake, infer; /* publish jitter; its wake-up part (control); inference */
    int mode;
    uint32_t lang_active, blocks_in_use, blocks;
    uint64_t prefills, frames, lang_tokens, lang_done, lang_refused;
} sample;

typedef struct ep_count {
    int n, successes, stall_ticks;
} ep_count;

static volatile sig_atomic_t g_interrupted;
static void on_signal(int sig) {
    (void)sig;
    g_interrupted = 1;
}

/* /proc/<pid>/status: VmRSS (kB) and Threads; -1 when unreadable */
static void proc_status(pid_t pid, long *rss_kb, long *threads) {
    char path[64], line[256];
    *rss_kb = *threads = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6))
            *rss_kb = strtol(line + 6, NULL, 10);
        else if (!strncmp(line, "Threads:", 8))
            *threads = strtol(line + 8, NULL, 10);
    }
    fclose(f);
}

/* entries of /proc/<pid>/fd; -1 when unreadable */
static long proc_fds(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* /proc/<pid>/smaps copied to `dst` (to attribute a drift to a mapping); false if it cannot */
static bool save_smaps(pid_t pid, const char *dst) {
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
    FILE *in = fopen(path, "r"), *out = in ? fopen(dst, "w") : NULL;
    size_t n;
    bool ok = in && out;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in)
        fclose(in);
    if (out && fclose(out))
        ok = false;
    return ok;
}

#define SMAPS_MAX 4096
typedef struct mapping {
    char name[160]; /* "start-end perms path" */
    long rss_kb;
} mapping;

static int read_smaps(const char *path, mapping *m, int cap) {
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char perms[8];
        int off = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &a, &b, perms, &off) >= 3 && off > 0 &&
            strchr(line, '-') < strchr(line, ' ')) {
            if (n == cap)
                break;
            char *nl = strchr(line + off, '\n');
            if (nl)
                *nl = 0;
            snprintf(m[n].name, sizeof m[n].name, "%lx-%lx %s %s", a, b, perms, line + off);
            m[n].rss_kb = 0;
            n++;
        } else if (n > 0 && !strncmp(line, "Rss:", 4)) {
            m[n - 1].rss_kb = strtol(line + 4, NULL, 10);
        }
    }
    fclose(f);
    return n;
}

/* Print the mappings whose resident size differs between two smaps copies (or that came or
 * went); returns how many. */
static int print_smaps_diff(const char *a_path, const char *b_path) {
    static mapping a[SMAPS_MAX], b[SMAPS_MAX];
    int na = read_smaps(a_path, a, SMAPS_MAX), nb = read_smaps(b_path, b, SMAPS_MAX), shown = 0;
    if (na < 0 || nb < 0)
        return -1;
    for (int i = 0; i < nb; i++) {
        long before = -1;
        for (int j = 0; j < na; j++)
            if (!strcmp(a[j].name, b[i].name)) {
                before = a[j].rss_kb;
                break;
            }
        if (before != b[i].rss_kb) {
            if (before < 0)
                printf("  new      %+7ld kB  %s\n", b[i].rss_kb, b[i].name);
            else
                printf("  changed  %+7ld kB  %s (%ld -> %ld kB)\n", b[i].rss_kb - before, b[i].name,
                       before, b[i].rss_kb);
            shown++;
        }
    }
    for (int j = 0; j < na; j++) {
        bool found = false;
        for (int i = 0; i < nb && !found; i++)
            found = !strcmp(a[j].name, b[i].name);
        if (!found) {
            printf("  gone     %+7ld kB  %s\n", -a[j].rss_kb, a[j].name);
            shown++;
        }
    }
    return shown;
}

/* The sim's profile: what vlad-sim reads (robot, rate, joints, cameras, endpoints, physics). */
static int write_sim_profile(const vlad_profile *b, const char *path, vlad_err *err) {
    char simmodel[PATH_MAX];
    if (!realpath(b->sim.model, simmodel))
        return vlad_err_set(err, VLAD_EIO, "sim model %s: %s", b->sim.model, strerror(errno));
    FILE *f = fopen(path, "w");
    if (!f)
        return vlad_err_set(err, VLAD_EIO, "cannot write %s", path);
    fprintf(f, "# generated by vlad-bench soak from %s (the simulator's side)\n", b->path);
    fprintf(f, "robot: %s\ncontrol_hz: %.17g\nclock: wall\njoints:\n", b->robot, b->control_hz);
    for (int j = 0; j < b->n_joints; j++)
        fprintf(f, "  - {name: %s, min: %.17g, max: %.17g, max_velocity: %.17g, home: %.17g}\n",
                b->joints[j].name, b->joints[j].min, b->joints[j].max, b->joints[j].max_velocity,
                b->joints[j].home);
    if (b->n_cameras) {
        fprintf(f, "cameras:\n");
        for (int c = 0; c < b->n_cameras; c++)
            fprintf(f, "  - {name: %s, width: %d, height: %d, rate_hz: %.17g}\n", b->cameras[c].name,
                    b->cameras[c].width, b->cameras[c].height, b->cameras[c].rate_hz);
    }
    fprintf(f, "endpoints:\n  observations: \"%s\"\n  actions: \"%s\"\n  control: \"%s\"\n",
            b->endpoints.observations, b->endpoints.actions, b->endpoints.control);
    fprintf(f, "safety:\n  watchdog_ms: %.17g\n  max_delta_per_tick: %.17g\n", b->safety.watchdog_ms,
            b->safety.max_delta_per_tick);
    fprintf(f, "sim:\n  model: \"%s\"\n  substeps: %d\n", simmodel, b->sim.substeps);
    return fclose(f) ? vlad_err_set(err, VLAD_EIO, "cannot write %s", path) : VLAD_OK;
}

/* One status round trip; false if the daemon did not answer. */
static bool take_status(vlad_client *c, sample *s) {
    Vlad__Reply *r = NULL;
    vlad_err err;
    if (vlad_client_status(c, 2000, &r, &err) != VLAD_OK || !r)
        return false;
    const Vlad__Status *st = r->status;
    if (st) {
        s->tick = st->tick;
        s->mode = (int)st->mode;
        s->episode = st->episode;
        s->stall_ticks = st->stall_ticks;
        s->watchdog_trips = st->watchdog_trips;
        s->overruns = st->overruns;
        s->chunks_installed = st->chunks_installed;
        s->chunks_refused = st->chunks_refused;
        s->inference_errors = st->inference_errors;
        s->actions_published = st->actions_published;
        s->observations = st->observations_received;
        take_lat(&s->jitter, st->jitter);
        take_lat(&s->wake, st->wake);
        take_lat(&s->infer, st->inference);
        s->lang_active = st->lang_streams_active;
        s->blocks_in_use = st->prefix_blocks_in_use;
        s->blocks = st->prefix_blocks;
        s->prefills = st->prefills;
        s->frames = st->frames;
        s->lang_tokens = st->lang_tokens;
        s->lang_done = st->lang_streams_done;
        s->lang_refused = st->lang_refused;
    }
    bool ok = st != NULL;
    vlad__reply__free_unpacked(r, NULL);
    return ok;
}

/* vlad-sim's per-episode lines: "  whack ep   3  success ticks  231  score 1.00  stalls   2 ..." */
static void count_episodes(const char *log_path, ep_count *e) {
    memset(e, 0, sizeof *e);
    FILE *f = fopen(log_path, "r");
    if (!f)
        return;
    char line[512], task[32], outcome[32];
    int ep, ticks, stalls;
    double score;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, " %31s ep %d %31s ticks %d score %lf stalls %d", task, &ep, outcome, &ticks,
                   &score, &stalls) == 6) {
            e->n++;
            e->successes += !strcmp(outcome, "success");
            e->stall_ticks += stalls;
        }
    }
    fclose(f);
}

static const char *mode_name(int m) {
    switch (m) {
    case VLAD__MODE__MODE_WAITING: return "waiting";
    case VLAD__MODE__MODE_RUNNING: return "running";
    case VLAD__MODE__MODE_STALE: return "stale";
    case VLAD__MODE__MODE_ESTOP: return "estop";
    default: return "?";
    }
}

static void print_header(void) {
    printf("| t (s) | tick | mode | episode | RSS (kB) | fds | threads | jitter p50 / p99 / max (us) "
           "| stalls | watchdog | overruns | chunks | inference p50 (us) |\n");
    printf("|------:|-----:|------|--------:|---------:|----:|--------:|----------------------------:"
           "|-------:|---------:|---------:|-------:|-------------------:|\n");
}

static void print_row(const sample *s) {
    if (!s->status_ok) {
        printf("| %5.0f | (no status reply) | | | %8ld | %3ld | %7ld | | | | | | |\n", s->t_s, s->rss_kb,
               s->fds, s->threads);
    } else {
        printf("| %5.0f | %lld | %s | %llu | %8ld | %3ld | %7ld | %.0f / %.0f / %.0f | %llu | %llu | "
               "%llu | %llu | %.0f |\n",
               s->t_s, (long long)s->tick, mode_name(s->mode), (unsigned long long)s->episode,
               s->rss_kb, s->fds, s->threads, s->jitter.p50, s->jitter.p99, s->jitter.max,
               (unsigned long long)s->stall_ticks, (unsigned long long)s->watchdog_trips,
               (unsigned long long)s->overruns, (unsigned long long)s->chunks_installed,
               s->infer.p50);
    }
    fflush(stdout);
}

static cJSON *sample_json(const sample *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "t_s", s->t_s);
    cJSON_AddNumberToObject(o, "rss_kb", (double)s->rss_kb);
    cJSON_AddNumberToObject(o, "fds", (double)s->fds);
    cJSON_AddNumberToObject(o, "threads", (double)s->threads);
    cJSON_AddBoolToObject(o, "status_ok", s->status_ok);
    if (s->status_ok) {
        cJSON_AddNumberToObject(o, "tick", (double)s->tick);
        cJSON_AddStringToObject(o, "mode", mode_name(s->mode));
        cJSON_AddNumberToObject(o, "episode", (double)s->episode);
        cJSON_AddNumberToObject(o, "jitter_p50_us", s->jitter.p50);
        cJSON_AddNumberToObject(o, "jitter_p99_us", s->jitter.p99);
        cJSON_AddNumberToObject(o, "jitter_max_us", s->jitter.max);
        cJSON_AddNumberToObject(o, "stall_ticks", (double)s->stall_ticks);
        cJSON_AddNumberToObject(o, "watchdog_trips", (double)s->watchdog_trips);
        cJSON_AddNumberToObject(o, "overruns", (double)s->overruns);
        cJSON_AddNumberToObject(o, "chunks_installed", (double)s->chunks_installed);
        cJSON_AddNumberToObject(o, "chunks_refused", (double)s->chunks_refused);
        cJSON_AddNumberToObject(o, "inference_errors", (double)s->inference_errors);
        cJSON_AddNumberToObject(o, "inference_p50_us", s->infer.p50);
        cJSON_AddNumberToObject(o, "inference_p99_us", s->infer.p99);
    }
    return o;
}

static cJSON *triple_json(long start, long end, long max) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "start", (double)start);
    cJSON_AddNumberToObject(o, "end", (double)end);
    cJSON_AddNumberToObject(o, "max", (double)max);
    cJSON_AddNumberToObject(o, "drift", (double)(end - start));
    return o;
}

static pid_t start_sim(const char *sim_profile, const char *task, int episodes, unsigned seed,
                       const char *log_path) {
    char eps[16], sd[16];
    snprintf(eps, sizeof eps, "%d", episodes);
    snprintf(sd, sizeof sd, "%u", seed);
    char *argv[] = {(char *)vlad_proc_bin("vlad-sim"), "--profile", (char *)sim_profile,
                    "--clock", "wall", "--task", (char *)task, "--episodes", eps, "--seed", sd,
                    "--expect-policy", NULL};
    return vlad_proc_start(argv, log_path);
}

int bench_soak_main(int argc, char **argv) {
    double minutes = 10, interval_s = 5, warmup_s = 30;
    const char *profile = "configs/sim-arm-200hz.yaml", *model = NULL, *task = "whack";
    const char *json = NULL, *work = NULL, *extra_set = NULL;
    int synthetic = 0, lang = 0;
    uint64_t seed64 = 1;
    const vlad_opt opts[] = {
        BENCH_DBL("minutes", &minutes, "N", "length of the run (fractions allowed)", 0.001, 1e6),
        BENCH_STR("profile", &profile, "P", "daemon profile"),
        BENCH_STR("model", &model, "M", "checkpoint instead of the profile's policy.model"),
        BENCH_FLAG("synthetic", &synthetic, "the daemon's synthetic policy instead of a model"),
        BENCH_STR("task", &task, "T", "vlad-sim task (one task: episodes loop on it)"),
        BENCH_U64("seed", &seed64, "S", "first episode seed", 0, 1e9),
        BENCH_DBL("interval", &interval_s, "S", "seconds between samples", 0.01, 3600),
        BENCH_DBL("warmup", &warmup_s, "S",
                  "the start figures are taken this long after the sim started", 0, 1e6),
        BENCH_STR("work", &work, "DIR",
                  "folder for the profile, sockets and logs (default /tmp/vlad-soak-PID)"),
        BENCH_STR("json", &json, "FILE", "write the samples and the summary as JSON"),
        BENCH_STR("set", &extra_set, "KEY=VALUE",
                  "one more override of the daemon's profile (for A/B runs, e.g. spin_us=0)"),
        BENCH_FLAG("lang", &lang, "a new question every frame beside the robot (needs a model)"),
        BENCH_OPT_END,
    };
    int status;
    if (!bench_opts("vlad-bench soak", "vlad-bench soak [options]", opts, argc, argv, &status))
        return status;
    const unsigned seed = (unsigned)seed64;
    if (synthetic && lang) {
        fprintf(stderr, "vlad-bench soak: --lang needs a model (the synthetic policy has no language)\n");
        return 2;
    }
    if (synthetic && model) {
        fprintf(stderr, "vlad-bench soak: --synthetic and --model exclude each other\n");
        return 2;
    }
    if (strchr(task, ',') || !strcmp(task, "all")) {
        fprintf(stderr, "vlad-bench soak: --task: one task (vlad-sim runs a task's episodes before "
                        "the next task's, so only the first would ever run)\n");
        return 2;
    }
    static vlad_profile p;
    if (bench_setup("vlad-bench soak", profile, &p))
        return 2;
    char model_abs[PATH_MAX] = "";
    if (model && !realpath(model, model_abs)) {
        fprintf(stderr, "vlad-bench soak: model %s: %s\n", model, strerror(errno));
        return 2;
    }

    char dir[PATH_MAX - 32];
    if (work)
        snprintf(dir, sizeof dir, "%s", work);
    else
        snprintf(dir, sizeof dir, "/tmp/vlad-soak-%d", (int)getpid());
    vlad_err err = {0};
    if (bench_mkdirs(dir, &err)) {
        fprintf(stderr, "vlad-bench soak: %s\n", err.msg);
        return 2;
    }
    char ep_obs[PATH_MAX], ep_act[PATH_MAX], ep_ctl[PATH_MAX], sim_profile[PATH_MAX];
    char vlog[PATH_MAX], slog[PATH_MAX], estop[PATH_MAX], smaps_start[PATH_MAX], smaps_end[PATH_MAX];
    bool smaps_start_saved = false, smaps_end_saved = false;
    snprintf(ep_obs, sizeof ep_obs, "ipc://%s/obs", dir);
    snprintf(ep_act, sizeof ep_act, "ipc://%s/act", dir);
    snprintf(ep_ctl, sizeof ep_ctl, "ipc://%s/ctl", dir);
    snprintf(sim_profile, sizeof sim_profile, "%s/sim.yaml", dir);
    snprintf(vlog, sizeof vlog, "%s/vlad.log", dir);
    snprintf(slog, sizeof slog, "%s/sim.log", dir);
    snprintf(estop, sizeof estop, "%s/estop", dir);
    snprintf(smaps_start, sizeof smaps_start, "%s/smaps-start.txt", dir);
    snprintf(smaps_end, sizeof smaps_end, "%s/smaps-end.txt", dir);
    unlink(vlog);
    unlink(slog);
    unlink(estop);
    if (vlad_profile_set(&p, "endpoints.observations", ep_obs, &err) ||
        vlad_profile_set(&p, "endpoints.actions", ep_act, &err) ||
        vlad_profile_set(&p, "endpoints.control", ep_ctl, &err) ||
        write_sim_profile(&p, sim_profile, &err)) {
        fprintf(stderr, "vlad-bench soak: %s\n", err.msg);
        return 2;
    }

    /* the daemon: the profile as shipped, endpoints and latch moved into the work folder */
    char set_obs[PATH_MAX + 32], set_act[PATH_MAX + 32], set_ctl[PATH_MAX + 32], set_estop[PATH_MAX + 32];
    char set_model[PATH_MAX + 32];
    snprintf(set_obs, sizeof set_obs, "endpoints.observations=%s", ep_obs);
    snprintf(set_act, sizeof set_act, "endpoints.actions=%s", ep_act);
    snprintf(set_ctl, sizeof set_ctl, "endpoints.control=%s", ep_ctl);
    snprintf(set_estop, sizeof set_estop, "safety.estop_file=%s", estop);
    char *dargv[24];
    int n = 0;
    dargv[n++] = (char *)vlad_proc_bin("vlad");
    dargv[n++] = "--profile", dargv[n++] = (char *)profile;
    dargv[n++] = "--set", dargv[n++] = set_obs;
    dargv[n++] = "--set", dargv[n++] = set_act;
    dargv[n++] = "--set", dargv[n++] = set_ctl;
    dargv[n++] = "--set", dargv[n++] = set_estop;
    if (model) {
        snprintf(set_model, sizeof set_model, "policy.model=%s", model_abs);
        dargv[n++] = "--set", dargv[n++] = set_model;
    } else if (synthetic) {
        dargv[n++] = "--set", dargv[n++] = "policy.synthetic=true";
        dargv[n++] = "--set", dargv[n++] = "policy.model=";
    }
    if (extra_set)
        dargv[n++] = "--set", dargv[n++] = (char *)extra_set;
    dargv[n] = NULL;

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    int rc = 0;
    pid_t daemon = -1, sim = -1;
    vlad_client *cl = NULL;
    sample *smp = calloc(SOAK_MAX_SAMPLES, sizeof *smp);
    int ns = 0;
    const char *policy_desc = model ? model_abs : synthetic ? "synthetic" : p.policy.model;
    if (!smp) {
        fprintf(stderr, "vlad-bench soak: out of memory\n");
        rc = 1;
        goto out;
    }
    daemon = vlad_proc_start(dargv, vlog);
    if (daemon < 0) {
        fprintf(stderr, "vlad-bench soak: cannot start %s\n", dargv[0]);
        rc = 1;
        goto out;
    }
    cl = vlad_client_new(&p, VLAD_CLIENT_CONTROL, &err);
    if (!cl) {
        fprintf(stderr, "vlad-bench soak: client: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    /* up: the daemon answers status (it loads the model and runs a warm-up inference first) */
    sample s0 = {0};
    bool up = false;
    for (int k = 0; k < 30 && !up && !g_interrupted; k++) {
        if (vlad_proc_wait(daemon, 0) >= 0) {
            daemon = -1;
            break;
        }
        up = take_status(cl, &s0);
    }
    if (!up) {
        fprintf(stderr, "vlad-bench soak: the daemon did not answer status (see %s)\n", vlog);
        rc = 1;
        goto out;
    }
    long launch_rss, launch_threads, launch_fds = proc_fds(daemon);
    proc_status(daemon, &launch_rss, &launch_threads);

    /* about one episode a second at most: more than the run can use (a restart covers the rest) */
    int sim_episodes = (int)fmin(1e6, ceil(minutes * 60.0) + 100);
    unsigned sim_seed = seed;
    int sim_runs = 1;
    sim = start_sim(sim_profile, task, sim_episodes, sim_seed, slog);
    if (sim < 0) {
        fprintf(stderr, "vlad-bench soak: cannot start vlad-sim\n");
        rc = 1;
        goto out;
    }
    static bench_daemon_stats lang_st;
    bench_lang_load *load = NULL;
    if (lang && !(load = bench_lang_load_start(&p, &lang_st, true))) {
        fprintf(stderr, "vlad-bench soak: cannot start the language load\n");
        rc = 1;
        goto out;
    }
    printf("vlad-bench soak: %s, %g Hz, policy %s, async %s K=%d, task %s, %.1f min, wall clock%s\n",
           profile, p.control_hz, policy_desc[0] ? policy_desc : "(none)",
           vlad_async_mode_name(p.async.mode), p.async.execution_horizon, task, minutes,
           lang ? ", a new question every frame" : "");
    printf("daemon pid %d at launch (before the sim): RSS %ld kB, %ld fds, %ld threads; work %s\n\n",
           (int)daemon, launch_rss, launch_fds, launch_threads, dir);
    print_header();

    const int64_t t0 = vlad_now_ns(), end_ns = t0 + (int64_t)(minutes * 60e9);
    const int64_t step = (int64_t)(interval_s * 1e9);
    int64_t next = t0 + step;
    int status_failures = 0;
    bool daemon_died = false;
    for (;;) {
        while (vlad_now_ns() < next && !g_interrupted) {
            int64_t until = vlad_now_ns() + 200 * VLAD_NS_PER_MS;
            vlad_sleep_until_ns(until < next ? until : next);
            if (sim > 0) { /* the sim ran out of episodes (or failed): note it, start the next */
                int st = vlad_proc_wait(sim, 0);
                if (st >= 0) {
                    sim = -1;
                    if (st != 0) {
                        fprintf(stderr, "vlad-bench soak: vlad-sim exited %d (see %s)\n", st, slog);
                        rc = 1;
                        goto stop;
                    }
                    sim = start_sim(sim_profile, task, sim_episodes, ++sim_seed, slog);
                    sim_runs++;
                }
            }
        }
        if (g_interrupted)
            break;
        sample *s = &smp[ns];
        memset(s, 0, sizeof *s);
        s->t_s = (double)(vlad_now_ns() - t0) / 1e9;
        if (vlad_proc_wait(daemon, 0) >= 0) {
            daemon = -1;
            daemon_died = true;
            fprintf(stderr, "vlad-bench soak: the daemon died at %.0f s (see %s)\n", s->t_s, vlog);
            rc = 1;
            break;
        }
        s->status_ok = take_status(cl, s);
        status_failures += !s->status_ok;
        proc_status(daemon, &s->rss_kb, &s->threads);
        s->fds = proc_fds(daemon);
        print_row(s);
        if (!smaps_start_saved && s->t_s >= warmup_s)
            smaps_start_saved = save_smaps(daemon, smaps_start);
        if (ns < SOAK_MAX_SAMPLES - 1)
            ns++;
        if (next >= end_ns)
            break;
        next += step;
        if (next > end_ns)
            next = end_ns;
    }
stop:;
    bench_lang_load_stop(load);
    load = NULL;
    if (daemon > 0 && smaps_start_saved)
        smaps_end_saved = save_smaps(daemon, smaps_end);
    /* stop the robot first (the daemon then sees it go quiet: that is not part of the run) */
    if (sim > 0) {
        kill(sim, SIGTERM);
        if (vlad_proc_wait(sim, 5000) < 0)
            vlad_proc_kill(sim);
        sim = -1;
    }
    int daemon_exit = -1;
    if (daemon > 0) {
        kill(daemon, SIGTERM);
        daemon_exit = vlad_proc_wait(daemon, 10000);
        if (daemon_exit < 0)
            vlad_proc_kill(daemon);
        daemon = -1;
    }
    if (daemon_exit != 0)
        rc = 1;
    if (status_failures)
        rc = 1;

    /* summary: start = first sample after the warm-up (else the first one), end = the last */
    ep_count eps;
    count_episodes(slog, &eps);
    const sample *first = NULL, *last = NULL, *fin = NULL;
    long rss_max = 0, fds_max = 0, thr_max = 0;
    for (int i = 0; i < ns; i++) {
        if (!first && smp[i].t_s >= warmup_s)
            first = &smp[i];
        last = &smp[i];
        if (smp[i].status_ok)
            fin = &smp[i];
        rss_max = smp[i].rss_kb > rss_max ? smp[i].rss_kb : rss_max;
        fds_max = smp[i].fds > fds_max ? smp[i].fds : fds_max;
        thr_max = smp[i].threads > thr_max ? smp[i].threads : thr_max;
    }
    if (!first && ns)
        first = &smp[0];
    printf("\n");
    if (!first || !fin) {
        printf("vlad-bench soak: no samples\n");
        rc = 1;
        goto out;
    }
    double run_s = last->t_s;
    printf("| measure | value |\n|---|---:|\n");
    printf("| run | %.1f min, %d samples, %d status replies missing, sim runs %d |\n", run_s / 60, ns,
           status_failures, sim_runs);
    printf("| ticks / actions published / observations | %lld / %llu / %llu |\n", (long long)fin->tick,
           (unsigned long long)fin->actions_published, (unsigned long long)fin->observations);
    printf("| publish jitter p50 / p99 / max | %.0f / %.0f / %.0f us |\n", fin->jitter.p50,
           fin->jitter.p99, fin->jitter.max);
    printf("| of it, the control thread's wake-up p50 / p99 / max | %.0f / %.0f / %.0f us |\n",
           fin->wake.p50, fin->wake.p99, fin->wake.max);
    printf("| inference p50 / p99 | %.0f / %.0f us |\n", fin->infer.p50, fin->infer.p99);
    printf("| stall ticks (daemon: no fresh action) | %llu (%.3f%% of ticks) |\n",
           (unsigned long long)fin->stall_ticks,
           fin->tick > 0 ? 100.0 * (double)fin->stall_ticks / (double)fin->tick : 0.0);
    printf("| stall ticks (sim: non-policy actions, finished episodes) | %d |\n", eps.stall_ticks);
    printf("| watchdog trips | %llu |\n", (unsigned long long)fin->watchdog_trips);
    printf("| overruns | %llu |\n", (unsigned long long)fin->overruns);
    printf("| chunks installed / refused, inference errors | %llu / %llu, %llu |\n",
           (unsigned long long)fin->chunks_installed, (unsigned long long)fin->chunks_refused,
           (unsigned long long)fin->inference_errors);
    printf("| RSS at %.0f s / end / max (kB) | %ld / %ld / %ld (drift %+ld kB; at launch %ld) |\n",
           first->t_s, first->rss_kb, last->rss_kb, rss_max, last->rss_kb - first->rss_kb, launch_rss);
    printf("| open fds at %.0f s / end / max | %ld / %ld / %ld (drift %+ld; at launch %ld) |\n",
           first->t_s, first->fds, last->fds, fds_max, last->fds - first->fds, launch_fds);
    printf("| threads at %.0f s / end / max | %ld / %ld / %ld |\n", first->t_s, first->threads,
           last->threads, thr_max);
    printf("| episodes (%s): finished / successful | %d / %d = %.1f%% |\n", task, eps.n, eps.successes,
           eps.n ? 100.0 * eps.successes / eps.n : 0.0);
    if (lang) {
        uint32_t act_max = 0, blk_max = 0;
        for (int i = 0; i < ns; i++) {
            act_max = smp[i].lang_active > act_max ? smp[i].lang_active : act_max;
            blk_max = smp[i].blocks_in_use > blk_max ? smp[i].blocks_in_use : blk_max;
        }
        printf("| language: asks / refused (no slot) / answers read | %llu / %llu / %llu |\n",
               lang_st.asks, lang_st.asks_refused, lang_st.answers);
        printf("| language: tokens, tokens/s | %llu, %.0f |\n", (unsigned long long)fin->lang_tokens,
               lang_st.lang_seconds > 0 ? (double)fin->lang_tokens / lang_st.lang_seconds : 0.0);
        printf("| language: streams active max / slots; prefix blocks in use max / allocated | "
               "%u / %u; %u / %u |\n", act_max, p.lang.max_streams, blk_max, fin->blocks);
        printf("| prefills / frames | %llu / %llu |\n", (unsigned long long)fin->prefills,
               (unsigned long long)fin->frames);
    }
    printf("| daemon exit after SIGTERM | %d%s |\n", daemon_exit, daemon_died ? " (died during the run)" : "");
    if (smaps_end_saved) {
        printf("\nthe daemon's mappings whose RSS changed from %.0f s to the end (%s, %s):\n",
               first->t_s, smaps_start, smaps_end);
        if (print_smaps_diff(smaps_start, smaps_end) == 0)
            printf("  none\n");
    }

    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "profile", profile);
        cJSON_AddStringToObject(o, "profile_override", extra_set ? extra_set : "");
        cJSON_AddNumberToObject(o, "control_hz", p.control_hz);
        cJSON_AddStringToObject(o, "policy", policy_desc);
        cJSON_AddStringToObject(o, "async_mode", vlad_async_mode_name(p.async.mode));
        cJSON_AddNumberToObject(o, "execution_horizon", p.async.execution_horizon);
        cJSON_AddStringToObject(o, "task", task);
        cJSON_AddNumberToObject(o, "minutes", run_s / 60);
        cJSON_AddNumberToObject(o, "interval_s", interval_s);
        cJSON_AddNumberToObject(o, "warmup_s", warmup_s);
        cJSON_AddNumberToObject(o, "start_t_s", first->t_s);
        cJSON_AddNumberToObject(o, "samples_missing_status", status_failures);
        cJSON_AddNumberToObject(o, "sim_runs", sim_runs);
        cJSON_AddNumberToObject(o, "ticks", (double)fin->tick);
        cJSON_AddNumberToObject(o, "actions_published", (double)fin->actions_published);
        cJSON_AddNumberToObject(o, "observations", (double)fin->observations);
        add_lat(o, "jitter_us", &fin->jitter, true);
        add_lat(o, "wake_us", &fin->wake, true);
        add_lat(o, "inference_us", &fin->infer, false);
        cJSON_AddNumberToObject(o, "stall_ticks", (double)fin->stall_ticks);
        cJSON_AddNumberToObject(o, "sim_stall_ticks", eps.stall_ticks);
        cJSON_AddNumberToObject(o, "watchdog_trips", (double)fin->watchdog_trips);
        cJSON_AddNumberToObject(o, "overruns", (double)fin->overruns);
        cJSON_AddNumberToObject(o, "chunks_installed", (double)fin->chunks_installed);
        cJSON_AddNumberToObject(o, "chunks_refused", (double)fin->chunks_refused);
        cJSON_AddNumberToObject(o, "inference_errors", (double)fin->inference_errors);
        cJSON_AddItemToObject(o, "rss_kb", triple_json(first->rss_kb, last->rss_kb, rss_max));
        cJSON_AddItemToObject(o, "fds", triple_json(first->fds, last->fds, fds_max));
        cJSON_AddItemToObject(o, "threads", triple_json(first->threads, last->threads, thr_max));
        cJSON *l = cJSON_AddObjectToObject(o, "at_launch");
        cJSON_AddNumberToObject(l, "rss_kb", (double)launch_rss);
        cJSON_AddNumberToObject(l, "fds", (double)launch_fds);
        cJSON_AddNumberToObject(l, "threads", (double)launch_threads);
        cJSON *e = cJSON_AddObjectToObject(o, "episodes");
        cJSON_AddNumberToObject(e, "finished", eps.n);
        cJSON_AddNumberToObject(e, "successes", eps.successes);
        cJSON_AddNumberToObject(e, "success", eps.n ? (double)eps.successes / eps.n : 0.0);
        if (lang) {
            cJSON *lj = cJSON_AddObjectToObject(o, "language");
            uint32_t act_max = 0, blk_max = 0;
            for (int i = 0; i < ns; i++) {
                act_max = smp[i].lang_active > act_max ? smp[i].lang_active : act_max;
                blk_max = smp[i].blocks_in_use > blk_max ? smp[i].blocks_in_use : blk_max;
            }
            cJSON_AddNumberToObject(lj, "asks", (double)lang_st.asks);
            cJSON_AddNumberToObject(lj, "asks_refused", (double)lang_st.asks_refused);
            cJSON_AddNumberToObject(lj, "answers", (double)lang_st.answers);
            cJSON_AddNumberToObject(lj, "tokens", (double)fin->lang_tokens);
            cJSON_AddNumberToObject(lj, "streams_active_max", act_max);
            cJSON_AddNumberToObject(lj, "slots", p.lang.max_streams);
            cJSON_AddNumberToObject(lj, "prefix_blocks_in_use_max", blk_max);
            cJSON_AddNumberToObject(lj, "prefix_blocks", fin->blocks);
            cJSON_AddNumberToObject(lj, "prefills", (double)fin->prefills);
            cJSON_AddNumberToObject(lj, "frames", (double)fin->frames);
        }
        cJSON_AddNumberToObject(o, "daemon_exit", daemon_exit);
        cJSON_AddStringToObject(o, "work_dir", dir);
        if (smaps_end_saved) {
            cJSON_AddStringToObject(o, "smaps_start", smaps_start);
            cJSON_AddStringToObject(o, "smaps_end", smaps_end);
        }
        cJSON_AddBoolToObject(o, "daemon_died", daemon_died);
        cJSON *arr = cJSON_AddArrayToObject(o, "samples");
        for (int i = 0; i < ns; i++)
            cJSON_AddItemToArray(arr, sample_json(&smp[i]));
        bench_write_json(json, o);
    }

out:
    vlad_client_free(cl);
    if (sim > 0) {
        kill(sim, SIGTERM);
        if (vlad_proc_wait(sim, 5000) < 0)
            vlad_proc_kill(sim);
    }
    if (daemon > 0) {
        kill(daemon, SIGTERM);
        if (vlad_proc_wait(daemon, 10000) < 0)
            vlad_proc_kill(daemon);
    }
    free(smp);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (g_interrupted)
        fprintf(stderr, "vlad-bench soak: interrupted\n");
    return rc;
}
