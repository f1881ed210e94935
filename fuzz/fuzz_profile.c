/* fuzz_profile — the YAML robot profile loader.
 *
 * Input starting with the line "#set": every further line "key=value" is applied with
 * vlad_profile_set to a valid base profile (a refused value is discarded, as vlad --set does
 * on error). Any other input: the whole of it is a profile for vlad_profile_load_string.
 * Whatever is accepted must pass vlad_profile_validate and hold terminated strings, and must
 * not name a key twice (an independent check on libyaml's tree: a key given once dotted,
 * "policy.threads: 2", and once nested, "policy: {threads: 3}", was taken, the last one winning;
 * fuzz/crashes/fuzz_profile/dotted-and-nested-duplicate.yaml).
 *
 * Checks of bugs reported but not fixed yet (fuzz/crashes/open/) go under g_open: they run only
 * with VLAD_FUZZ_OPEN=1 in the environment, so that `make test-fuzz` stays green meanwhile
 * (none at present). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "fuzz_util.h"
#include "profile.h"
#include "validate.h"

static const char k_base[] =
    "robot: fz\n"
    "control_hz: 50\n"
    "joints:\n"
    "  - {name: j0, min: -1, max: 1, max_velocity: 2}\n"
    "  - {name: j1, min: -2, max: 2, max_velocity: 2, home: 0.5}\n"
    "cameras:\n"
    "  - {name: front, width: 4, height: 3, rate_hz: 10}\n"
    "policy:\n"
    "  model: models/m.safetensors\n";

static vlad_profile g_base;
static int g_open; /* VLAD_FUZZ_OPEN=1: also the checks of open bugs (none at present) */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *o = getenv("VLAD_FUZZ_OPEN");
    g_open = o && !strcmp(o, "1");
    vlad_err err;
    if (vlad_profile_load_string(&g_base, k_base, sizeof k_base - 1, "configs/fz.yaml", &err)) {
        fprintf(stderr, "fuzz_profile: base profile: %s\n", err.msg);
        abort();
    }
    return 0;
}

#define TERMINATED(a) FUZZ_CHECK(memchr((a), '\0', sizeof(a)) != NULL)

static void check_profile(const vlad_profile *p) {
    vlad_err err;
    int rc = vlad_profile_validate(p, &err);
    if (rc) {
        fprintf(stderr, "accepted profile fails validation: %s\n", err.msg);
        FUZZ_CHECK(rc == 0);
    }
    FUZZ_CHECK(p->n_joints >= 1 && p->n_joints <= VLAD_MAX_JOINTS);
    FUZZ_CHECK(p->n_cameras >= 0 && p->n_cameras <= VLAD_MAX_CAMERAS);
    TERMINATED(p->path);
    TERMINATED(p->robot);
    TERMINATED(p->endpoints.observations);
    TERMINATED(p->endpoints.actions);
    TERMINATED(p->endpoints.control);
    TERMINATED(p->policy.model);
    TERMINATED(p->policy.instruction);
    TERMINATED(p->safety.estop_file);
    TERMINATED(p->logging.file);
    TERMINATED(p->sim.model);
    for (int i = 0; i < p->n_joints; i++) {
        TERMINATED(p->joints[i].name);
        FUZZ_CHECK(vlad_profile_joint_index(p, p->joints[i].name) == i); /* names unique */
        FUZZ_CHECK(p->joints[i].min < p->joints[i].max);
    }
    for (int i = 0; i < p->n_cameras; i++) {
        TERMINATED(p->cameras[i].name);
        FUZZ_CHECK(vlad_profile_camera_index(p, p->cameras[i].name) == i);
        FUZZ_CHECK(p->cameras[i].width >= 1 && p->cameras[i].height >= 1);
    }
    /* the security rule: without CURVE, every endpoint reaches this host only */
    if (!p->security.server_public_key[0]) {
        FUZZ_CHECK(vlad_endpoint_is_local(p->endpoints.observations));
        FUZZ_CHECK(vlad_endpoint_is_local(p->endpoints.actions));
        FUZZ_CHECK(vlad_endpoint_is_local(p->endpoints.control));
    }
    FUZZ_CHECK(strcmp(p->endpoints.observations, p->endpoints.actions) &&
               strcmp(p->endpoints.observations, p->endpoints.control) &&
               strcmp(p->endpoints.actions, p->endpoints.control));
    FUZZ_CHECK(!p->security.server_secret_key[0] && !p->security.client_secret_key[0]);
    FUZZ_CHECK(p->async.trigger_threshold <= p->async.execution_horizon);
    FUZZ_CHECK(vlad_max_observation_frame(p) >= 64 * 1024);
    (void)vlad_async_mode_name(p->async.mode);
    (void)vlad_clock_mode_name(p->clock);
}

/* ---- an independent duplicate-key oracle: every scalar key of the document as a dotted
 * path (mappings flattened, the joints/cameras lists left out), any path twice = a duplicate */

typedef struct {
    char (*keys)[160];
    int n, cap;
    int dup;
} keyset;

static void add_key(keyset *ks, const char *k) {
    for (int i = 0; i < ks->n; i++)
        if (!strcmp(ks->keys[i], k))
            ks->dup = 1;
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? 2 * ks->cap : 32;
        ks->keys = realloc(ks->keys, (size_t)ks->cap * sizeof *ks->keys);
        FUZZ_CHECK(ks->keys);
    }
    snprintf(ks->keys[ks->n++], sizeof ks->keys[0], "%s", k);
}

static void flatten(yaml_document_t *d, yaml_node_t *m, const char *prefix, keyset *ks,
                    int depth) {
    if (!m || m->type != YAML_MAPPING_NODE || depth > 8)
        return;
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(d, pr->key);
        yaml_node_t *v = yaml_document_get_node(d, pr->value);
        if (!k || k->type != YAML_SCALAR_NODE)
            continue;
        char full[160];
        snprintf(full, sizeof full, "%s%s", prefix, (const char *)k->data.scalar.value);
        if (v && v->type == YAML_MAPPING_NODE) {
            char sub[170];
            snprintf(sub, sizeof sub, "%s.", full);
            flatten(d, v, sub, ks, depth + 1);
        } else {
            add_key(ks, full);
        }
    }
}

/* 1 if the YAML text parses and names some key twice. */
static int has_duplicate_key(const uint8_t *data, size_t size) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return 0;
    yaml_parser_set_input_string(&parser, data, size);
    int dup = 0;
    if (yaml_parser_load(&parser, &doc)) {
        keyset ks = {0};
        flatten(&doc, yaml_document_get_root_node(&doc), "", &ks, 0);
        dup = ks.dup;
        free(ks.keys);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return dup;
}

static void set_mode(const char *text) {
    vlad_profile good = g_base, work = g_base;
    char *buf = strdup(text);
    FUZZ_CHECK(buf);
    int lines = 0;
    for (char *line = buf, *next; line && lines < 64; line = next, lines++) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        vlad_err err;
        int rc = vlad_profile_set(&work, line, eq + 1, &err);
        if (rc) {
            fuzz_check_err(&err, rc);
            work = good; /* discard the rejected value */
        } else {
            check_profile(&work);
            good = work;
        }
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size >= 5 && !memcmp(data, "#set\n", 5)) {
        char *s = fuzz_strdup(data + 5, size - 5);
        set_mode(s);
        free(s);
        return 0;
    }
    vlad_profile *p = malloc(sizeof *p);
    FUZZ_CHECK(p);
    vlad_err err;
    /* the loader takes a length: the text need not be terminated */
    int rc = vlad_profile_load_string(p, (const char *)data, size, "configs/fuzz.yaml", &err);
    if (rc)
        fuzz_check_err(&err, rc);
    else
        check_profile(p);
    (void)g_open;
    if (!rc && has_duplicate_key(data, size)) {
        fprintf(stderr, "a profile naming a key twice was accepted\n");
        FUZZ_CHECK(rc != 0);
    }
    free(p);
    return 0;
}
