/* harness.c — see harness.h */
#include "harness.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "clock.h"
#include "keys.h"
#include "proc.h"

/* ---- folders and files ------------------------------------------------------------------ */

void vh_tmpdir(char *dir, size_t cap, const char *tag) {
    int n = snprintf(dir, cap, "/tmp/vlad-%s-XXXXXX", tag);
    assert_true(n > 0 && (size_t)n < cap);
    if (!mkdtemp(dir))
        fail_msg("mkdtemp %s failed", dir);
}

int vh_rmdir(char *dir) {
    if (!dir[0])
        return 0;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    int rc = system(cmd);
    dir[0] = 0;
    return rc ? -1 : 0;
}

int vh_finish_dir(char *dir, bool passed, const char *keep_log) {
    if (!dir[0])
        return 0;
    if (passed)
        return vh_rmdir(dir);
    fprintf(stderr, "# kept %s for inspection\n", dir);
    if (keep_log)
        vh_print_file(keep_log, 200);
    dir[0] = 0;
    return 0;
}

const char *vh_src_dir(void) {
    static char src[PATH_MAX];
    if (!realpath(getenv("VLAD_SRC") ? getenv("VLAD_SRC") : ".", src))
        fail_msg("cannot resolve the source folder");
    return src;
}

void vh_write_file(const char *path, const char *fmt, ...) {
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("cannot write %s", path);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0)
        fail_msg("writing %s failed", path);
}

void vh_load_profile(vlad_profile *p, const char *path) {
    vlad_err err;
    if (vlad_profile_load(p, path, &err))
        fail_msg("%s", err.msg);
}

void vh_sets_add(vh_sets *s, const char *key, const char *value) {
    if (s->n >= VH_SETS_MAX)
        fail_msg("vh_sets: more than %d overrides", VH_SETS_MAX);
    snprintf(s->kv[s->n++], sizeof s->kv[0], "%s=%s", key, value);
}

void vh_sets_apply(const vh_sets *s, vlad_profile *p) {
    vlad_sets l = {0};
    vlad_err err;
    for (int i = 0; i < s->n; i++)
        if (vlad_sets_add(&l, s->kv[i], &err))
            fail_msg("%s", err.msg);
    if (vlad_profile_apply_sets(p, &l, &err))
        fail_msg("%s", err.msg);
}

void vh_sets_private(vh_sets *s, const char *dir) {
    static const char *const keys[3] = {"endpoints.observations", "endpoints.actions",
                                        "endpoints.control"};
    static const char *const names[3] = {"obs", "act", "ctl"};
    char v[300];
    for (int i = 0; i < 3; i++) {
        snprintf(v, sizeof v, "ipc://%s/%s", dir, names[i]);
        vh_sets_add(s, keys[i], v);
    }
    vh_sets_add(s, "realtime", "false");
    snprintf(v, sizeof v, "%s/estop", dir);
    vh_sets_add(s, "safety.estop_file", v);
}

int vh_sets_args(const vh_sets *s, const char **args, int at) {
    for (int i = 0; i < s->n; i++) {
        args[at++] = "--set";
        args[at++] = s->kv[i];
    }
    return at;
}

char *vh_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (;;) { /* read to the end (a log may grow meanwhile; a FIFO has no size) */
        if (n + 1 >= cap) {
            cap *= 2;
            s = realloc(s, cap);
            assert_non_null(s);
        }
        size_t got = fread(s + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    s[n] = 0;
    if (len)
        *len = n;
    return s;
}

bool vh_file_has(const char *path, const char *needle) {
    char *s = vh_slurp(path, NULL);
    bool yes = s && strstr(s, needle);
    free(s);
    return yes;
}

void vh_print_file(const char *path, int max_lines) {
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    fprintf(stderr, "---- %s\n", path);
    int n = 0;
    while ((max_lines <= 0 || n < max_lines) && fgets(line, sizeof line, f)) {
        fputs(line, stderr);
        n += strchr(line, '\n') != NULL;
    }
    fclose(f);
}

void vh_free_ports(int *ports, int n) {
    for (int i = 0; i < n; i++) {
        bool dup;
        do {
            ports[i] = vlad_proc_free_port();
            dup = false;
            for (int k = 0; k < i; k++)
                dup |= ports[k] == ports[i];
        } while (ports[i] <= 0 || dup);
    }
}

void vh_gen_key(const char *base, const char *name, const char *rights, const char *install_dir) {
    unsigned r;
    assert_int_equal(vlad_rights_parse(rights, &r, NULL), 0);
    vlad_err err;
    if (vlad_cert_generate(base, name, r, &err))
        fail_msg("%s", err.msg);
    if (install_dir) {
        char cmd[2 * PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "cp '%s.key' '%s/'", base, install_dir);
        assert_int_equal(system(cmd), 0);
    }
}

/* ---- processes -------------------------------------------------------------------------- */

/* prog head[0..nhead) args... (args NULL-terminated, or NULL), output appended to log. */
static pid_t start_argv(const char *prog, const char *const *head, int nhead,
                        const char *const *args, const char *log) {
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)vlad_proc_bin(prog);
    for (int i = 0; i < nhead; i++)
        argv[n++] = (char *)head[i];
    for (int i = 0; args && args[i]; i++) {
        assert_true(n < 63);
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    pid_t pid = vlad_proc_start(argv, log);
    if (pid <= 0)
        fail_msg("cannot start %s", argv[0]);
    return pid;
}

pid_t vh_start(const char *prog, const char *profile, const char *log, const char *const *args) {
    const char *head[] = {"--profile", profile};
    return start_argv(prog, head, 2, args, log);
}

pid_t vh_start_serve(const char *ep, const char *model, const char *log, const char *const *extra) {
    const char *head[] = {"--bind", ep, "--model", model};
    return start_argv("vlad-serve", head, 4, extra, log);
}

void vh_alive(pid_t *pid, const char *what, const char *log, const char *when) {
    int rc = vlad_proc_wait(*pid, 0);
    if (rc < 0)
        return;
    *pid = -1;
    if (log)
        vh_print_file(log, 200);
    fail_msg("%s exited with %d %s (127: %s missing?)", what, rc, when, vlad_proc_bin(what));
}

int vh_stop(pid_t *pid, int timeout_ms) {
    if (*pid <= 0)
        return 0;
    kill(*pid, SIGTERM);
    int rc = vlad_proc_wait(*pid, timeout_ms);
    if (rc < 0)
        vlad_proc_kill(*pid);
    *pid = -1;
    return rc;
}

void vh_kill(pid_t *pid) {
    if (*pid > 0)
        vlad_proc_kill(*pid);
    *pid = -1;
}

/* ---- commands --------------------------------------------------------------------------- */

Vlad__Command *vh_command(vh_cmd *b, int body, const char *text) {
    vlad__command__init(&b->cmd);
    b->cmd.body_case = (Vlad__Command__BodyCase)body;
    switch (body) {
    case VLAD__COMMAND__BODY_RESET:
        vlad__reset__init(&b->reset);
        b->cmd.reset = &b->reset;
        break;
    case VLAD__COMMAND__BODY_ESTOP:
        vlad__estop__init(&b->estop);
        b->estop.reason = (char *)text;
        b->cmd.estop = &b->estop;
        break;
    case VLAD__COMMAND__BODY_RELEASE_ESTOP:
        vlad__release_estop__init(&b->release);
        b->cmd.release_estop = &b->release;
        break;
    case VLAD__COMMAND__BODY_SET_INSTRUCTION:
        vlad__set_instruction__init(&b->instruction);
        b->instruction.text = (char *)text;
        b->cmd.set_instruction = &b->instruction;
        break;
    default:
        fail_msg("vh_command: no body %d", body);
    }
    return &b->cmd;
}

/* ---- the daemon's Status ---------------------------------------------------------------- */

Vlad__Status *vh_status(vlad_client *c, int timeout_ms) {
    Vlad__Reply *rep = NULL;
    vlad_err err;
    int rc = vlad_client_status(c, timeout_ms, &rep, &err);
    if (rc || !rep || !rep->ok || !rep->status) {
        if (rep)
            vlad__reply__free_unpacked(rep, NULL);
        return NULL;
    }
    Vlad__Status *st = rep->status;
    rep->status = NULL;
    vlad__reply__free_unpacked(rep, NULL);
    return st;
}

Vlad__Status *vh_status_of(const vlad_profile *p, int timeout_ms) {
    vlad_err err;
    vlad_client *c = vlad_client_new(p, VLAD_CLIENT_CONTROL, &err);
    if (!c)
        fail_msg("%s", err.msg);
    Vlad__Status *st = vh_status(c, timeout_ms);
    vlad_client_free(c);
    return st;
}

Vlad__Status *vh_wait_status(vlad_client *c, int try_ms, int tries, pid_t *pid, const char *log) {
    for (int i = 0; i < tries; i++) {
        Vlad__Status *st = vh_status(c, try_ms);
        if (st)
            return st;
        if (pid)
            vh_alive(pid, "vlad", log, "before it answered a status request");
    }
    return NULL;
}

/* ---- what a subscriber received ---------------------------------------------------------- */

/* the first VLAD_MAX_JOINTS of n values (double or float) into q; n */
#define COPY_Q(q, v, n)                                                                     \
    do {                                                                                    \
        for (size_t j_ = 0; j_ < (n) && j_ < VLAD_MAX_JOINTS; j_++)                         \
            (q)[j_] = (double)(v)[j_];                                                     \
    } while (0)

bool vh_rec_of(vh_rec *r, const vlad_msg *m) {
    memset(r, 0, sizeof *r);
    r->kind = m->kind;
    r->t_ns = vlad_now_ns();
    if (m->kind == VLAD_MSG_ACTION) {
        const Vlad__Action *a = m->u.action;
        r->tick = a->tick;
        r->robot_tick = a->robot_tick;
        r->obs_tick = a->obs_tick;
        r->obs_robot_tick = a->obs_robot_tick;
        r->stamp_ns = a->stamp_ns;
        r->chunk_id = a->chunk_id;
        r->source = a->source;
        r->anchored = a->anchored;
        COPY_Q(r->q, a->joint_targets, a->n_joint_targets);
        r->n = (int)a->n_joint_targets;
    } else if (m->kind == VLAD_MSG_CHUNK) {
        const Vlad__ActionChunk *c = m->u.chunk;
        r->tick = c->start_tick;
        r->obs_tick = c->obs_tick;
        r->obs_robot_tick = c->obs_robot_tick;
        r->chunk_id = c->chunk_id;
        r->horizon = c->horizon;
        COPY_Q(r->q, c->conditioned_state, c->n_conditioned_state);
        r->n = (int)c->n_conditioned_state;
    } else if (m->kind == VLAD_MSG_EVENT) {
        r->tick = m->u.event->tick;
        r->ev = m->u.event->kind;
    } else {
        memset(r, 0, sizeof *r);
        return false;
    }
    return true;
}

/* ---- vlad-sim's files --------------------------------------------------------------------- */

static double json_num(const cJSON *o, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        fail_msg("%s: an episode without a number \"%s\"", path, key);
    return v->valuedouble;
}

void vh_read_sim_json(const char *path, vh_sim_json *out) {
    char *txt = vh_slurp(path, NULL);
    if (!txt)
        fail_msg("vlad-sim wrote no %s", path);
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    if (!root)
        fail_msg("%s is not JSON", path);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "episodes");
    if (!cJSON_IsArray(eps)) {
        cJSON_Delete(root);
        fail_msg("%s has no \"episodes\" array", path);
    }
    memset(out, 0, sizeof *out);
    const cJSON *e;
    cJSON_ArrayForEach(e, eps) {
        if (out->n >= VH_MAX_EPISODES)
            fail_msg("%s: more than %d episodes", path, VH_MAX_EPISODES);
        vh_episode *x = &out->ep[out->n++];
        x->first_tick = (int64_t)json_num(e, "first_tick", path);
        x->ticks = (int)json_num(e, "ticks", path);
        x->stall_ticks = (int)json_num(e, "stall_ticks", path);
        x->success = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "success"));
    }
    cJSON_Delete(root);
}

#define MAX_COLS (8 + 2 * VLAD_MAX_JOINTS)

/* split line (modified) at commas into f[]; the number of fields */
static int split(char *line, char **f, int max) {
    int n = 0;
    for (char *p = line;; p++) {
        if (n == max)
            return max + 1;
        f[n++] = p;
        p = strchr(p, ',');
        if (!p)
            return n;
        *p = 0;
    }
}

static int64_t field_int(const char *s, const char *path, int row) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end)
        fail_msg("%s row %d: '%s' is not a whole number", path, row, s);
    return v;
}

static double field_num(const char *s, const char *path, int row) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end)
        fail_msg("%s row %d: '%s' is not a number", path, row, s);
    return v;
}

bool vh_read_trajectory(const char *path, const vlad_profile *p, vh_traj *t) {
    t->n = 0;
    char *txt = vh_slurp(path, NULL);
    if (!txt)
        return false;
    char *nl = strchr(txt, '\n');
    if (!nl) {
        free(txt);
        return false;
    }
    *nl = 0;
    /* the columns, by name */
    enum { C_EPISODE, C_TICK, C_K, C_CHUNK, C_OBS_TICK, C_SOURCE, C_FIXED };
    static const char *const fixed[C_FIXED] = {"episode", "tick", "k", "chunk", "obs_tick", "source"};
    int col[C_FIXED], tcol[VLAD_MAX_JOINTS], pcol[VLAD_MAX_JOINTS];
    char *h[MAX_COLS + 1];
    int nh = split(txt, h, MAX_COLS);
    if (nh > MAX_COLS)
        fail_msg("%s: more than %d columns", path, MAX_COLS);
    for (int c = 0; c < C_FIXED; c++) {
        col[c] = -1;
        for (int i = 0; i < nh; i++)
            if (!strcmp(h[i], fixed[c]))
                col[c] = i;
        if (col[c] < 0)
            fail_msg("%s: no column '%s'", path, fixed[c]);
    }
    for (int j = 0; j < p->n_joints; j++) {
        char tn[VLAD_NAME_MAX + 8], pn[VLAD_NAME_MAX + 8];
        snprintf(tn, sizeof tn, "target_%s", p->joints[j].name);
        snprintf(pn, sizeof pn, "pos_%s", p->joints[j].name);
        tcol[j] = pcol[j] = -1;
        for (int i = 0; i < nh; i++) {
            if (!strcmp(h[i], tn))
                tcol[j] = i;
            if (!strcmp(h[i], pn))
                pcol[j] = i;
        }
        if (tcol[j] < 0 || pcol[j] < 0)
            fail_msg("%s: no columns '%s' and '%s'", path, tn, pn);
    }
    /* the complete rows */
    for (char *line = nl + 1; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = 0;
        char *f[MAX_COLS + 1];
        int nf = split(line, f, MAX_COLS);
        if (nf != nh)
            fail_msg("%s row %d: %d fields under a header of %d", path, t->n + 1, nf, nh);
        if (t->n == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 1024;
            t->rows = realloc(t->rows, (size_t)t->cap * sizeof t->rows[0]);
            assert_non_null(t->rows);
        }
        vh_row *r = &t->rows[t->n];
        memset(r, 0, sizeof *r);
        const int row = t->n + 1;
        r->episode = (int)field_int(f[col[C_EPISODE]], path, row);
        r->tick = field_int(f[col[C_TICK]], path, row);
        r->k = (int)field_int(f[col[C_K]], path, row);
        r->chunk = (uint64_t)field_int(f[col[C_CHUNK]], path, row);
        r->obs_tick = field_int(f[col[C_OBS_TICK]], path, row);
        r->source = (int)field_int(f[col[C_SOURCE]], path, row);
        for (int j = 0; j < p->n_joints; j++) {
            r->target[j] = field_num(f[tcol[j]], path, row);
            r->pos[j] = field_num(f[pcol[j]], path, row);
        }
        t->n++;
    }
    free(txt);
    return true;
}

void vh_traj_free(vh_traj *t) {
    free(t->rows);
    memset(t, 0, sizeof *t);
}

int vh_traj_row(const vh_traj *t, int64_t tick) {
    for (int i = 0; i < t->n; i++)
        if (t->rows[i].tick == tick)
            return i;
    return -1;
}

double vh_maxdiff(const double *a, const double *b, int n) {
    double d = 0;
    for (int j = 0; j < n; j++)
        d = fmax(d, fabs(a[j] - b[j]));
    return d;
}
