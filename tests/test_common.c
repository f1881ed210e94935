/* Unit tests of common/: errors, latest-value slot, SPSC ring, histogram, logger, mkdir -p,
 * the safetensors reader's overlap check, option tables, gnuplot pictures. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdatomic.h>
#include <cmocka.h>

#include "clock.h"
#include "err.h"
#include "latest.h"
#include "log.h"
#include "opts.h"
#include "plot.h"
#include "path.h"
#include "safetensors.h"
#include "spsc.h"
#include "stats.h"

static void test_err(void **state) {
    (void)state;
    vlad_err e;
    assert_int_equal(vlad_err_set(&e, VLAD_ERANGE, "x=%d", 5), VLAD_ERANGE);
    assert_string_equal(e.msg, "x=5");
    vlad_err_prefix(&e, "%s: ", "file.yaml");
    assert_string_equal(e.msg, "file.yaml: x=5");
    assert_int_equal(e.code, VLAD_ERANGE);
    assert_string_equal(vlad_err_name(VLAD_ETIMEOUT), "ETIMEOUT");
    assert_int_equal(vlad_err_set(NULL, VLAD_EINVAL, "ignored"), VLAD_EINVAL);
    /* prefixing never overflows */
    char big[600];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    vlad_err_set(&e, VLAD_EINVAL, "%s", big);
    vlad_err_prefix(&e, "%s", big);
    assert_int_equal(strlen(e.msg), VLAD_ERR_MSG_MAX - 1);
}

static void test_latest_basic(void **state) {
    (void)state;
    vlad_latest *l = vlad_latest_new(sizeof(int), NULL);
    assert_non_null(l);
    bool fresh = true;
    const int *v = vlad_latest_read(l, &fresh);
    assert_false(fresh);
    assert_int_equal(*v, 0);
    for (int i = 1; i <= 5; i++) {
        *(int *)vlad_latest_write_buf(l) = i;
        vlad_latest_publish(l);
    }
    v = vlad_latest_read(l, &fresh);
    assert_true(fresh);
    assert_int_equal(*v, 5); /* only the newest */
    v = vlad_latest_read(l, &fresh);
    assert_false(fresh);
    assert_int_equal(*v, 5); /* still valid */
    assert_int_equal(vlad_latest_count(l), 5);
    vlad_latest_free(l);
    vlad_latest_free(NULL);
}

/* writer publishes {i, i*3} pairs; reader must never see a torn pair or go backwards */
typedef struct { int64_t a, b; } pair;
static void *writer(void *arg) {
    vlad_latest *l = arg;
    for (int64_t i = 1; i <= 200000; i++) {
        pair *p = vlad_latest_write_buf(l);
        p->a = i;
        p->b = i * 3;
        vlad_latest_publish(l);
    }
    return NULL;
}

static void test_latest_threads(void **state) {
    (void)state;
    vlad_latest *l = vlad_latest_new(sizeof(pair), NULL);
    pthread_t t;
    pthread_create(&t, NULL, writer, l);
    int64_t last = 0;
    while (last < 200000) {
        const pair *p = vlad_latest_read(l, NULL);
        assert_int_equal(p->b, p->a * 3);
        assert_true(p->a >= last);
        last = p->a;
    }
    pthread_join(t, NULL);
    vlad_latest_free(l);
}

static void *producer(void *arg) {
    vlad_spsc *r = arg;
    for (uint64_t i = 0; i < 100000; i++)
        while (!vlad_spsc_push(r, &i)) {
        }
    return NULL;
}

static void test_spsc(void **state) {
    (void)state;
    vlad_spsc *r = vlad_spsc_new(sizeof(uint64_t), 5, NULL); /* rounds to 8 */
    assert_non_null(r);
    uint64_t v;
    assert_false(vlad_spsc_pop(r, &v));
    for (uint64_t i = 0; i < 8; i++)
        assert_true(vlad_spsc_push(r, &i));
    uint64_t nine = 9;
    assert_false(vlad_spsc_push(r, &nine)); /* full: refused */
    assert_int_equal(vlad_spsc_size(r), 8);
    for (uint64_t i = 0; i < 8; i++) {
        assert_true(vlad_spsc_pop(r, &v));
        assert_int_equal(v, i);
    }
    vlad_spsc_free(r);
    /* ordering across threads */
    r = vlad_spsc_new(sizeof(uint64_t), 64, NULL);
    pthread_t t;
    pthread_create(&t, NULL, producer, r);
    for (uint64_t want = 0; want < 100000;) {
        if (vlad_spsc_pop(r, &v)) {
            assert_int_equal(v, want);
            want++;
        }
    }
    pthread_join(t, NULL);
    vlad_spsc_free(r);
    vlad_spsc_free(NULL);
    assert_null(vlad_spsc_new(0, 4, NULL));
}

static void test_hist(void **state) {
    (void)state;
    static vlad_hist h;
    vlad_hist_init(&h);
    vlad_hist_summary s;
    vlad_hist_summarize(&h, &s);
    assert_int_equal(s.count, 0);
    assert_true(s.p99_us == 0.0);
    /* 99 samples at 100 us, one at 10 ms */
    for (int i = 0; i < 99; i++)
        vlad_hist_add(&h, 100000);
    vlad_hist_add(&h, 10000000);
    vlad_hist_summarize(&h, &s);
    assert_int_equal(s.count, 100);
    assert_true(s.p50_us > 100 * 0.91 && s.p50_us < 100 * 1.09);
    assert_true(s.p99_us > 100 * 0.91 && s.p99_us < 100 * 1.09);
    assert_true(s.max_us == 10000.0);
    assert_true(s.mean_us > 198.9 && s.mean_us < 199.1);
    assert_true(vlad_hist_percentile_us(&h, 1.0) > 9000);
    vlad_hist_add(&h, -5); /* negative counts as zero */
    assert_int_equal(atomic_load(&h.count), 101);
}

static void test_log(void **state) {
    (void)state;
    vlad_log_level l;
    assert_int_equal(vlad_log_level_parse("warn", &l), 0);
    assert_int_equal(l, VLAD_LOG_WARN);
    assert_int_equal(vlad_log_level_parse("loud", &l), VLAD_EINVAL);
    char path[] = "/tmp/vlad-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    vlad_err e;
    assert_int_equal(vlad_log_start(path, &e), 0);
    vlad_log_set_level(VLAD_LOG_INFO);
    VLAD_LOGI("hello %d", 42);
    VLAD_LOGD("hidden");
    vlad_log_stop();
    vlad_log_stop(); /* idempotent */
    FILE *f = fopen(path, "r");
    char buf[512] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    unlink(path);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "info  hello 42"));
    assert_null(strstr(buf, "hidden"));
    assert_int_equal(vlad_log_start("/nonexistent-dir/x.log", &e), VLAD_EIO);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/x.log"));
}

static void test_clock(void **state) {
    (void)state;
    int64_t t0 = vlad_now_ns();
    vlad_sleep_until_ns(t0 + 2 * VLAD_NS_PER_MS);
    assert_true(vlad_now_ns() >= t0 + 2 * VLAD_NS_PER_MS); /* never wakes early */
    vlad_sleep_until_ns(t0 - VLAD_NS_PER_S);                /* past deadline: returns */
}

static void test_mkdir_p(void **state) {
    (void)state;
    char base[] = "/tmp/vlad-mkdir-XXXXXX", p[256];
    assert_non_null(mkdtemp(base));
    vlad_err e = {0};
    snprintf(p, sizeof p, "%s/a/b//c/", base);
    assert_int_equal(vlad_mkdir_p(p, &e), 0);
    struct stat st;
    snprintf(p, sizeof p, "%s/a/b/c", base);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(vlad_mkdir_p(p, &e), 0); /* exists: fine */
    snprintf(p, sizeof p, "%s/file", base);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(p, sizeof p, "%s/file/sub", base);
    assert_int_equal(vlad_mkdir_p(p, &e), VLAD_EIO);
    assert_non_null(strstr(e.msg, "not a directory"));
    assert_int_equal(vlad_mkdir_p("", &e), VLAD_EINVAL);
    assert_int_equal(vlad_mkdir_p(NULL, &e), VLAD_EINVAL);
    snprintf(p, sizeof p, "rm -r %s", base);
    assert_int_equal(system(p), 0);
}

/* Write a safetensors file: header `hdr` (padded with spaces to 8 bytes), then `data_len`
 * zero bytes of data. Returns vlad_st_open's code; *msg gets its error message. */
static int st_open_header(const char *path, const char *hdr, size_t data_len, char *msg,
                          size_t msg_n) {
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (int i = 0; i < 8; i++)
        assert_int_not_equal(fputc((int)(((uint64_t)padded >> (8 * i)) & 0xff), fp), EOF);
    assert_int_equal(fwrite(hdr, 1, hl, fp), hl);
    for (size_t i = hl; i < padded; i++)
        assert_int_not_equal(fputc(' ', fp), EOF);
    for (size_t i = 0; i < data_len; i++)
        assert_int_not_equal(fputc(0, fp), EOF);
    assert_int_equal(fclose(fp), 0);
    vlad_st_file *f = NULL;
    vlad_err e = {0};
    int rc = vlad_st_open(path, &f, &e);
    const char *m = rc ? e.msg : "";
    size_t ml = strnlen(m, msg_n - 1);
    memcpy(msg, m, ml);
    msg[ml] = 0;
    if (rc)
        assert_null(f);
    else
        assert_non_null(f);
    vlad_st_close(f);
    return rc;
}

#define ST_T(name, n, b, e)                                                                    \
    "\"" name "\":{\"dtype\":\"U8\",\"shape\":[" #n "],\"data_offsets\":[" #b "," #e "]}"

static void test_safetensors_overlap(void **state) {
    (void)state;
    char dir[] = "/tmp/vlad-st-XXXXXX", p[256], msg[256];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/t.safetensors", dir);
    /* disjoint, with zero-length tensors before, between, inside and after: fine */
    const char *ok = "{" ST_T("z0", 0, 0, 0) "," ST_T("a", 8, 0, 8) "," ST_T("zi", 0, 4, 4) ","
        ST_T("z8", 0, 8, 8) "," ST_T("b", 8, 8, 16) "," ST_T("z16", 0, 16, 16) "}";
    assert_int_equal(st_open_header(p, ok, 16, msg, sizeof msg), 0);
    static const struct {
        const char *hdr;
        size_t data;
        const char *later, *earlier; /* the tensors the error must name */
    } bad[] = {
        /* plain overlap of sorted neighbours */
        {"{" ST_T("a", 8, 0, 8) "," ST_T("b", 8, 4, 12) "}", 16, "b", "a"},
        /* a zero-length tensor sorted between two overlapping ones must not hide it */
        {"{" ST_T("a", 16, 0, 16) "," ST_T("z", 0, 8, 8) "," ST_T("b", 8, 12, 20) "}", 24, "b",
         "a"},
        /* same begin: [0,8], [4,4], [4,12] sorts as a, z, b */
        {"{" ST_T("b", 8, 4, 12) "," ST_T("z", 0, 4, 4) "," ST_T("a", 8, 0, 8) "}", 16, "b", "a"},
        /* several zero-length tensors between a long tensor and one it covers */
        {"{" ST_T("a", 32, 0, 32) "," ST_T("z1", 0, 2, 2) "," ST_T("z2", 0, 3, 3) ","
             ST_T("z3", 0, 20, 20) "," ST_T("c", 4, 24, 28) "}",
         32, "c", "a"},
        /* an exact duplicate range behind a zero-length tensor at the same offset */
        {"{" ST_T("a", 8, 0, 8) "," ST_T("z", 0, 0, 0) "," ST_T("b", 8, 0, 8) "}", 8, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(st_open_header(p, bad[i].hdr, bad[i].data, msg, sizeof msg), VLAD_EPARSE);
        if (!strstr(msg, "overlap"))
            fail_msg("case %zu: got '%s', wanted an overlap error", i, msg);
        if (bad[i].later) {
            char want[64];
            snprintf(want, sizeof want, "tensor '%s': data_offsets", bad[i].later);
            assert_non_null(strstr(msg, want));
            snprintf(want, sizeof want, "overlap tensor '%s'", bad[i].earlier);
            assert_non_null(strstr(msg, want));
        }
    }
    assert_int_equal(unlink(p), 0);
    assert_int_equal(rmdir(dir), 0);
}

static int add_kv(void *dst, const char *v, vlad_err *err) {
    int *n = dst;
    if (!strchr(v, '='))
        return vlad_err_set(err, VLAD_EINVAL, "expected KEY=VALUE, got '%s'", v);
    (*n)++;
    return VLAD_OK;
}

/* One option table: values, bounds, flags, positional arguments, repeated options, and an
 * error naming the option for every kind of bad input. */
static void test_opts(void **state) {
    (void)state;
    int episodes = 50, quiet = 0, wall = 1, sets = 0;
    double noise = 1.0;
    uint64_t seed = 7;
    const char *json = NULL;
    const vlad_opt tab[] = {
        {"episodes", VLAD_OPT_INT, &episodes, "N", "episodes per cell", 1, 100000, NULL},
        {"noise", VLAD_OPT_DOUBLE, &noise, "X", "noise scale", 0, 10, NULL},
        {"seed", VLAD_OPT_U64, &seed, "S", "seed", 0, 0, NULL},
        {"json", VLAD_OPT_STR, &json, "FILE", "write JSON", 0, 0, NULL},
        {"quiet", VLAD_OPT_FLAG, &quiet, NULL, "quiet", 0, 0, NULL},
        {"no-wall", VLAD_OPT_FLAG, &wall, NULL, "skip wall clock", -1, 0, NULL},
        {"set", VLAD_OPT_CALL, &sets, "K=V", "override", 0, 0, add_kv},
        {0},
    };
    char *ok[] = {"prog", "--episodes", "3", "--noise=0.5", "a.txt", "--seed", "0x10", "--json",
                  "o.json", "--quiet", "--set", "a=1", "--set=b=2", "--", "--not-an-option"};
    const char *pos[4];
    int npos = -1;
    vlad_err err;
    assert_int_equal(vlad_opts_parse(tab, 15, ok, pos, 4, &npos, &err), VLAD_OK);
    assert_int_equal(episodes, 3);
    assert_true(noise == 0.5);
    assert_true(seed == 16);
    assert_string_equal(json, "o.json");
    assert_int_equal(quiet, 1);
    assert_int_equal(sets, 2);
    assert_int_equal(npos, 2);
    assert_string_equal(pos[0], "a.txt");
    assert_string_equal(pos[1], "--not-an-option");
    char *nw[] = {"prog", "--no-wall"};
    assert_int_equal(vlad_opts_parse(tab, 2, nw, NULL, 0, NULL, &err), VLAD_OK);
    assert_int_equal(wall, -1); /* a flag storing lo */

    struct { char *argv[3]; int argc, code; const char *msg; } bad[] = {
        {{"prog", "--episodes", "0"}, 3, VLAD_ERANGE, "--episodes: 0 is out of range"},
        {{"prog", "--episodes", "x"}, 3, VLAD_EINVAL, "--episodes: expected an integer, got 'x'"},
        {{"prog", "--episodes", "3.5"}, 3, VLAD_EINVAL, "--episodes: expected an integer"},
        {{"prog", "--episodes"}, 2, VLAD_EINVAL, "--episodes needs a value (N)"},
        {{"prog", "--noise", "nan"}, 3, VLAD_EINVAL, "--noise: expected a number"},
        {{"prog", "--noise", "11"}, 3, VLAD_ERANGE, "--noise: 11 is out of range"},
        {{"prog", "--seed", "-1"}, 3, VLAD_EINVAL, "--seed: expected an unsigned integer"},
        {{"prog", "--bogus", "1"}, 3, VLAD_EINVAL, "unknown option '--bogus'"},
        {{"prog", "--quiet=1"}, 2, VLAD_EINVAL, "--quiet takes no value"},
        {{"prog", "--set", "novalue"}, 3, VLAD_EINVAL, "--set: expected KEY=VALUE, got 'novalue'"},
        {{"prog", "stray"}, 2, VLAD_EINVAL, "unexpected argument 'stray'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        episodes = 50;
        assert_int_equal(vlad_opts_parse(tab, bad[i].argc, bad[i].argv, NULL, 0, NULL, &err),
                         bad[i].code);
        if (!strstr(err.msg, bad[i].msg))
            fail_msg("case %zu: '%s' does not contain '%s'", i, err.msg, bad[i].msg);
        assert_int_equal(episodes, 50); /* a refused value is not stored */
    }
    char *help[] = {"prog", "--help"};
    assert_int_equal(vlad_opts_parse(tab, 2, help, NULL, 0, NULL, &err), VLAD_ESTATE);

    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    assert_non_null(f);
    episodes = 50;
    vlad_opts_usage(f, "prog [options]", tab);
    fclose(f);
    assert_non_null(strstr(buf, "usage: prog [options]\n"));
    assert_non_null(strstr(buf, "--episodes N"));
    assert_non_null(strstr(buf, "[1..100000] (default 50)"));
    assert_non_null(strstr(buf, "--quiet"));
}

/* A picture through gnuplot: a real PNG (signature) with data, NaN rows and a quote in the
 * title; a script gnuplot refuses is an error naming the script, and nothing is left. */
static void test_plot(void **state) {
    (void)state;
    if (!vlad_plot_available()) {
        skip();
    }
    char dir[] = "/tmp/vlad-test-plot-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char png[256], gp[300];
    snprintf(png, sizeof png, "%s/it's.png", dir);
    snprintf(gp, sizeof gp, "%s.gp", png);
    vlad_err err;
    vlad_plot *p = vlad_plot_new(png, 320, 200, "a 'quoted' title", &err);
    assert_non_null(p);
    vlad_plot_data(p, "d");
    for (int i = 0; i < 20; i++) {
        double row[2] = {i, i == 5 ? NAN : i * i};
        vlad_plot_row(p, row, 2);
    }
    vlad_plot_end_data(p);
    vlad_plot_printf(p, "plot $d using 1:2 with lines title '%s'\n", "squares");
    assert_int_equal(vlad_plot_finish(p, 1, &err), VLAD_OK);
    unsigned char sig[8] = {0};
    FILE *f = fopen(png, "rb");
    assert_non_null(f);
    assert_int_equal(fread(sig, 1, 8, f), 8);
    fclose(f);
    assert_memory_equal(sig, "\x89PNG\r\n\x1a\n", 8);
    assert_int_equal(access(gp, R_OK), 0); /* kept when asked */
    remove(gp);

    p = vlad_plot_new(png, 320, 200, NULL, &err);
    vlad_plot_printf(p, "plot $nosuchblock using 1:2\n");
    assert_int_equal(vlad_plot_finish(p, 0, &err), VLAD_EIO);
    assert_non_null(strstr(err.msg, "gnuplot failed"));
    assert_int_not_equal(access(png, F_OK), 0);
    remove(gp);
    assert_null(vlad_plot_new(png, 0, 200, NULL, &err));
    assert_int_equal(err.code, VLAD_EINVAL);
    vlad_plot_free(NULL);
    assert_int_equal(rmdir(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err),       cmocka_unit_test(test_latest_basic),
        cmocka_unit_test(test_latest_threads), cmocka_unit_test(test_spsc),
        cmocka_unit_test(test_hist),      cmocka_unit_test(test_log),
        cmocka_unit_test(test_clock),     cmocka_unit_test(test_mkdir_p),
        cmocka_unit_test(test_safetensors_overlap), cmocka_unit_test(test_opts),
        cmocka_unit_test(test_plot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
