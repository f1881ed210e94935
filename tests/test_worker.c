/* The inference worker: one job at a time through single-slot mailboxes, results and
 * errors returned, latency padding, the prompt copied under the lock. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "clock.h"
#include "worker.h"

static char seen_prompt[VLAD_PROMPT_MAX];
static int calls;

static int fake_infer(void *self, const vlad_infer_job *job, float *actions, vlad_err *err) {
    (void)self;
    calls++;
    snprintf(seen_prompt, sizeof seen_prompt, "%s", job->prompt);
    if (job->req.obs_tick < 0)
        return vlad_err_set(err, VLAD_EINVAL, "negative obs tick %lld", (long long)job->req.obs_tick);
    for (int i = 0; i < 4 * 2; i++)
        actions[i] = (float)job->req.obs_tick + (float)i + job->images[0];
    return VLAD_OK;
}

static void test_roundtrip(void **state) {
    (void)state;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    char prompt[64] = "touch red";
    vlad_policy_ops ops = {.self = NULL, .horizon = 4, .dim = 2, .infer = fake_infer};
    vlad_err err;
    vlad_worker *w = vlad_worker_new(&ops, 16, 0, false, &mu, prompt, &err);
    assert_non_null(w);
    assert_true(vlad_worker_idle(w));
    assert_null(vlad_worker_poll(w));
    vlad_infer_job *job = vlad_worker_job(w);
    job->req.obs_tick = 10;
    job->req.id = 1;
    uint8_t img[16] = {3};
    assert_int_equal(vlad_worker_zero_images(w)[0], 0); /* the default: zeros */
    job->images = img; /* the control thread hands a pinned frame, read in place */
    assert_int_equal(vlad_worker_submit(w), 0);
    assert_int_equal(vlad_worker_submit(w), VLAD_EAGAIN); /* one at a time */
    const vlad_infer_result *r = vlad_worker_wait(w, 5000, -1);
    assert_non_null(r);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->req.id, 1);
    assert_true(r->actions[5] == 10 + 5 + 3);
    assert_true(r->latency_ns >= 0);
    assert_string_equal(seen_prompt, "touch red");
    assert_false(vlad_worker_idle(w)); /* until released */
    vlad_worker_release(w);
    assert_true(vlad_worker_idle(w));
    assert_int_equal(vlad_worker_completed(w), 1);

    /* an error travels back with its message */
    job->req.obs_tick = -1;
    pthread_mutex_lock(&mu);
    snprintf(prompt, sizeof prompt, "touch blue");
    pthread_mutex_unlock(&mu);
    vlad_worker_submit(w);
    r = vlad_worker_wait(w, 5000, -1);
    assert_non_null(r);
    assert_int_equal(r->status, VLAD_EINVAL);
    assert_non_null(strstr(r->error, "negative obs tick -1"));
    assert_string_equal(seen_prompt, "touch blue");
    vlad_worker_release(w);
    /* waiting with nothing in flight returns at once */
    assert_null(vlad_worker_wait(w, 1000, -1));
    vlad_worker_free(w);
    vlad_worker_free(NULL);
}

static void test_padding(void **state) {
    (void)state;
    vlad_policy_ops ops = {.horizon = 4, .dim = 2, .infer = fake_infer};
    vlad_worker *w = vlad_worker_new(&ops, 4, 30 * VLAD_NS_PER_MS, true, NULL, NULL, NULL);
    assert_non_null(w);
    vlad_worker_job(w)->req.obs_tick = 1;
    vlad_worker_submit(w);
    const vlad_infer_result *r = vlad_worker_wait(w, 5000, -1);
    assert_non_null(r);
    /* the reported latency includes the emulated minimum */
    assert_true(r->latency_ns >= 30 * VLAD_NS_PER_MS);
    vlad_worker_release(w);
    vlad_worker_free(w);
}

/* the lockstep wait returns at once when the abort fd becomes readable (an e-stop) */
static int slow_infer(void *self, const vlad_infer_job *job, float *actions, vlad_err *err) {
    (void)self, (void)job, (void)err, (void)actions;
    vlad_sleep_until_ns(vlad_now_ns() + 300 * VLAD_NS_PER_MS);
    return VLAD_OK;
}

static void test_wait_aborts(void **state) {
    (void)state;
    vlad_policy_ops ops = {.horizon = 4, .dim = 2, .infer = slow_infer};
    vlad_worker *w = vlad_worker_new(&ops, 4, 0, false, NULL, NULL, NULL);
    assert_non_null(w);
    int fd = eventfd(0, EFD_NONBLOCK);
    uint64_t one = 1;
    assert_int_equal(write(fd, &one, sizeof one), sizeof one);
    vlad_worker_submit(w);
    int64_t t0 = vlad_now_ns();
    assert_null(vlad_worker_wait(w, 5000, fd)); /* not done, cut short */
    assert_true(vlad_now_ns() - t0 < 250 * VLAD_NS_PER_MS);
    uint64_t v;
    assert_int_equal(read(fd, &v, sizeof v), sizeof v);
    const vlad_infer_result *r = vlad_worker_wait(w, 5000, fd); /* nothing pending: waits */
    assert_non_null(r);
    vlad_worker_release(w);
    vlad_worker_free(w);
    close(fd);
}

static void test_bad_ops(void **state) {
    (void)state;
    vlad_err err;
    vlad_policy_ops ops = {.horizon = 0, .dim = 2, .infer = fake_infer};
    assert_null(vlad_worker_new(&ops, 4, 0, false, NULL, NULL, &err));
    ops.horizon = 4;
    ops.infer = NULL;
    assert_null(vlad_worker_new(&ops, 4, 0, false, NULL, NULL, &err));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_padding), cmocka_unit_test(test_wait_aborts),
        cmocka_unit_test(test_bad_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
