/* Security, against the real `vlad` on loopback TCP with CURVE: only keys in the daemon's
 * client folder get in, each with its rights; an unknown key gets nothing and commands
 * nothing; any known key may e-stop; secret keys with loose permissions and secret keys in a
 * profile are refused; a subscription flood does not grow the daemon; refusals reach their
 * sender with the request id; oversized frames are counted; localhost and [::1] bind. */
#include <errno.h>
#include <math.h>
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
#include <zmq.h>
#include <cmocka.h>

#include "client.h"
#include "clock.h"
#include "frame.h"
#include "harness.h"
#include "keys.h"
#include "proc.h"

static char dir[64], profile_path[160], log_path[160], keys_dir[160];
static char key_robot[160], key_operator[160], key_viewer[160], key_stranger[160], key_server[160];
static vlad_profile prof;
static pid_t daemon_pid = -1;
static int ports[3];

static void base(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

/* write a profile; extra: more YAML lines */
static void write_profile(const char *server_pub, const char *extra) {
    vh_write_file(profile_path,
                  "robot: secbot\ncontrol_hz: 50\n"
                  "joints:\n  - {name: a, min: -1, max: 1, max_velocity: 5}\n"
                  "  - {name: b, min: -1, max: 1, max_velocity: 5}\n"
                  "endpoints:\n  observations: tcp://127.0.0.1:%d\n  actions: tcp://127.0.0.1:%d\n"
                  "  control: tcp://127.0.0.1:%d\n"
                  "safety: {watchdog_ms: 200, estop_file: %s/estop}\n"
                  "security:\n  curve_server_public_key: \"%s\"\n  server_key_file: %s.key_secret\n"
                  "  client_keys_dir: %s\n%s",
                  ports[0], ports[1], ports[2], dir, server_pub, key_server, keys_dir,
                  extra ? extra : "");
}

static int setup(void **state) {
    (void)state;
    vh_tmpdir(dir, sizeof dir, "sec");
    snprintf(profile_path, sizeof profile_path, "%s/p.yaml", dir);
    snprintf(log_path, sizeof log_path, "%s/vlad.log", dir);
    snprintf(keys_dir, sizeof keys_dir, "%s/clients", dir);
    assert_int_equal(mkdir(keys_dir, 0755), 0);
    base(key_server, sizeof key_server, "server");
    base(key_robot, sizeof key_robot, "robot");
    base(key_operator, sizeof key_operator, "operator");
    base(key_viewer, sizeof key_viewer, "viewer");
    base(key_stranger, sizeof key_stranger, "stranger");
    vh_gen_key(key_server, "daemon", "", NULL);
    vh_gen_key(key_robot, "robot", "publish,observe", keys_dir);
    vh_gen_key(key_operator, "operator", "observe,command", keys_dir);
    vh_gen_key(key_viewer, "viewer", "observe", keys_dir);
    vh_gen_key(key_stranger, "stranger", "all", NULL); /* never given to the daemon */
    vh_free_ports(ports, 3);
    vlad_cert sc;
    char p[200];
    snprintf(p, sizeof p, "%s.key_secret", key_server);
    assert_int_equal(vlad_cert_read(p, true, &sc, NULL), 0);
    write_profile(sc.public_key, NULL);
    vh_load_profile(&prof, profile_path);
    daemon_pid = vh_start("vlad", profile_path, log_path, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vh_stop(&daemon_pid, 5000);
    vh_rmdir(dir);
    return 0;
}

static vlad_client *client(const char *b, unsigned flags) {
    char p[200];
    snprintf(p, sizeof p, "%s.key_secret", b);
    vlad_err err;
    vlad_client *c = vlad_client_new_keyed(&prof, flags, p, &err);
    if (!c)
        fail_msg("%s", err.msg);
    return c;
}

static Vlad__Reply *command(vlad_client *c, int body, const char *text, int timeout_ms) {
    vh_cmd b;
    Vlad__Command *cmd = vh_command(&b, body, body == VLAD__COMMAND__BODY_ESTOP ? "test" : text);
    Vlad__Reply *r = NULL;
    vlad_err err;
    if (vlad_client_command(c, cmd, timeout_ms, &r, &err))
        return NULL;
    return r;
}

/* the daemon's Status (free with vlad__status__free_unpacked), asked up to 20 times */
static Vlad__Status *status_of(vlad_client *c) {
    Vlad__Status *st = vh_wait_status(c, 500, 20, NULL, NULL);
    if (!st)
        fail_msg("no status reply");
    return st;
}

static void publish_obs(vlad_client *c, int64_t tick) {
    double pos[2] = {0.1, -0.2};
    Vlad__Observation o = VLAD__OBSERVATION__INIT;
    o.tick = tick;
    o.stamp_ns = vlad_now_ns();
    o.n_joint_pos = 2;
    o.joint_pos = pos;
    assert_int_equal(vlad_client_publish_observation(c, &o, NULL), 0);
}

static void test_keys_and_rights(void **state) {
    (void)state;
    vlad_client *op = client(key_operator, VLAD_CLIENT_CONTROL | VLAD_CLIENT_ACTIONS);
    Vlad__Status *st = status_of(op);
    assert_true(st->curve);
    assert_int_equal(st->client_keys, 3);
    vlad__status__free_unpacked(st, NULL);

    /* the robot publishes; the operator sees actions */
    vlad_client *robot = client(key_robot, VLAD_CLIENT_PUBLISH);
    Vlad__Action *a = NULL;
    for (int i = 0; i < 100 && !a; i++) {
        publish_obs(robot, i);
        vlad_err err;
        if (vlad_client_recv_action(op, 50, &a, &err))
            a = NULL;
    }
    assert_non_null(a);
    vlad__action__free_unpacked(a, NULL);

    /* a stranger (a fresh keypair the daemon was never given) gets nothing and commands nothing */
    st = status_of(op);
    uint64_t refused0 = st->handshakes_refused, obs0 = st->observations_received;
    vlad__status__free_unpacked(st, NULL);
    vlad_client *stranger = client(key_stranger, VLAD_CLIENT_CONTROL | VLAD_CLIENT_ACTIONS |
                                                     VLAD_CLIENT_PUBLISH);
    assert_null(command(stranger, VLAD__COMMAND__BODY_ESTOP, NULL, 500));
    assert_null(command(stranger, VLAD__COMMAND__BODY_RESET, NULL, 300));
    for (int i = 0; i < 20; i++)
        publish_obs(stranger, 1000 + i);
    vlad_err err;
    assert_int_equal(vlad_client_recv_action(stranger, 300, &a, &err), VLAD_ETIMEOUT);
    vlad_client_free(stranger);
    st = status_of(op);
    printf("# handshakes refused %llu -> %llu\n", (unsigned long long)refused0,
           (unsigned long long)st->handshakes_refused);
    assert_true(st->handshakes_refused >= refused0 + 3); /* control, actions, observations */
    assert_int_not_equal(st->mode, VLAD__MODE__MODE_ESTOP); /* the stranger's e-stop did nothing */
    uint64_t obs_now = st->observations_received;
    vlad__status__free_unpacked(st, NULL);
    (void)obs0;
    /* none of the stranger's observations were counted (only the robot's earlier ones) */
    st = status_of(op);
    assert_int_equal(st->observations_received, obs_now);
    vlad__status__free_unpacked(st, NULL);

    /* a viewer may watch and e-stop, not command: its reset is refused with the reason and
     * its request id (so vladctl prints the reason and exits 1) */
    vlad_client *viewer = client(key_viewer, VLAD_CLIENT_CONTROL | VLAD_CLIENT_ACTIONS);
    Vlad__Reply *r = command(viewer, VLAD__COMMAND__BODY_RESET, NULL, 2000);
    assert_non_null(r);
    assert_false(r->ok);
    assert_non_null(strstr(r->error, "not authorised"));
    vlad__reply__free_unpacked(r, NULL);
    r = command(viewer, VLAD__COMMAND__BODY_ESTOP, NULL, 2000);
    assert_non_null(r);
    assert_true(r->ok);
    vlad__reply__free_unpacked(r, NULL);
    r = command(viewer, VLAD__COMMAND__BODY_RELEASE_ESTOP, NULL, 2000);
    assert_non_null(r);
    assert_false(r->ok); /* releasing moves the robot: the command right */
    vlad__reply__free_unpacked(r, NULL);
    r = command(op, VLAD__COMMAND__BODY_RELEASE_ESTOP, NULL, 2000);
    assert_non_null(r);
    assert_true(r->ok);
    assert_true(r->status->commands_denied >= 2);
    vlad__reply__free_unpacked(r, NULL);

    /* vladctl with the operator key: status works; with a bad instruction the refusal's
     * reason arrives (exit 1), not "no reply" (exit 3) */
    char cmd[1024], big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    snprintf(cmd, sizeof cmd, "%s --profile %s --key %s.key_secret status >/dev/null",
             vlad_proc_bin("vladctl"), profile_path, key_operator);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --profile %s --key %s.key_secret instruction %s >/dev/null",
             vlad_proc_bin("vladctl"), profile_path, key_operator, big);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 1);

    /* a subscription flood: thousands of distinct subscriptions are refused, none stored,
     * and actions keep flowing to the others */
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    vlad_cert vc, sc;
    char path[200];
    snprintf(path, sizeof path, "%s.key_secret", key_viewer);
    assert_int_equal(vlad_cert_read(path, true, &vc, NULL), 0);
    snprintf(path, sizeof path, "%s.key_secret", key_server);
    assert_int_equal(vlad_cert_read(path, true, &sc, NULL), 0);
    zmq_setsockopt(sub, ZMQ_CURVE_SERVERKEY, sc.public_key, 41);
    zmq_setsockopt(sub, ZMQ_CURVE_PUBLICKEY, vc.public_key, 41);
    zmq_setsockopt(sub, ZMQ_CURVE_SECRETKEY, vc.secret_key, 41);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", ports[1]);
    assert_int_equal(zmq_connect(sub, ep), 0);
    for (int i = 0; i < 20000; i++) {
        char t[32];
        int n = snprintf(t, sizeof t, "flood-%d", i);
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, t, (size_t)n);
    }
    usleep(500000);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    int got = 0;
    int64_t until = vlad_now_ns() + VLAD_NS_PER_S;
    int64_t tick = 5000;
    while (vlad_now_ns() < until) {
        publish_obs(robot, tick++);
        if (vlad_client_recv_action(op, 20, &a, &err) == VLAD_OK) {
            got++;
            vlad__action__free_unpacked(a, NULL);
        }
    }
    st = status_of(op);
    printf("# subscriptions refused %llu; %d actions in the second after the flood\n",
           (unsigned long long)st->subscriptions_refused, got);
    assert_true(st->subscriptions_refused >= 1000); /* (the client side drops beyond its HWM) */
    assert_true(got >= 25); /* 50 Hz: the stream did not stall */
    vlad__status__free_unpacked(st, NULL);

    /* an observation frame over the cap (under twice it) is counted, not silently lost */
    st = status_of(op);
    uint64_t over0 = st->oversized_frames;
    vlad__status__free_unpacked(st, NULL);
    {
        ctx = zmq_ctx_new();
        void *pub = zmq_socket(ctx, ZMQ_PUB);
        vlad_cert rc2;
        snprintf(path, sizeof path, "%s.key_secret", key_robot);
        assert_int_equal(vlad_cert_read(path, true, &rc2, NULL), 0);
        zmq_setsockopt(pub, ZMQ_CURVE_SERVERKEY, sc.public_key, 41);
        zmq_setsockopt(pub, ZMQ_CURVE_PUBLICKEY, rc2.public_key, 41);
        zmq_setsockopt(pub, ZMQ_CURVE_SECRETKEY, rc2.secret_key, 41);
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", ports[0]);
        assert_int_equal(zmq_connect(pub, ep), 0);
        size_t n = 100 * 1024; /* the cap is 64 KiB + per-camera room; no cameras here */
        char *junk = calloc(1, n);
        memcpy(junk, "obs.secbot ", 11);
        /* a PUB drops what it sends before its CURVE handshake is done, which takes a while on
         * a loaded machine: send a frame every 200 ms until the daemon has counted one (or
         * 20 s have passed: then the check below fails) */
        uint64_t over = over0;
        for (int i = 0; i < 100 && over < over0 + 1; i++) {
            zmq_send(pub, junk, n, ZMQ_DONTWAIT);
            usleep(200000);
            st = status_of(op);
            over = st->oversized_frames;
            vlad__status__free_unpacked(st, NULL);
        }
        free(junk);
        zmq_close(pub);
        zmq_ctx_term(ctx);
    }
    st = status_of(op);
    printf("# oversized frames %llu -> %llu\n", (unsigned long long)over0,
           (unsigned long long)st->oversized_frames);
    assert_true(st->oversized_frames >= over0 + 1);
    vlad__status__free_unpacked(st, NULL);
    vlad_client_free(viewer);
    vlad_client_free(robot);
    vlad_client_free(op);
}

/* the daemon refuses to start with a loose secret key, a secret key in the profile, or a
 * non-loopback endpoint without CURVE; a client refuses a loose key */
static void test_refusals(void **state) {
    (void)state;
    char p[200], cmd[600];
    snprintf(p, sizeof p, "%s.key_secret", key_operator);
    assert_int_equal(chmod(p, 0644), 0);
    vlad_err err;
    assert_null(vlad_client_new_keyed(&prof, VLAD_CLIENT_CONTROL, p, &err));
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_int_equal(chmod(p, 0600), 0);

    snprintf(p, sizeof p, "%s.key_secret", key_server);
    assert_int_equal(chmod(p, 0640), 0);
    snprintf(cmd, sizeof cmd, "%s --profile %s --set endpoints.control=tcp://127.0.0.1:%d "
             "--set endpoints.actions=tcp://127.0.0.1:%d --set endpoints.observations=tcp://127.0.0.1:%d "
             "> %s/start.log 2>&1", vlad_proc_bin("vlad"), profile_path, ports[2] + 0, ports[1] + 0,
             ports[0] + 0, dir);
    /* (same ports: it must fail on the key before it would fail to bind) */
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) != 0);
    snprintf(cmd, sizeof cmd, "grep -q 'chmod 600' %s/start.log", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(chmod(p, 0600), 0);

    snprintf(cmd, sizeof cmd,
             "%s --check --profile %s --set 'security.curve_server_secret_key=%s' > %s/c.log 2>&1",
             vlad_proc_bin("vlad"), profile_path, "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6", dir);
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) != 0);
    snprintf(cmd, sizeof cmd, "grep -q 'does not belong in a profile' %s/c.log", dir);
    assert_int_equal(system(cmd), 0);

    snprintf(cmd, sizeof cmd,
             "%s --check --profile %s --set 'security.curve_server_public_key=' "
             "--set 'endpoints.control=tcp://*:%d' > %s/c2.log 2>&1",
             vlad_proc_bin("vlad"), profile_path, ports[2], dir);
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) != 0);
    snprintf(cmd, sizeof cmd, "grep -q 'requires CURVE' %s/c2.log", dir);
    assert_int_equal(system(cmd), 0);

    /* ZeroMQ's source;destination form is refused before anything binds */
    snprintf(cmd, sizeof cmd,
             "%s --check --profile %s --set 'endpoints.control=tcp://127.0.0.1:1;*:%d' > %s/c3.log 2>&1",
             vlad_proc_bin("vlad"), profile_path, ports[2], dir);
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) != 0);
}

/* localhost and [::1] are loopback and bind (plain sockets, no keys needed) */
static void test_loopback_names_bind(void **state) {
    (void)state;
    char p2[200], l2[200];
    snprintf(p2, sizeof p2, "%s/plain.yaml", dir);
    snprintf(l2, sizeof l2, "%s/plain.log", dir);
    int pp[3];
    vh_free_ports(pp, 3);
    vh_write_file(p2,
                  "robot: plainbot\ncontrol_hz: 50\n"
                  "joints:\n  - {name: a, min: -1, max: 1, max_velocity: 5}\n"
                  "endpoints:\n  observations: tcp://localhost:%d\n  actions: tcp://[::1]:%d\n"
                  "  control: tcp://localhost:%d\nsafety: {estop_file: none}\n",
                  pp[0], pp[1], pp[2]);
    static vlad_profile pr;
    vh_load_profile(&pr, p2);
    pid_t pid = vh_start("vlad", p2, l2, NULL);
    vlad_err err;
    vlad_client *c = vlad_client_new(&pr, VLAD_CLIENT_CONTROL | VLAD_CLIENT_ACTIONS | VLAD_CLIENT_PUBLISH,
                                     &err);
    assert_non_null(c);
    Vlad__Action *a = NULL;
    for (int i = 0; i < 100 && !a; i++) {
        double pos[1] = {0.2};
        Vlad__Observation o = VLAD__OBSERVATION__INIT;
        o.tick = i, o.n_joint_pos = 1, o.joint_pos = pos;
        vlad_client_publish_observation(c, &o, NULL);
        if (vlad_client_recv_action(c, 50, &a, &err))
            a = NULL;
    }
    assert_non_null(a); /* observations over localhost, actions over [::1] */
    vlad__action__free_unpacked(a, NULL);
    vlad_client_free(c);
    assert_int_equal(vh_stop(&pid, 5000), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_and_rights),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_loopback_names_bind),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
