/* fuzz_config — the model config JSON parser (policy/config.h): vlad_config_from_json and
 * vlad_config_validate. An accepted config must validate, its derived sizes must be sane, and
 * vlad_config_to_json must give text that parses back to the same config. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = fuzz_strdup(data, size);
    vlad_config c;
    memset(&c, 0x5a, sizeof c);
    vlad_config before = c;
    vlad_err err;
    int rc = vlad_config_from_json(s, &c, &err);
    free(s);
    if (rc) {
        fuzz_check_err(&err, rc);
        FUZZ_CHECK(rc == VLAD_EPARSE || rc == VLAD_ERANGE);
        FUZZ_CHECK(!memcmp(&c, &before, sizeof c)); /* *out untouched on error */
        return 0;
    }
    FUZZ_CHECK(vlad_config_validate(&c, &err) == 0);
    FUZZ_CHECK(vlad_config_validate(&c, NULL) == 0);
    FUZZ_CHECK(c.vocab_size == VLAD_VOCAB_SIZE);
    FUZZ_CHECK(vlad_cfg_n_patches(&c) >= 1);
    FUZZ_CHECK(vlad_cfg_kv_dim(&c) >= 2);
    FUZZ_CHECK(vlad_cfg_prefix_max(&c) >= 1 + c.max_prompt_tokens);
    FUZZ_CHECK(vlad_cfg_stream_max(&c) >= 3);
    FUZZ_CHECK(vlad_config_param_count(&c) > 0);

    char *js = vlad_config_to_json(&c);
    FUZZ_CHECK(js);
    vlad_config c2;
    rc = vlad_config_from_json(js, &c2, &err);
    if (rc)
        fprintf(stderr, "round trip of %s: %s\n", js, err.msg);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(!memcmp(&c, &c2, sizeof c)); /* every field is an int or a double: no padding */
    free(js);
    return 0;
}
