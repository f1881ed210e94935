/* test_record — recording (daemon/record.h, `vlad --record DIR`) and replay (`vlad-replay`).
 *
 * In-process (the recorder alone):
 *   ring full: with the writer not running, taps that do not fit are dropped and counted, the
 *     tap returns at once; the file then holds the header and exactly the entries that fit,
 *     seq without gaps up to the first drop, and an entry larger than half the ring is dropped;
 *   write error: recording into /dev/full stops with "No space left on device", every later
 *     entry is counted as dropped, nothing blocks;
 *   images: record.images full keeps the pixels bit-exact; hash keeps none, but one digest per
 *     image (camera, shape, byte count, vlad_record_image_hash of the pixels).
 * With the real processes on loopback (ipc:// in a private folder):
 *   record and replay: vlad (configs/sim-arm.yaml, the default model, lockstep, --record DIR)
 *     drives a scripted robot (observations with camera images from here) for two episodes with
 *     an instruction, a question (language tokens) and a reset; the file parses, holds every
 *     entry kind, its times never go back, its observations are the ones the daemon counted;
 *     `vlad-replay --dump` prints one line per entry; `vlad-replay --spawn` replays it into a
 *     fresh lockstep daemon bit-identically (exit 0, max |delta| 0, no divergent tick) and with
 *     another noise seed finds the divergence (exit 1, the first divergent tick); --plot writes
 *     the PNGs (where gnuplot is installed); a Python reader parses the file (where
 *     python3-protobuf is installed and the Python package was built);
 *   write errors: vlad recording into /dev/full (record.file: ENOSPC), and into a FIFO whose
 *     reader goes away (EPIPE, after this client is subscribed): status names the error, one
 *     RECORD_ERROR event (at most one for /dev/full, which may fail before the subscription is
 *     live), and the daemon keeps answering every observation. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "client.h"
#include "harness.h"
#include "clock.h"
#include "proc.h"
#include "profile.h"
#include "record.h"

static char g_dir[64];
static pid_t g_pid = -1;

static void mk_dir(const char *prefix) {
    snprintf(g_dir, sizeof g_dir, "/tmp/%s-XXXXXX", prefix);
    assert_non_null(mkdtemp(g_dir));
}

static void rm_dir(void) {
    if (!g_dir[0])
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    g_dir[0] = 0;
}

static int teardown(void **state) {
    (void)state;
    if (g_pid > 0)
        vlad_proc_kill(g_pid);
    g_pid = -1;
    rm_dir();
    return 0;
}

static const char *k_small_profile =
    "robot: recbot\ncontrol_hz: 50\n"
    "joints:\n  - {name: a, min: -2, max: 2, max_velocity: 20}\n"
    "  - {name: b, min: -2, max: 2, max_velocity: 20}\n"
    "cameras:\n  - {name: cam, width: 4, height: 3}\n";

static void small_profile(vlad_profile *p, const char *images) {
    vlad_err err;
    if (vlad_profile_load_string(p, k_small_profile, strlen(k_small_profile), NULL, &err))
        fail_msg("%s", err.msg);
    if (images && vlad_profile_set(p, "record.images", images, &err))
        fail_msg("%s", err.msg);
}

/* a packed Action for tick t */
static size_t packed_action(int64_t t, uint8_t *buf, size_t cap) {
    Vlad__Action a = VLAD__ACTION__INIT;
    double tg[2] = {0.25 * (double)t, -1.0};
    a.robot = "recbot";
    a.tick = t;
    a.robot_tick = t;
    a.n_joint_targets = 2;
    a.joint_targets = tg;
    size_t n = vlad__action__get_packed_size(&a);
    assert_true(n <= cap);
    return vlad__action__pack(&a, buf);
}

/* read a whole file's entries (at most cap) */
static int read_all(const char *path, Vlad__RecordEntry **e, int cap, bool *truncated) {
    vlad_err err;
    vlad_rec_reader *rd = vlad_rec_reader_open(path, &err);
    if (!rd)
        fail_msg("%s", err.msg);
    int n = 0;
    for (;;) {
        Vlad__RecordEntry *x;
        if (vlad_rec_reader_next(rd, &x, &err))
            fail_msg("%s", err.msg);
        if (!x)
            break;
        assert_true(n < cap);
        e[n++] = x;
    }
    if (truncated)
        *truncated = vlad_rec_reader_truncated(rd);
    vlad_rec_reader_free(rd);
    return n;
}

static void free_all(Vlad__RecordEntry **e, int n) {
    for (int i = 0; i < n; i++)
        vlad__record_entry__free_unpacked(e[i], NULL);
}

static void test_ring_full_drops(void **state) {
    (void)state;
    static vlad_profile p;
    small_profile(&p, NULL);
    mk_dir("vlad-rec-unit");
    char path[128];
    snprintf(path, sizeof path, "%s/ring.vrec", g_dir);
    vlad_err err;
    vlad_record *r = vlad_record_new(&p, path, 4096, &err); /* the smallest ring; no writer */
    assert_non_null(r);
    uint8_t buf[256];
    const int offered = 200;
    for (int t = 0; t < offered; t++) { /* returns at once every time: nothing drains */
        size_t n = packed_action(t, buf, sizeof buf);
        vlad_record_tap(r, VLAD__RECORD_ENTRY__KIND__ACTION, buf, n, NULL);
    }
    static uint8_t big[3000]; /* larger than half the ring: never fits */
    vlad_record_tap(r, VLAD__RECORD_ENTRY__KIND__ACTION, big, sizeof big, NULL);
    vlad_record_stats st;
    vlad_record_stats_get(r, &st);
    assert_false(st.failed);
    assert_int_equal(st.entries, 0); /* not written yet */
    assert_true(st.dropped > 0 && st.dropped <= (uint64_t)offered + 1);
    uint64_t fit = (uint64_t)offered + 1 + 1 - st.dropped; /* + the header */
    printf("ring of 4 KiB: %llu of %d entries fit, %llu dropped\n", (unsigned long long)fit,
           offered + 2, (unsigned long long)st.dropped);
    vlad_record_free(r); /* never started: writes what was queued */
    static Vlad__RecordEntry *e[512];
    int n = read_all(path, e, 512, NULL);
    assert_int_equal((uint64_t)n, fit);
    assert_int_equal(e[0]->body_case, VLAD__RECORD_ENTRY__BODY_HEADER);
    assert_string_equal(e[0]->header->robot, "recbot");
    for (int i = 0; i < n; i++) {
        assert_int_equal(e[i]->seq, (uint64_t)i); /* the ring filled up, then everything dropped */
        assert_int_equal(e[i]->dropped, 0);
        if (i) {
            assert_int_equal(e[i]->kind, VLAD__RECORD_ENTRY__KIND__ACTION);
            assert_int_equal(e[i]->action->tick, i - 1);
            assert_true(e[i]->t_ns >= e[i - 1]->t_ns);
        }
    }
    free_all(e, n);
    rm_dir();
}

static void test_write_error_stops_recording(void **state) {
    (void)state;
    static vlad_profile p;
    small_profile(&p, NULL);
    vlad_err err;
    vlad_record *r = vlad_record_new(&p, "/dev/full", 1 << 16, &err);
    assert_non_null(r);
    assert_int_equal(vlad_record_start(r, &err), 0);
    uint8_t buf[256];
    int t = 0;
    /* the writer flushes at least every 100 ms: wait for its first write to fail */
    while (!vlad_record_failed(r)) {
        size_t n = packed_action(t++, buf, sizeof buf);
        vlad_record_tap(r, VLAD__RECORD_ENTRY__KIND__ACTION, buf, n, NULL);
        usleep(1000);
        assert_true(t < 100000);
    }
    vlad_record_stats st;
    vlad_record_stats_get(r, &st);
    assert_true(st.failed);
    assert_non_null(strstr(st.error, "No space left on device"));
    assert_non_null(strstr(st.error, "/dev/full"));
    assert_int_equal(st.entries, 0);
    for (int k = 0; k < 100; k++) { /* every later entry: dropped at once */
        size_t n = packed_action(t++, buf, sizeof buf);
        vlad_record_tap(r, VLAD__RECORD_ENTRY__KIND__ACTION, buf, n, NULL);
    }
    vlad_record_free(r);
    printf("/dev/full: %s\n", st.error);
}

static void tap_observation(vlad_record *r, uint8_t *px, size_t npx) {
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    Vlad__CameraImage ci = VLAD__CAMERA_IMAGE__INIT, *cis[1] = {&ci};
    double pos[2] = {0.5, -0.5};
    o.robot = "recbot";
    o.tick = 7;
    o.n_joint_pos = 2;
    o.joint_pos = pos;
    ci.name = "cam";
    ci.width = 4;
    ci.height = 3;
    ci.encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
    ci.data.data = px;
    ci.data.len = npx;
    o.n_images = 1;
    o.images = cis;
    uint8_t buf[512];
    size_t n = vlad__observation__pack(&o, buf);
    vlad_record_tap(r, VLAD__RECORD_ENTRY__KIND__OBSERVATION, buf, n, &o.base);
}

static void test_images_full_and_hash(void **state) {
    (void)state;
    static vlad_profile p;
    uint8_t px[36];
    for (int i = 0; i < 36; i++)
        px[i] = (uint8_t)(i * 7 + 1);
    mk_dir("vlad-rec-img");
    const char *modes[2] = {"full", "hash"};
    for (int m = 0; m < 2; m++) {
        small_profile(&p, modes[m]);
        char path[128];
        snprintf(path, sizeof path, "%s/%s.vrec", g_dir, modes[m]);
        vlad_err err;
        vlad_record *r = vlad_record_new(&p, path, 1 << 16, &err);
        assert_non_null(r);
        assert_int_equal(vlad_record_start(r, &err), 0);
        tap_observation(r, px, sizeof px);
        vlad_record_free(r);
        Vlad__RecordEntry *e[4];
        int n = read_all(path, e, 4, NULL);
        assert_int_equal(n, 2);
        assert_string_equal(e[0]->header->images, modes[m]);
        const Vlad__Observation *o = e[1]->observation;
        assert_non_null(o);
        assert_int_equal(o->tick, 7);
        assert_int_equal(o->n_images, 1);
        assert_string_equal(o->images[0]->name, "cam");
        assert_int_equal(o->images[0]->width, 4);
        if (m == 0) {
            assert_int_equal(o->images[0]->data.len, sizeof px);
            assert_memory_equal(o->images[0]->data.data, px, sizeof px);
            assert_int_equal(e[1]->n_image_digests, 0);
        } else {
            assert_int_equal(o->images[0]->data.len, 0);
            assert_int_equal(e[1]->n_image_digests, 1);
            const Vlad__ImageDigest *d = e[1]->image_digests[0];
            assert_string_equal(d->camera, "cam");
            assert_int_equal(d->width, 4);
            assert_int_equal(d->height, 3);
            assert_int_equal(d->bytes, sizeof px);
            assert_true(d->hash == vlad_record_image_hash(px, sizeof px));
            assert_true(d->hash != vlad_record_image_hash(px, sizeof px - 1));
        }
        free_all(e, n);
    }
    rm_dir();
}

/* ---- the real daemon ------------------------------------------------------------------ */

#define TICKS 90
#define RESET_AT 50
#define IMG (64 * 64 * 3)

static vh_sets g_sets;
static vlad_profile g_p;
static char g_prof[4200];

static void add_set(const char *key, const char *value) { vh_sets_add(&g_sets, key, value); }

/* the profile of the daemons here: sim-arm.yaml with the test's overrides */
static void load_profile(void) {
    snprintf(g_prof, sizeof g_prof, "%s/configs/sim-arm.yaml", vh_src_dir());
    vh_load_profile(&g_p, g_prof);
    vh_sets_apply(&g_sets, &g_p);
}

/* argv: prog, the given words, then --set for each of g_sets; NULL-terminated */
static int build_argv(char **argv, const char *prog, const char **words, int nwords) {
    int ac = 0;
    argv[ac++] = (char *)vlad_proc_bin(prog);
    for (int i = 0; i < nwords; i++)
        argv[ac++] = (char *)words[i];
    ac = vh_sets_args(&g_sets, (const char **)argv, ac);
    argv[ac] = NULL;
    return ac;
}

static vlad_client *wait_up(unsigned flags) {
    vlad_err err;
    vlad_client *c = vlad_client_new(&g_p, flags | VLAD_CLIENT_CONTROL, &err);
    assert_non_null(c);
    Vlad__Reply *rep = NULL;
    for (int i = 0; i < 300 && !rep; i++)
        if (vlad_client_status(c, 200, &rep, &err))
            assert_int_equal(vlad_proc_wait(g_pid, 0), -1); /* still running */
    assert_non_null(rep);
    vlad__reply__free_unpacked(rep, NULL);
    return c;
}

static Vlad__Reply *command(vlad_client *c, Vlad__Command *cmd) {
    Vlad__Reply *rep = NULL;
    vlad_err err;
    if (vlad_client_command(c, cmd, 5000, &rep, &err))
        fail_msg("command: %s", err.msg);
    return rep;
}

typedef struct robot {
    double pos[VLAD_MAX_JOINTS];
    uint8_t img[2][IMG];
    int lang_pieces, lang_done;
} robot;

static void on_msg(void *arg, vlad_msg *m) {
    robot *r = arg;
    if (m->kind == VLAD_MSG_LANG) {
        r->lang_pieces++;
        r->lang_done += m->u.lang->done;
    }
    vlad_msg_clear(m);
}

static void one_tick(vlad_client *c, robot *r, int64_t t, int img, vlad_msg_kind unused) {
    (void)unused;
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    Vlad__CameraImage ci = VLAD__CAMERA_IMAGE__INIT, *cis[1] = {&ci};
    ci.name = g_p.cameras[0].name;
    ci.width = ci.height = 64;
    ci.encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
    ci.data.data = r->img[img];
    ci.data.len = IMG;
    ci.tick = t;
    o.tick = t;
    o.stamp_ns = vlad_now_ns();
    o.n_joint_pos = (size_t)g_p.n_joints;
    o.joint_pos = r->pos;
    o.n_images = 1;
    o.images = cis;
    Vlad__Action *a;
    vlad_err err;
    if (vlad_client_lockstep(c, &o, 20000, 200, on_msg, r, &a, &err))
        fail_msg("tick %lld: %s", (long long)t, err.msg);
    for (int j = 0; j < g_p.n_joints; j++)
        r->pos[j] += 0.5 * (a->joint_targets[j] - r->pos[j]);
    vlad__action__free_unpacked(a, NULL);
}

static void make_images(robot *r) {
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) {
            uint8_t *a = r->img[0] + (y * 64 + x) * 3, *b = r->img[1] + (y * 64 + x) * 3;
            bool ball = (x - 20) * (x - 20) + (y - 40) * (y - 40) < 36;
            a[0] = ball ? 220 : 128, a[1] = ball ? 30 : 128, a[2] = ball ? 30 : 128;
            bool blk = x > 36 && x < 48 && y > 16 && y < 28;
            b[0] = blk ? 30 : 120, b[1] = blk ? 30 : 120, b[2] = blk ? 220 : 120;
        }
}

/* the one .vrec file in dir */
static void find_vrec(const char *dir, char *out, size_t cap) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int found = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 5 && !strcmp(de->d_name + n - 5, ".vrec")) {
            snprintf(out, cap, "%s/%s", dir, de->d_name);
            found++;
        }
    }
    closedir(d);
    assert_int_equal(found, 1);
}

static int run_prog(char **argv, const char *log, int timeout_ms) {
    pid_t pid = vlad_proc_start(argv, log);
    assert_true(pid > 0);
    int rc = vlad_proc_wait(pid, timeout_ms);
    if (rc < 0) {
        vlad_proc_kill(pid);
        fail_msg("%s did not finish", argv[0]);
    }
    return rc;
}

static void print_file(const char *path) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cat %s >&2", path);
    if (system(cmd) != 0)
        fprintf(stderr, "(no %s)\n", path);
}

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    return j;
}

static double jnum(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v))
        fail_msg("json: no number %s", key);
    return v->valuedouble;
}

/* replay `file` with vlad-replay --spawn (extra --set's in more); returns its exit status */
static int replay(const char *file, const char *json, const char *more_set, const char *plot_dir) {
    static int runs;
    char log[128];
    snprintf(log, sizeof log, "%s/replay-%d.log", g_dir, ++runs);
    const char *words[16];
    int nw = 0;
    words[nw++] = "--profile";
    words[nw++] = g_prof;
    words[nw++] = "--spawn";
    words[nw++] = "--json";
    words[nw++] = json;
    words[nw++] = "--timeout";
    words[nw++] = "20000";
    if (more_set) {
        words[nw++] = "--set";
        words[nw++] = more_set;
    }
    if (plot_dir) {
        words[nw++] = "--plot";
        words[nw++] = plot_dir;
    }
    words[nw++] = file;
    char *argv[64];
    build_argv(argv, "vlad-replay", words, nw);
    /* the file must come last: move it after the --set's */
    int ac = 0;
    while (argv[ac])
        ac++;
    char *f = argv[nw];
    memmove(&argv[nw], &argv[nw + 1], (size_t)(ac - nw - 1) * sizeof argv[0]);
    argv[ac - 1] = f;
    int rc = run_prog(argv, log, 300000);
    print_file(log);
    return rc;
}

static bool have_python_protobuf(char *pydir, size_t cap) {
    const char *bin = getenv("VLAD_BIN");
    snprintf(pydir, cap, "%s/../python", bin ? bin : "build/bin");
    char probe[600];
    snprintf(probe, sizeof probe, "%s/vlad/vlad_pb2.py", pydir);
    if (access(probe, R_OK))
        return false;
    return system("python3 -c 'import google.protobuf' >/dev/null 2>&1") == 0;
}

/* Another protobuf runtime (protoc's, C++) decodes one entry of each kind, split from the file
 * by its varint lengths: the hand-built entries are plain RecordEntry messages. */
static void protoc_check(const char *file) {
    if (system("command -v protoc >/dev/null 2>&1") != 0) {
        printf("protoc missing: the entries are not decoded by a second runtime\n");
        return;
    }
    const char *src = getenv("VLAD_SRC") ? getenv("VLAD_SRC") : ".";
    FILE *f = fopen(file, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)size);
    assert_non_null(d);
    assert_int_equal(fread(d, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    bool done[9] = {0};
    int decoded = 0;
    size_t pos = 0;
    while (pos < (size_t)size) {
        uint64_t len = 0;
        for (int shift = 0;; shift += 7) {
            assert_true(pos < (size_t)size);
            uint8_t b = d[pos++];
            len |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80))
                break;
        }
        assert_true(pos + len <= (size_t)size);
        Vlad__RecordEntry *e = vlad__record_entry__unpack(NULL, (size_t)len, d + pos);
        assert_non_null(e);
        int k = e->kind;
        vlad__record_entry__free_unpacked(e, NULL);
        if (k >= 1 && k <= 8 && !done[k]) {
            done[k] = true;
            char bin[160], txt[160], cmd[1200];
            snprintf(bin, sizeof bin, "%s/entry-%d.bin", g_dir, k);
            snprintf(txt, sizeof txt, "%s/entry-%d.txt", g_dir, k);
            FILE *o = fopen(bin, "wb");
            assert_non_null(o);
            assert_int_equal(fwrite(d + pos, 1, (size_t)len, o), (size_t)len);
            fclose(o);
            snprintf(cmd, sizeof cmd, "protoc -I%s/proto --decode=vlad.RecordEntry %s/proto/vlad.proto "
                     "< %s > %s", src, src, bin, txt);
            assert_int_equal(system(cmd), 0);
            FILE *t = fopen(txt, "r");
            assert_non_null(t);
            static char text[1 << 20];
            size_t n = fread(text, 1, sizeof text - 1, t);
            fclose(t);
            text[n] = 0;
            char want[64];
            snprintf(want, sizeof want, "kind: %s", vlad_record_kind_name(k));
            assert_non_null(strstr(text, want));
            decoded++;
        }
        pos += (size_t)len;
    }
    assert_int_equal(pos, (size_t)size);
    assert_int_equal(decoded, 8);
    free(d);
    printf("protoc decoded one entry of each of the 8 kinds\n");
}

static void test_record_and_replay(void **state) {
    (void)state;
#ifndef VLAD_RECORD_ENGINE
    skip(); /* vlad without the inference engine cannot run the default model */
#endif
    mk_dir("vlad-rec");
    char logp[128], recdir[128];
    snprintf(logp, sizeof logp, "%s/vlad.log", g_dir);
    snprintf(recdir, sizeof recdir, "%s/rec", g_dir);
    g_sets.n = 0;
    vh_sets_private(&g_sets, g_dir);
    add_set("lang.max_streams", "2");
    add_set("lang.tokens_per_frame", "2");
    add_set("clock", "lockstep");
    load_profile();
    const char *words[] = {"--profile", g_prof, "--record", recdir};
    char *argv[64];
    build_argv(argv, "vlad", words, 4);
    g_pid = vlad_proc_start(argv, logp);
    assert_true(g_pid > 0);
    vlad_client *c = wait_up(VLAD_CLIENT_ACTIONS | VLAD_CLIENT_LANG | VLAD_CLIENT_PUBLISH);
    static robot r;
    memset(&r, 0, sizeof r);
    make_images(&r);
    for (int j = 0; j < g_p.n_joints; j++)
        r.pos[j] = g_p.joints[j].home;

    Vlad__Command cmd = VLAD__COMMAND__INIT;
    Vlad__SetInstruction si = VLAD__SET_INSTRUCTION__INIT;
    si.text = "touch the red ball";
    cmd.body_case = VLAD__COMMAND__BODY_SET_INSTRUCTION;
    cmd.set_instruction = &si;
    Vlad__Reply *rep = command(c, &cmd);
    assert_true(rep->ok);
    vlad__reply__free_unpacked(rep, NULL);
    for (int64_t t = 0; t < TICKS; t++) {
        one_tick(c, &r, t, t < 30 ? 0 : 1, VLAD_MSG_NONE);
        if (t == 20) { /* a question: language tokens */
            Vlad__Command q = VLAD__COMMAND__INIT;
            Vlad__Ask ask = VLAD__ASK__INIT;
            ask.question = "which colour is the target?";
            q.body_case = VLAD__COMMAND__BODY_ASK;
            q.ask = &ask;
            rep = command(c, &q);
            assert_true(rep->ok);
            vlad__reply__free_unpacked(rep, NULL);
        }
        if (t == RESET_AT - 1) { /* a second episode */
            Vlad__Command rc = VLAD__COMMAND__INIT;
            Vlad__Reset rs = VLAD__RESET__INIT;
            rs.from_robot_tick = RESET_AT;
            rc.body_case = VLAD__COMMAND__BODY_RESET;
            rc.reset = &rs;
            rep = command(c, &rc);
            assert_true(rep->ok);
            vlad__reply__free_unpacked(rep, NULL);
            for (int j = 0; j < g_p.n_joints; j++)
                r.pos[j] = g_p.joints[j].home;
        }
    }
    /* the answer's last pieces (streams advance on frames, or a slice when idle) */
    for (int i = 0; i < 500 && !r.lang_done; i++) {
        vlad_msg m;
        vlad_err err;
        while (vlad_client_recv(c, 10, &m, &err) == VLAD_OK)
            on_msg(&r, &m);
    }
    assert_int_equal(r.lang_done, 1);
    vlad_client_status(c, 5000, &rep, &(vlad_err){0});
    assert_non_null(rep);
    const Vlad__Status *st = rep->status;
    uint64_t observations = st->observations_received;
    printf("recording %s: %llu entries so far, %llu dropped, %llu bytes, error '%s'\n",
           st->record_file, (unsigned long long)st->record_entries,
           (unsigned long long)st->record_dropped, (unsigned long long)st->record_bytes,
           st->record_error);
    assert_non_null(strstr(st->record_file, recdir));
    assert_string_equal(st->record_error, "");
    assert_int_equal(st->record_dropped, 0);
    assert_true(observations >= TICKS);
    vlad__reply__free_unpacked(rep, NULL);
    vlad_client_free(c);
    kill(g_pid, SIGTERM);
    assert_int_equal(vlad_proc_wait(g_pid, 20000), 0);
    g_pid = -1;

    /* the file: every kind, times in order, the observations the daemon counted */
    char file[300];
    find_vrec(recdir, file, sizeof file);
    vlad_err err;
    vlad_rec_reader *rd = vlad_rec_reader_open(file, &err);
    assert_non_null(rd);
    uint64_t kinds[9] = {0}, n = 0, obs_ticks_seen = 0;
    int64_t last_t = 0;
    bool seen_tick[TICKS] = {0}, seen_ask = false, seen_reset = false, seen_stopping = false;
    for (;;) {
        Vlad__RecordEntry *e;
        assert_int_equal(vlad_rec_reader_next(rd, &e, &err), 0);
        if (!e)
            break;
        if (n == 0) {
            assert_int_equal(e->body_case, VLAD__RECORD_ENTRY__BODY_HEADER);
            assert_string_equal(e->header->robot, "sim-arm");
            assert_string_equal(e->header->clock, "lockstep");
            assert_string_equal(e->header->images, "full");
            assert_int_equal(e->header->n_joints, (size_t)g_p.n_joints);
        }
        assert_int_equal(e->seq, n); /* nothing dropped */
        assert_true(e->t_ns >= last_t);
        assert_true(e->wall_ns > 0);
        last_t = e->t_ns;
        assert_true(e->kind >= 1 && e->kind <= 8);
        assert_int_equal((int)e->body_case, (int)e->kind + 9); /* the body matches the kind */
        kinds[e->kind]++;
        if (e->kind == VLAD__RECORD_ENTRY__KIND__OBSERVATION) {
            const Vlad__Observation *o = e->observation;
            assert_true(o->tick >= 0 && o->tick < TICKS);
            if (!seen_tick[o->tick])
                obs_ticks_seen++;
            seen_tick[o->tick] = true;
            assert_int_equal(o->n_images, 1);
            assert_memory_equal(o->images[0]->data.data, r.img[o->tick < 30 ? 0 : 1], IMG);
        }
        if (e->kind == VLAD__RECORD_ENTRY__KIND__COMMAND) {
            seen_ask |= e->command->body_case == VLAD__COMMAND__BODY_ASK;
            seen_reset |= e->command->body_case == VLAD__COMMAND__BODY_RESET;
        }
        if (e->kind == VLAD__RECORD_ENTRY__KIND__EVENT)
            seen_stopping |= e->event->kind == VLAD__EVENT__KIND__STOPPING;
        vlad__record_entry__free_unpacked(e, NULL);
        n++;
    }
    assert_false(vlad_rec_reader_truncated(rd));
    vlad_rec_reader_free(rd);
    printf("file %s: %llu entries:", file, (unsigned long long)n);
    for (int k = 1; k <= 8; k++) {
        printf(" %s %llu", vlad_record_kind_name(k), (unsigned long long)kinds[k]);
        assert_true(kinds[k] > 0);
    }
    printf("\n");
    assert_int_equal(kinds[VLAD__RECORD_ENTRY__KIND__HEADER], 1);
    assert_int_equal(kinds[VLAD__RECORD_ENTRY__KIND__OBSERVATION], observations);
    assert_int_equal(obs_ticks_seen, TICKS);
    assert_true(kinds[VLAD__RECORD_ENTRY__KIND__ACTION] >= TICKS);
    assert_true(seen_ask && seen_reset && seen_stopping); /* STOPPING: written after io ended */

    /* --dump: one line per entry (and a heading) */
    char dump_out[128];
    snprintf(dump_out, sizeof dump_out, "%s/dump.txt", g_dir);
    const char *dw[] = {"--dump", file};
    char *dargv[8];
    int sv = g_sets.n;
    g_sets.n = 0;
    build_argv(dargv, "vlad-replay", dw, 2);
    g_sets.n = sv;
    assert_int_equal(run_prog(dargv, dump_out, 60000), 0);
    FILE *f = fopen(dump_out, "r");
    assert_non_null(f);
    char line[1024];
    uint64_t lines = 0, obs_lines = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        obs_lines += strstr(line, " OBSERVATION ") != NULL;
    }
    fclose(f);
    assert_int_equal(lines, n + 1);
    assert_int_equal(obs_lines, observations);

    /* replay into a fresh lockstep daemon: bit-identical */
    char json[128], plots[128];
    snprintf(json, sizeof json, "%s/replay.json", g_dir);
    snprintf(plots, sizeof plots, "%s/plots", g_dir);
    bool gnuplot = system("command -v gnuplot >/dev/null 2>&1") == 0;
    int rc = replay(file, json, NULL, gnuplot ? plots : NULL);
    assert_int_equal(rc, 0);
    cJSON *j = read_json(json);
    printf("replay: %.0f steps, %.0f compared, max |delta| %g, first divergent tick %.0f\n",
           jnum(j, "steps"), jnum(j, "actions_compared"), jnum(j, "max_abs_diff"),
           jnum(j, "first_divergent_tick"));
    assert_int_equal((int)jnum(j, "steps"), TICKS);
    assert_int_equal((int)jnum(j, "actions_compared"), TICKS);
    assert_int_equal((int)jnum(j, "identical"), TICKS);
    assert_int_equal((int)jnum(j, "divergent"), 0);
    assert_true(jnum(j, "max_abs_diff") == 0.0);
    assert_int_equal((int)jnum(j, "first_divergent_tick"), -1);
    assert_int_equal((int)jnum(j, "sources_differing"), 0);
    assert_int_equal((int)jnum(j, "commands_replayed"), 3); /* instruction, ask, reset */
    assert_int_equal((int)jnum(j, "replies_differing"), 0);
    cJSON_Delete(j);
    if (gnuplot) {
        char png[160];
        struct stat sb;
        snprintf(png, sizeof png, "%s/joints.png", plots);
        assert_int_equal(stat(png, &sb), 0);
        assert_true(sb.st_size > 0);
        snprintf(png, sizeof png, "%s/latency.png", plots);
        assert_int_equal(stat(png, &sb), 0);
        assert_true(sb.st_size > 0);
    } else {
        printf("gnuplot not installed: --plot not tested\n");
    }

    /* another noise seed: the replay finds where it diverges */
    rc = replay(file, json, "policy.seed=12345", NULL);
    assert_int_equal(rc, 1);
    j = read_json(json);
    printf("replay with another seed: %.0f divergent, first at tick %.0f, max |delta| %g\n",
           jnum(j, "divergent"), jnum(j, "first_divergent_tick"), jnum(j, "max_abs_diff"));
    assert_true(jnum(j, "divergent") > 0);
    assert_true(jnum(j, "first_divergent_tick") >= 0);
    assert_true(jnum(j, "max_abs_diff") > 0);
    cJSON_Delete(j);

    protoc_check(file);
    /* any protobuf runtime reads it: Python's */
    char pydir[400];
    if (have_python_protobuf(pydir, sizeof pydir)) {
        char py[2000];
        snprintf(py, sizeof py,
                 "PYTHONPATH=%s python3 - %s %llu <<'EOF'\n"
                 "import sys\n"
                 "from google.protobuf.internal.decoder import _DecodeVarint32\n"
                 "from vlad import vlad_pb2\n"
                 "data = open(sys.argv[1], 'rb').read()\n"
                 "pos, n, kinds = 0, 0, set()\n"
                 "while pos < len(data):\n"
                 "    size, pos = _DecodeVarint32(data, pos)\n"
                 "    e = vlad_pb2.RecordEntry.FromString(data[pos:pos + size])\n"
                 "    pos += size\n"
                 "    kinds.add(e.WhichOneof('body'))\n"
                 "    n += 1\n"
                 "assert n == int(sys.argv[2]), (n, sys.argv[2])\n"
                 "assert len(kinds) == 8, kinds\n"
                 "print('python read', n, 'entries:', sorted(kinds))\n"
                 "EOF",
                 pydir, file, (unsigned long long)n);
        assert_int_equal(system(py), 0);
    } else {
        printf("python3-protobuf or the built Python package missing: the Python reader is not "
               "tested\n");
    }
    rm_dir();
}

static void count_record_errors(void *arg, vlad_msg *m) {
    int *events = arg;
    if (m->kind == VLAD_MSG_EVENT && m->u.event->kind == VLAD__EVENT__KIND__RECORD_ERROR) {
        (*events)++;
        assert_non_null(strstr(m->u.event->message, "recording stopped"));
    }
    vlad_msg_clear(m);
}

/* A write error in the real daemon (target: /dev/full, or a FIFO this test reads and then
 * closes: EPIPE at a moment the test chooses, after its subscription is live): the error in
 * status (`why` in it), at most one RECORD_ERROR event (exactly one for the FIFO, whose failure
 * comes after this client is subscribed), and the daemon answers every observation before and
 * after. */
static void write_error_run(bool fifo, const char *why) {
    mk_dir("vlad-rec-full");
    char path[128], logp[128], target[128];
    snprintf(path, sizeof path, "%s/p.yaml", g_dir);
    snprintf(logp, sizeof logp, "%s/vlad.log", g_dir);
    snprintf(target, sizeof target, fifo ? "%s/rec.fifo" : "/dev/full", g_dir);
    int rfd = -1;
    if (fifo) {
        assert_int_equal(mkfifo(target, 0600), 0);
        rfd = open(target, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* so the daemon's open finds a reader */
        assert_true(rfd >= 0);
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "robot: fullbot\ncontrol_hz: 50\nclock: lockstep\n"
            "joints:\n  - {name: a, min: -2, max: 2, max_velocity: 20}\n"
            "endpoints:\n  observations: ipc://%s/obs\n  actions: ipc://%s/act\n"
            "  control: ipc://%s/ctl\n"
            "policy: {synthetic: true}\nsafety: {estop_file: none}\n"
            "record: {file: %s}\n",
            g_dir, g_dir, g_dir, target);
    fclose(f);
    vlad_err err;
    if (vlad_profile_load(&g_p, path, &err))
        fail_msg("%s", err.msg);
    char *argv[] = {(char *)vlad_proc_bin("vlad"), "--profile", path, NULL};
    g_pid = vlad_proc_start(argv, logp);
    assert_true(g_pid > 0);
    vlad_client *c = wait_up(VLAD_CLIENT_ACTIONS | VLAD_CLIENT_EVENTS | VLAD_CLIENT_PUBLISH);
    double pos[1] = {0};
    int events = 0;
    size_t piped = 0;
    int64_t t = 0, failed_at = -1;
    for (; failed_at < 0 || t < failed_at + 30; t++) {
        Vlad__Observation o = VLAD__OBSERVATION__INIT;
        o.tick = t;
        o.n_joint_pos = 1;
        o.joint_pos = pos;
        Vlad__Action *a;
        if (vlad_client_lockstep(c, &o, 10000, 200, count_record_errors, &events, &a, &err))
            fail_msg("tick %lld: %s", (long long)t, err.msg);
        vlad__action__free_unpacked(a, NULL);
        vlad_msg m;
        while (vlad_client_recv(c, 0, &m, &err) == VLAD_OK)
            count_record_errors(&events, &m);
        if (rfd >= 0) { /* read what came, until tick 20 (answers received: subscribed), then go */
            char buf[4096];
            ssize_t n;
            while ((n = read(rfd, buf, sizeof buf)) > 0)
                piped += (size_t)n;
            if (t == 20) {
                close(rfd);
                rfd = -1;
            }
        }
        if (failed_at < 0 && t % 10 == 0) {
            Vlad__Reply *rep = NULL;
            assert_int_equal(vlad_client_status(c, 5000, &rep, &err), 0);
            if (rep->status->record_error[0]) {
                failed_at = t;
                printf("status at tick %lld: record_error '%s', %llu entries, %llu dropped\n",
                       (long long)t, rep->status->record_error,
                       (unsigned long long)rep->status->record_entries,
                       (unsigned long long)rep->status->record_dropped);
                assert_string_equal(rep->status->record_file, target);
                assert_non_null(strstr(rep->status->record_error, why));
            }
            vlad__reply__free_unpacked(rep, NULL);
        }
        assert_true(t < 100000);
    }
    /* the event may still be on its way */
    for (int i = 0; i < 100 && !events; i++) {
        vlad_msg m;
        if (vlad_client_recv(c, 10, &m, &err) == VLAD_OK)
            count_record_errors(&events, &m);
    }
    printf("%s: %d RECORD_ERROR event(s) seen", target, events);
    if (fifo)
        printf(", %zu bytes read from it before it closed", piped);
    printf("\n");
    assert_true(events <= 1);
    if (fifo) {
        assert_int_equal(events, 1);
        assert_true(piped > 0);
    }
    Vlad__Reply *rep = NULL;
    assert_int_equal(vlad_client_status(c, 5000, &rep, &err), 0);
    assert_true(rep->status->actions_published >= (uint64_t)t); /* each answered (+ resends) */
    assert_true(rep->status->record_dropped > 0);
    if (!fifo)
        assert_int_equal(rep->status->record_bytes, 0);
    vlad__reply__free_unpacked(rep, NULL);
    vlad_client_free(c);
    kill(g_pid, SIGTERM);
    assert_int_equal(vlad_proc_wait(g_pid, 10000), 0);
    g_pid = -1;
    rm_dir();
}

static void test_record_disk_full(void **state) {
    (void)state;
    write_error_run(false, "No space left on device");
}

static void test_record_reader_gone(void **state) {
    (void)state;
    write_error_run(true, "Broken pipe");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ring_full_drops, teardown),
        cmocka_unit_test_teardown(test_write_error_stops_recording, teardown),
        cmocka_unit_test_teardown(test_images_full_and_hash, teardown),
        cmocka_unit_test_teardown(test_record_disk_full, teardown),
        cmocka_unit_test_teardown(test_record_reader_gone, teardown),
        cmocka_unit_test_teardown(test_record_and_replay, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
