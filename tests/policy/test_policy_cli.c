/* The vlad-policy CLI on the committed fixtures: `run` reproduces the twin's actions and text,
 * `info` describes the model, bad arguments and bad files fail with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "policy_testutil.h"
#include "safetensors.h"

static char g_bin[1024], g_fx[1024];

/* Run a shell command, capture stdout (malloc'd) and the exit status. */
static char *run(const char *cmd, int *status) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    size_t r;
    while ((r = fread(out + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (n + 1 >= cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
    }
    out[n] = '\0';
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

static void check_run(const char *name) {
    char cmd[8192], path[4200];
    snprintf(cmd, sizeof cmd, "'%s' run --model '%s/%s.safetensors' --input '%s/%s.obs.json'",
             g_bin, g_fx, name, g_fx, name);
    int st;
    char *out = run(cmd, &st);
    assert_int_equal(st, 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    snprintf(path, sizeof path, "%s/%s.expected.safetensors", g_fx, name);
    vlad_err err = {0};
    vlad_st_file *ex = NULL;
    assert_int_equal(vlad_st_open(path, &ex, &err), 0);
    const vlad_st_tensor *ea = vlad_st_find(ex, "actions");
    const float *exp = (const float *)(const void *)ea->data;
    cJSON *acts = cJSON_GetObjectItemCaseSensitive(j, "actions");
    assert_int_equal(cJSON_GetArraySize(acts), ea->shape[0]);
    double mx = 0;
    int k = 0;
    for (cJSON *row = acts->child; row; row = row->next)
        for (cJSON *v = row->child; v; v = v->next, k++) {
            double d = fabs(v->valuedouble - exp[k]);
            mx = d > mx ? d : mx;
        }
    assert_int_equal(k, ea->numel);
    printf("%s: vlad-policy run actions max err %.3g\n", name, mx);
    assert_true(mx <= 2e-4);
    cJSON *th = cJSON_GetObjectItemCaseSensitive(j, "text_hex");
    assert_true(cJSON_IsString(th));
    assert_string_equal(th->valuestring, vlad_st_meta(ex, "text_hex"));
    vlad_st_close(ex);
    cJSON_Delete(j);
    free(out);
}

static void test_run_fixtures(void **state) {
    (void)state;
    check_run("tiny_f32_1cam");
    check_run("tiny_bf16_2cam");
}

static void test_info_and_errors(void **state) {
    (void)state;
    char cmd[8192];
    int st;
    snprintf(cmd, sizeof cmd, "'%s' info '%s/tiny_bf16_2cam.safetensors'", g_bin, g_fx);
    char *out = run(cmd, &st);
    assert_int_equal(st, 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "matrix_dtype")->valuestring, "BF16");
    assert_true(cJSON_GetObjectItemCaseSensitive(j, "parameters")->valuedouble > 1000);
    cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(cfg, "n_cameras")->valueint, 2);
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' info /nonexistent.safetensors 2>/dev/null", g_bin);
    free(run(cmd, &st));
    assert_int_equal(st, 1);
    snprintf(cmd, sizeof cmd, "'%s' frobnicate 2>/dev/null", g_bin);
    free(run(cmd, &st));
    assert_int_equal(st, 2);
    /* wrong camera count: the 1-camera observation against the 2-camera model */
    snprintf(cmd, sizeof cmd,
             "'%s' run --model '%s/tiny_bf16_2cam.safetensors' --input '%s/tiny_f32_1cam.obs.json'"
             " 2>&1",
             g_bin, g_fx, g_fx);
    out = run(cmd, &st);
    assert_int_equal(st, 1);
    assert_non_null(strstr(out, "images"));
    free(out);
    /* random checkpoints round-trip through info */
    char dir[1024];
    assert_int_equal(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(cmd, sizeof cmd,
             "'%s' random --out '%s/r.safetensors' --dtype bf16 --seed 3 && '%s' info "
             "'%s/r.safetensors' >/dev/null",
             g_bin, dir, g_bin, dir);
    free(run(cmd, &st));
    assert_int_equal(st, 0);
    tu_rmtree(dir);
}

int main(void) {
    const char *b = getenv("VLAD_BIN");
    snprintf(g_bin, sizeof g_bin, "%s/vlad-policy", b && *b ? b : "build/bin");
    tu_fixture_dir(g_fx, sizeof g_fx);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_fixtures),
        cmocka_unit_test(test_info_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
