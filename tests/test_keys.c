/* Key files, rights and the keyring (robot_io/keys.h); endpoint parsing (common/endpoint.h). */
#include <setjmp.h>
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

#include "endpoint.h"
#include "keys.h"

static char dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/vlad-keys-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 0;
}

static void test_rights(void **state) {
    (void)state;
    unsigned r;
    char buf[64];
    assert_int_equal(vlad_rights_parse("observe,command", &r, NULL), 0);
    assert_int_equal(r, VLAD_RIGHT_OBSERVE | VLAD_RIGHT_COMMAND);
    vlad_rights_format(r, buf, sizeof buf);
    assert_string_equal(buf, "observe,command");
    assert_int_equal(vlad_rights_parse("all", &r, NULL), 0);
    assert_int_equal(r, VLAD_RIGHTS_ALL);
    /* infer (vlad-serve's socket): a right of its own, part of "all" */
    assert_true(VLAD_RIGHTS_ALL & VLAD_RIGHT_INFER);
    assert_int_equal(VLAD_RIGHTS_ALL, VLAD_RIGHT_OBSERVE | VLAD_RIGHT_PUBLISH |
                                          VLAD_RIGHT_COMMAND | VLAD_RIGHT_INFER);
    vlad_rights_format(VLAD_RIGHTS_ALL, buf, sizeof buf);
    assert_string_equal(buf, "observe,publish,command,infer");
    assert_int_equal(vlad_rights_parse("infer", &r, NULL), 0);
    assert_int_equal(r, VLAD_RIGHT_INFER);
    assert_int_equal(vlad_rights_parse("observe, infer", &r, NULL), 0);
    assert_int_equal(r, VLAD_RIGHT_OBSERVE | VLAD_RIGHT_INFER);
    vlad_rights_format(r, buf, sizeof buf);
    assert_string_equal(buf, "observe,infer");
    assert_int_equal(vlad_rights_parse("", &r, NULL), 0);
    assert_int_equal(r, 0);
    vlad_err err;
    assert_int_equal(vlad_rights_parse("observe,root", &r, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "'root'"));
}

static void test_generate_read(void **state) {
    (void)state;
    char b[128], p[160];
    snprintf(b, sizeof b, "%s/op", dir);
    vlad_err err;
    assert_int_equal(vlad_cert_generate(b, "operator", VLAD_RIGHT_COMMAND, &err), 0);
    assert_int_equal(vlad_cert_generate(b, "operator", VLAD_RIGHT_COMMAND, &err), VLAD_ESTATE); /* never overwritten */
    vlad_cert pub, sec;
    snprintf(p, sizeof p, "%s.key", b);
    assert_int_equal(vlad_cert_read(p, false, &pub, &err), 0);
    assert_string_equal(pub.name, "operator");
    assert_int_equal(pub.rights, VLAD_RIGHT_COMMAND);
    assert_string_equal(pub.secret_key, "");
    assert_int_not_equal(vlad_cert_read(p, true, &sec, &err), 0); /* no secret in a public cert */
    snprintf(p, sizeof p, "%s.key_secret", b);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(vlad_cert_read(p, true, &sec, &err), 0);
    assert_string_equal(sec.public_key, pub.public_key);
    /* loose permissions: refused, with the fix */
    assert_int_equal(chmod(p, 0644), 0);
    assert_int_equal(vlad_cert_read(p, true, &sec, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_int_equal(chmod(p, 0600), 0);
    assert_int_equal(vlad_cert_read(p, true, &sec, &err), 0);
    /* the infer right (a daemon's key for vlad-serve) is written and read back */
    snprintf(b, sizeof b, "%s/arm", dir);
    assert_int_equal(vlad_cert_generate(b, "arm", VLAD_RIGHT_INFER, &err), 0);
    snprintf(p, sizeof p, "%s.key", b);
    assert_int_equal(vlad_cert_read(p, false, &pub, &err), 0);
    assert_int_equal(pub.rights, VLAD_RIGHT_INFER);
    /* a public key that does not belong to the secret key */
    char other[41], osec[41];
    assert_int_equal(zmq_curve_keypair(other, osec), 0);
    char q[160];
    snprintf(q, sizeof q, "%s/mismatch.key_secret", dir);
    FILE *f = fopen(q, "w");
    fprintf(f, "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", other, sec.secret_key);
    fclose(f);
    chmod(q, 0600);
    assert_int_equal(vlad_cert_read(q, true, &sec, &err), VLAD_EINVAL);
    if (!strstr(err.msg, "does not belong"))
        fail_msg("got: %s", err.msg);
    /* not a regular file */
    assert_int_not_equal(vlad_cert_read(dir, false, &pub, &err), 0);
}

static void test_keyring(void **state) {
    (void)state;
    char kd[128], b[160];
    snprintf(kd, sizeof kd, "%s/clients", dir);
    assert_int_equal(mkdir(kd, 0755), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(b, sizeof b, "%s/c%d", kd, i);
        assert_int_equal(vlad_cert_generate(b, "c", (unsigned)i, NULL), 0);
    }
    vlad_keyring *kr = malloc(sizeof *kr);
    vlad_err err;
    assert_int_equal(vlad_keyring_load(kd, kr, &err), 0); /* *.key only, not *.key_secret */
    assert_int_equal(kr->n, 3);
    uint8_t raw[32];
    assert_non_null(zmq_z85_decode(raw, kr->keys[1].public_key));
    const vlad_cert *c = vlad_keyring_find(kr, raw);
    assert_non_null(c);
    assert_string_equal(c->public_key, kr->keys[1].public_key);
    raw[0] ^= 1;
    assert_null(vlad_keyring_find(kr, raw));
    assert_int_not_equal(vlad_keyring_load("/nonexistent/keys", kr, &err), 0);
    free(kr);
}

static void test_endpoints(void **state) {
    (void)state;
    vlad_endpoint e;
    vlad_err err;
    assert_int_equal(vlad_endpoint_parse("tcp://localhost:5550", &e, &err), 0);
    assert_true(e.loopback);
    assert_string_equal(e.bind, "tcp://127.0.0.1:5550"); /* ZeroMQ binds addresses, not names */
    assert_int_equal(vlad_endpoint_parse("tcp://[::1]:7", &e, &err), 0);
    assert_true(e.loopback && e.ipv6);
    assert_string_equal(e.bind, "tcp://[::1]:7");
    assert_int_equal(vlad_endpoint_parse("tcp://*:5550", &e, &err), 0);
    assert_false(e.loopback);
    assert_int_equal(vlad_endpoint_parse("tcp://10.1.2.3:9", &e, &err), 0);
    assert_false(e.loopback);
    assert_int_equal(vlad_endpoint_parse("ipc:///tmp/x", &e, &err), 0);
    assert_true(e.loopback);
    assert_int_equal(vlad_endpoint_parse("tcp://127.0.0.1:1;*:6000", &e, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "source;destination"));
    assert_int_equal(vlad_endpoint_parse("tcp://127.0.0.1:99999", &e, &err), VLAD_EINVAL);
    assert_non_null(strstr(err.msg, "1..65535"));
    assert_int_equal(vlad_endpoint_parse("tcp://::1:5", &e, &err), VLAD_EINVAL);
    assert_int_equal(vlad_endpoint_parse("tcp://[nope]:5", &e, &err), VLAD_EINVAL);
    assert_int_equal(vlad_endpoint_parse("udp://127.0.0.1:5", &e, &err), VLAD_EINVAL);
    assert_int_equal(vlad_endpoint_parse("ipc://", &e, &err), VLAD_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rights), cmocka_unit_test(test_generate_read),
        cmocka_unit_test(test_keyring), cmocka_unit_test(test_endpoints),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
