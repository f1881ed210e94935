/* Files named by configuration or the command line are refused when they should be, and never
 * hang the caller: vlad_open_regular (path.h) on every kind of file, the safetensors reader and
 * the profile loader on a FIFO and on a device, the non-finite scan of tensors, and the
 * profile loader's bounds (nesting depth, one document, anchors, 1 MiB).
 *
 * A regression that blocks (open() of a FIFO waits for a writer; libyaml's time grows with the
 * square of the nesting depth) would hang this process instead of failing it, so each such
 * step runs under a SIGALRM guard: not a timing assertion (the steps take microseconds; the
 * guard is a minute), a way to turn a hang into a failure that names the step. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "err.h"
#include "path.h"
#include "profile.h"
#include "safetensors.h"

/* ---- hang guard ------------------------------------------------------------------------- */

static const char *volatile g_step = "";

static void on_alarm(int sig) {
    (void)sig;
    static const char a[] = "test_files: HUNG (no answer within the guard) in: ";
    ssize_t w = write(2, a, sizeof a - 1);
    w = write(2, g_step, strlen(g_step));
    w = write(2, "\n", 1);
    (void)w;
    _exit(1);
}

static void guard(const char *step) {
    g_step = step;
    signal(SIGALRM, on_alarm);
    alarm(60);
}
static void unguard(void) { alarm(0); }

/* ---- temp dir ----------------------------------------------------------------------------- */

static char g_dir[64];

static const char *in_dir(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", g_dir, name);
    return buf;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/vlad-files-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

#define assert_msg_has(msg, needle)                                                            \
    do {                                                                                       \
        if (!strstr((msg), (needle)))                                                          \
            fail_msg("message '%s' lacks '%s'", (msg), (needle));                              \
    } while (0)

/* ---- vlad_open_regular ------------------------------------------------------------------ */

static void expect_refused(const char *path, int flags, const char *kind) {
    vlad_err e = {0};
    char want[600];
    guard(path);
    int fd = vlad_open_regular(path, flags, 0644, &e);
    unguard();
    if (fd >= 0) {
        close(fd);
        fail_msg("%s (flags %#x) was opened; wanted it refused as %s", path, flags, kind);
    }
    assert_int_equal(fd, VLAD_EINVAL);
    assert_int_equal(e.code, VLAD_EINVAL);
    snprintf(want, sizeof want, "%s: is %s, not a regular file", path, kind);
    assert_msg_has(e.msg, want);
}

static void test_open_regular(void **state) {
    (void)state;
    char reg[128], fifo[128], sock[128], lreg[128], lfifo[128], fresh[128];
    vlad_err e = {0};
    in_dir("regular", reg, sizeof reg);
    write_file(reg, "hello", 5);

    /* a regular file opens; the descriptor is blocking again and close-on-exec */
    int fd = vlad_open_regular(reg, O_RDONLY, 0, &e);
    assert_true(fd >= 0);
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fl & O_NONBLOCK, 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    char buf[8] = {0};
    assert_int_equal(read(fd, buf, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);
    close(fd);
    /* O_NONBLOCK asked for is kept */
    fd = vlad_open_regular(reg, O_RDONLY | O_NONBLOCK, 0, &e);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    close(fd);
    /* a log file: created, appended to */
    in_dir("new.log", fresh, sizeof fresh);
    fd = vlad_open_regular(fresh, O_WRONLY | O_CREAT | O_APPEND, 0600, &e);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
    struct stat st;
    assert_int_equal(stat(fresh, &st), 0);
    assert_true(S_ISREG(st.st_mode) && st.st_size == 1);

    /* a FIFO with no writer (a plain open for reading waits for one forever) and with no
     * reader (for writing), both refused at once */
    in_dir("fifo", fifo, sizeof fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_refused(fifo, O_RDONLY, "a FIFO");
    expect_refused(fifo, O_WRONLY | O_CREAT | O_APPEND, "a FIFO");
    expect_refused(fifo, O_RDWR, "a FIFO");
    /* through a symbolic link: the link is followed, the FIFO behind it refused */
    in_dir("link-to-fifo", lfifo, sizeof lfifo);
    assert_int_equal(symlink(fifo, lfifo), 0);
    expect_refused(lfifo, O_RDONLY, "a FIFO");
    in_dir("link-to-regular", lreg, sizeof lreg);
    assert_int_equal(symlink(reg, lreg), 0);
    fd = vlad_open_regular(lreg, O_RDONLY, 0, &e);
    assert_true(fd >= 0);
    close(fd);
    /* devices, a directory, a socket */
    expect_refused("/dev/null", O_RDONLY, "a character device");
    expect_refused("/dev/zero", O_RDONLY, "a character device");
    expect_refused("/dev/null", O_WRONLY | O_CREAT | O_APPEND, "a character device");
    expect_refused(g_dir, O_RDONLY, "a directory");
    expect_refused(g_dir, O_WRONLY | O_CREAT | O_APPEND, "a directory");
    in_dir("sock", sock, sizeof sock);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(sock) < sizeof sa.sun_path);
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    expect_refused(sock, O_RDONLY, "a socket");
    close(s);
    /* missing, empty */
    char missing[128];
    in_dir("no-such-file", missing, sizeof missing);
    assert_int_equal(vlad_open_regular(missing, O_RDONLY, 0, &e), VLAD_EIO);
    assert_msg_has(e.msg, missing);
    assert_msg_has(e.msg, "cannot open: No such file");
    assert_int_equal(vlad_open_regular("", O_RDONLY, 0, &e), VLAD_EINVAL);
    assert_int_equal(vlad_open_regular(NULL, O_RDONLY, 0, &e), VLAD_EINVAL);
    assert_string_equal(vlad_file_kind(S_IFIFO), "a FIFO");
    assert_string_equal(vlad_file_kind(S_IFBLK), "a block device");
    assert_string_equal(vlad_file_kind(S_IFREG | 0644), "a regular file");
}

/* ---- safetensors: special files, non-finite scan ------------------------------------------ */

static void test_st_open_special(void **state) {
    (void)state;
    char fifo[128];
    in_dir("model-fifo.safetensors", fifo, sizeof fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    struct {
        const char *path, *kind;
    } cases[] = {{fifo, "a FIFO"}, {"/dev/zero", "a character device"}, {g_dir, "a directory"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vlad_st_file *f = (vlad_st_file *)1;
        vlad_err e = {0};
        char want[300];
        guard(cases[i].path);
        int rc = vlad_st_open(cases[i].path, &f, &e);
        unguard();
        assert_int_not_equal(rc, 0);
        assert_null(f);
        snprintf(want, sizeof want, "%s: is %s, not a regular file", cases[i].path,
                 cases[i].kind);
        assert_msg_has(e.msg, want);
    }
}

static void put_f32(uint8_t *base, size_t i, float v) { memcpy(base + 4 * i, &v, 4); }
static void put_bf16(uint8_t *base, size_t i, float v) {
    uint16_t h = vlad_f32_to_bf16(v);
    memcpy(base + 2 * i, &h, 2);
}

static void test_st_nonfinite(void **state) {
    (void)state;
    enum { N = 10000 }; /* more than two of the scanner's 4096-element blocks */
    uint8_t *raw = calloc(4 * N + 1, 1);
    assert_non_null(raw);
    uint8_t *d = raw + 1; /* misaligned, as a tensor in a file may be */
    for (int dt = 0; dt < 2; dt++) {
        void (*put)(uint8_t *, size_t, float) = dt ? put_bf16 : put_f32;
        vlad_st_tensor t = {.name = "t", .dtype = dt ? VLAD_DT_BF16 : VLAD_DT_F32, .ndim = 1,
                            .shape = {N}, .numel = N, .data = d};
        /* large, tiny, subnormal, negative zero: all finite */
        for (size_t i = 0; i < N; i++)
            put(d, i, i % 4 == 0 ? 3.0e38f : i % 4 == 1 ? -1e-40f : i % 4 == 2 ? -0.0f : 1.5f);
        float bad = 0;
        assert_int_equal(vlad_st_find_nonfinite(&t, &bad), -1);
        /* the first bad one is reported, wherever it sits */
        put(d, 9999, NAN);
        assert_int_equal(vlad_st_find_nonfinite(&t, &bad), 9999);
        assert_true(isnan(bad));
        put(d, 5000, -INFINITY);
        assert_int_equal(vlad_st_find_nonfinite(&t, &bad), 5000);
        assert_true(isinf(bad) && bad < 0);
        put(d, 4096, INFINITY);
        assert_int_equal(vlad_st_find_nonfinite(&t, NULL), 4096);
        assert_int_equal(vlad_st_find_nonfinite(&t, &bad), 4096);
        assert_true(isinf(bad) && bad > 0);
        put(d, 0, NAN);
        assert_int_equal(vlad_st_find_nonfinite(&t, &bad), 0);
        /* a short tensor ends where it says */
        t.numel = 4000;
        put(d, 0, 1.0f);
        assert_int_equal(vlad_st_find_nonfinite(&t, &bad), -1);
    }
    /* integer tensors hold no NaN, whatever their bytes */
    memset(d, 0xff, 4 * N);
    vlad_st_tensor u = {.name = "u", .dtype = VLAD_DT_U8, .numel = N, .data = d};
    assert_int_equal(vlad_st_find_nonfinite(&u, NULL), -1);
    free(raw);
}

/* ---- profile loader ---------------------------------------------------------------------- */

static const char k_good[] = "robot: tiny\njoints:\n  - {name: j0, min: -1, max: 1, max_velocity: 2}\n";

/* Load `text` as a profile file `name`; 0 or the error code, message in e. */
static int load_text(const char *name, const char *text, size_t n, vlad_err *e) {
    static vlad_profile p;
    char path[128];
    in_dir(name, path, sizeof path);
    write_file(path, text, n);
    guard(name);
    int rc = vlad_profile_load(&p, path, e);
    unguard();
    unlink(path);
    return rc;
}

static void expect_profile_error(const char *name, const char *text, size_t n,
                                 const char *needle) {
    vlad_err e = {0};
    int rc = load_text(name, text, n, &e);
    if (rc == 0)
        fail_msg("%s: loaded; wanted '%s'", name, needle);
    assert_msg_has(e.msg, name);
    assert_msg_has(e.msg, needle);
}

static void test_profile_special_files(void **state) {
    (void)state;
    static vlad_profile p;
    char fifo[128];
    in_dir("profile-fifo.yaml", fifo, sizeof fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    struct {
        const char *path, *kind;
    } cases[] = {{fifo, "a FIFO"}, {"/dev/zero", "a character device"}, {g_dir, "a directory"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vlad_err e = {0};
        char want[300];
        guard(cases[i].path);
        int rc = vlad_profile_load(&p, cases[i].path, &e);
        unguard();
        assert_int_not_equal(rc, 0);
        snprintf(want, sizeof want, "%s: is %s, not a regular file", cases[i].path,
                 cases[i].kind);
        assert_msg_has(e.msg, want);
    }
}

/* "[" x n, then "]" x n after `prefix` */
static char *nested(const char *prefix, const char *open, const char *close, size_t n,
                    size_t *len) {
    size_t pl = strlen(prefix), ol = strlen(open), cl = strlen(close);
    char *t = malloc(pl + n * (ol + cl) + 2);
    assert_non_null(t);
    memcpy(t, prefix, pl);
    size_t k = pl;
    for (size_t i = 0; i < n; i++, k += ol)
        memcpy(t + k, open, ol);
    for (size_t i = 0; i < n; i++, k += cl)
        memcpy(t + k, close, cl);
    t[k++] = '\n';
    t[k] = 0;
    *len = k;
    return t;
}

static void test_profile_depth(void **state) {
    (void)state;
    size_t n;
    /* 80k levels (the old loader: ~50 s): refused at the 33rd, where it opens */
    char *t = nested("robot: tiny\njoints: ", "[", "]", 80000, &n);
    expect_profile_error("deep-80k.yaml", t, n, "deep-80k.yaml:2:40: nesting deeper than 32");
    free(t);
    t = nested("", "{a: ", "}", 80000, &n);
    expect_profile_error("deep-map.yaml", t, n, "deep-map.yaml:1:129: nesting deeper than 32");
    free(t);
    t = nested("", "- ", "", 80000, &n); /* block sequences: "- - - - ..." */
    expect_profile_error("deep-block.yaml", t, n, "deep-block.yaml:1:65: nesting deeper than 32");
    free(t);
    /* the largest file the loader reads, all of it one nest */
    t = malloc((1u << 20) + 1);
    assert_non_null(t);
    memset(t, '[', 1u << 20);
    expect_profile_error("deep-1mib.yaml", t, 1u << 20, "deep-1mib.yaml:1:33: nesting deeper than 32");
    /* block mappings indented one more space per level, as deep as fits in 1 MiB */
    size_t k = 0;
    for (int d = 0; k + (size_t)d + 4 < (1u << 20); d++) {
        memset(t + k, ' ', (size_t)d);
        memcpy(t + k + d, "k:\n", 3);
        k += (size_t)d + 3;
    }
    expect_profile_error("deep-indent.yaml", t, k, "deep-indent.yaml:33:33: nesting deeper than 32");
    free(t);
    /* 32 levels are allowed: the loader gets past the depth check to the shape check */
    t = nested("robot: tiny\njoints: ", "[", "]", 31, &n);
    expect_profile_error("deep-32.yaml", t, n, "joints: entry 0: expected a mapping");
    free(t);
}

static void test_profile_documents(void **state) {
    (void)state;
    vlad_err e = {0};
    assert_int_equal(load_text("one.yaml", k_good, strlen(k_good), &e), 0);
    /* explicit markers around one document are fine */
    char buf[512];
    snprintf(buf, sizeof buf, "---\n%s...\n", k_good);
    if (load_text("one-marked.yaml", buf, strlen(buf), &e))
        fail_msg("%s", e.msg);
    /* a second document, valid or empty, is refused (the old loader ignored it) */
    snprintf(buf, sizeof buf, "%s---\nrobot: other\n", k_good);
    expect_profile_error("two.yaml", buf, strlen(buf),
                         "two.yaml: a second YAML document at line 4; one document per profile");
    snprintf(buf, sizeof buf, "---\n%s---\n", k_good);
    expect_profile_error("two-empty.yaml", buf, strlen(buf),
                         "two-empty.yaml: a second YAML document at line 5; one document per "
                         "profile");
    snprintf(buf, sizeof buf, "%s...\n---\n%s", k_good, k_good);
    expect_profile_error("two-same.yaml", buf, strlen(buf),
                         "a second YAML document at line 5");
    /* a syntax error is still one, with its place */
    expect_profile_error("syntax.yaml", "robot: [tiny\n", 13, "syntax.yaml:2:1: YAML syntax error");
}

static void test_profile_anchors_and_size(void **state) {
    (void)state;
    vlad_err e = {0};
    /* a few anchors and aliases, as a person writes them, load */
    static const char few[] =
        "robot: tiny\njoints:\n"
        "  - {name: j0, min: &lo -1, max: &hi 1, max_velocity: &v 2}\n"
        "  - {name: j1, min: *lo, max: *hi, max_velocity: *v}\n";
    if (load_text("few-anchors.yaml", few, strlen(few), &e))
        fail_msg("%s", e.msg);
    /* thousands of anchors (libyaml compares each with every other one) are not a profile */
    size_t cap = 1u << 20, k = 0;
    char *t = malloc(cap + 2);
    assert_non_null(t);
    k += (size_t)snprintf(t, cap, "robot: tiny\nx: [");
    for (int i = 0; i < 80000; i++)
        k += (size_t)snprintf(t + k, cap - k, "&a%d 1, ", i);
    t[k++] = ']';
    expect_profile_error("anchors.yaml", t, k, "more than 256 YAML anchors");
    k = (size_t)snprintf(t, cap, "robot: tiny\nx: [&a 1");
    for (int i = 0; i < 2000; i++)
        k += (size_t)snprintf(t + k, cap - k, ", *a");
    t[k++] = ']';
    expect_profile_error("aliases.yaml", t, k, "more than 1024 YAML aliases");
    /* exactly 1 MiB loads (a comment pads it); one byte more is refused */
    size_t g = strlen(k_good);
    memcpy(t, k_good, g);
    t[g] = '#';
    memset(t + g + 1, 'x', cap - g - 2);
    t[cap - 1] = '\n';
    if (load_text("one-mib.yaml", t, cap, &e))
        fail_msg("exactly 1 MiB: %s", e.msg);
    t[cap - 1] = 'x';
    t[cap] = '\n';
    expect_profile_error("one-mib-plus.yaml", t, cap + 1, "one-mib-plus.yaml: larger than 1 MiB");
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_regular),
        cmocka_unit_test(test_st_open_special),
        cmocka_unit_test(test_st_nonfinite),
        cmocka_unit_test(test_profile_special_files),
        cmocka_unit_test(test_profile_depth),
        cmocka_unit_test(test_profile_documents),
        cmocka_unit_test(test_profile_anchors_and_size),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
