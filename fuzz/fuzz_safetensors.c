/* fuzz_safetensors — the .safetensors reader (common/safetensors.h) and, when the container
 * parses, the checkpoint loader (policy/model.h) on the same bytes.
 *
 * The input is written to one memfd per process (reused: truncated and rewritten for each
 * input) and opened by its /proc/self/fd path, as a real file would be. Everything the reader
 * accepts is checked against what it promises: tensors inside the data section, byte sizes
 * matching shapes, no two non-empty tensors overlapping, names unique.
 *
 * Structured mode, so that the loader's deep paths see more than the one seed that loads: an
 * input starting with 0xA5 is [0xA5][flags][patches...]. flags bit 0: a tiny F32 checkpoint,
 * else BF16 (both written by vlad_model_write_random at start-up); bits 1-3: k spaces added to
 * the end of the JSON header, so the data section is misaligned by k. Each following triple
 * (offset high, offset low, x) XORs x into the file's byte at offset (modulo its size). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_util.h"
#include "model.h"
#include "safetensors.h"

static int g_fd = -1;
static char g_path[64];
static uint8_t *g_tpl[2]; /* [0] BF16, [1] F32 tiny checkpoints */
static size_t g_tpl_len[2];

/* The tiny config of fuzz/gen_corpus.c: every tensor present, each a few elements. */
static vlad_config tiny_config(void) {
    vlad_config c = vlad_config_default();
    c.image_size = 2, c.patch_size = 1, c.n_cameras = 1;
    c.vit_width = 2, c.vit_depth = 1, c.vit_heads = 1, c.vit_mlp = 1;
    c.width = 2, c.depth = 1, c.n_heads = 1, c.head_dim = 2, c.mlp = 1;
    c.expert_width = 2, c.expert_mlp = 1;
    c.max_prompt_tokens = 0, c.max_text_tokens = 1;
    c.state_dim = 1, c.action_dim = 1, c.chunk_size = 1, c.flow_steps = 1;
    return c;
}

static void make_template(int i) {
    vlad_config c = tiny_config();
    vlad_err err;
    if (vlad_model_write_random(&c, i ? VLAD_DT_F32 : VLAD_DT_BF16, 7, g_path, &err)) {
        fprintf(stderr, "fuzz_safetensors: template: %s\n", err.msg);
        abort();
    }
    off_t n = lseek(g_fd, 0, SEEK_END);
    FUZZ_CHECK(n > 0);
    g_tpl[i] = malloc((size_t)n);
    FUZZ_CHECK(g_tpl[i] && pread(g_fd, g_tpl[i], (size_t)n, 0) == n);
    g_tpl_len[i] = (size_t)n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    g_fd = memfd_create("fuzz_safetensors", MFD_CLOEXEC);
    if (g_fd < 0) {
        perror("fuzz_safetensors: memfd_create");
        abort();
    }
    snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
    make_template(0);
    make_template(1);
    return 0;
}

/* Structured mode: the file is a template checkpoint, padded and patched (see the top).
 * Returns a malloc'd file of *len bytes. */
static uint8_t *structured(const uint8_t *data, size_t size, size_t *len) {
    int f32 = size > 1 && (data[1] & 1);
    size_t pad = size > 1 ? (size_t)(data[1] >> 1) & 7 : 0;
    const uint8_t *t = g_tpl[f32];
    size_t tn = g_tpl_len[f32];
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++)
        hn |= (uint64_t)t[i] << (8 * i);
    FUZZ_CHECK(hn + 8 <= tn);
    size_t n = tn + pad;
    uint8_t *b = malloc(n);
    FUZZ_CHECK(b);
    uint64_t nh = hn + pad;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(nh >> (8 * i));
    memcpy(b + 8, t + 8, (size_t)hn);
    memset(b + 8 + hn, ' ', pad);
    memcpy(b + 8 + hn + pad, t + 8 + hn, tn - 8 - (size_t)hn);
    for (size_t i = 2; i + 3 <= size; i += 3)
        b[(((size_t)data[i] << 8) | data[i + 1]) % n] ^= data[i + 2];
    *len = n;
    return b;
}

static void put_input(const uint8_t *data, size_t size) {
    FUZZ_CHECK(ftruncate(g_fd, 0) == 0);
    size_t off = 0;
    while (off < size) {
        ssize_t w = pwrite(g_fd, data + off, size - off, (off_t)off);
        FUZZ_CHECK(w > 0);
        off += (size_t)w;
    }
}

static void check_file(const vlad_st_file *f, const uint8_t *data, size_t size) {
    FUZZ_CHECK(vlad_st_file_size(f) == size);
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++)
        hn |= (uint64_t)data[i] << (8 * i);
    FUZZ_CHECK(hn >= 2 && hn <= size - 8);
    size_t data_size = size - 8 - (size_t)hn;
    int n = vlad_st_count(f);
    FUZZ_CHECK(n >= 0);
    FUZZ_CHECK(vlad_st_get(f, -1) == NULL && vlad_st_get(f, n) == NULL);
    for (int i = 0; i < n; i++) {
        const vlad_st_tensor *t = vlad_st_get(f, i);
        FUZZ_CHECK(t && t->name);
        FUZZ_CHECK(vlad_st_find(f, t->name) == t); /* names are unique */
        FUZZ_CHECK(vlad_dtype_size(t->dtype) > 0);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= VLAD_ST_MAX_DIMS);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0);
            numel *= t->shape[d];
        }
        FUZZ_CHECK(numel == t->numel);
        FUZZ_CHECK(t->begin <= t->end && t->end <= data_size);
        FUZZ_CHECK(t->nbytes == t->end - t->begin);
        FUZZ_CHECK(t->nbytes == (size_t)t->numel * vlad_dtype_size(t->dtype));
        if (t->nbytes) {
            FUZZ_CHECK(vlad_st_owns(f, t->data) && vlad_st_owns(f, t->data + t->nbytes - 1));
            /* the mapping holds the file's bytes */
            FUZZ_CHECK(!memcmp(t->data, data + 8 + hn + t->begin, t->nbytes));
        }
        for (int k = 0; k < i; k++) {
            const vlad_st_tensor *u = vlad_st_get(f, k);
            if (t->nbytes && u->nbytes)
                FUZZ_CHECK(t->end <= u->begin || u->end <= t->begin);
        }
        if (t->dtype == VLAD_DT_BF16 && t->numel > 0 && t->numel <= 4096) {
            float *tmp = malloc((size_t)t->numel * sizeof *tmp);
            FUZZ_CHECK(tmp);
            vlad_bf16_to_f32_n(tmp, t->data, (size_t)t->numel);
            free(tmp);
        }
    }
    static const char *const keys[] = {"vlad.format", "vlad.config", "format", ""};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *v = vlad_st_meta(f, keys[i]);
        if (v)
            (void)strlen(v);
    }
    /* a name no tensor has (each name plus a character that JSON strings rarely hold) */
    if (n > 0) {
        char q[64];
        snprintf(q, sizeof q, "%.60s\x7f", vlad_st_get(f, 0)->name);
        const vlad_st_tensor *want = NULL;
        for (int i = 0; i < n && !want; i++)
            if (!strcmp(vlad_st_get(f, i)->name, q))
                want = vlad_st_get(f, i);
        FUZZ_CHECK(vlad_st_find(f, q) == want);
    }
}

static void check_model(void) {
    vlad_model *m = NULL;
    vlad_err err;
    int rc = vlad_model_load(g_path, &m, &err);
    if (rc) {
        fuzz_check_err(&err, rc);
        FUZZ_CHECK(m == NULL);
        return;
    }
    FUZZ_CHECK(m && vlad_config_validate(&m->cfg, &err) == 0);
    FUZZ_CHECK(vlad_model_param_count(m) == vlad_config_param_count(&m->cfg));
    FUZZ_CHECK(m->w.state_std && m->w.action_std);
    for (int i = 0; i < m->cfg.state_dim; i++)
        FUZZ_CHECK(m->w.state_std[i] > 0.0f);
    for (int i = 0; i < m->cfg.action_dim; i++)
        FUZZ_CHECK(m->w.action_std[i] > 0.0f);
    FUZZ_CHECK(vlad_model_widen_all(m, &err) == 0);
    FUZZ_CHECK(m->matrix_dtype == VLAD_DT_F32);
    vlad_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *owned = NULL;
    if (size >= 1 && data[0] == 0xA5) {
        owned = structured(data, size, &size);
        data = owned;
    }
    put_input(data, size);
    vlad_st_file *f = NULL;
    vlad_err err;
    int rc = vlad_st_open(g_path, &f, &err);
    if (rc) {
        fuzz_check_err(&err, rc);
        FUZZ_CHECK(f == NULL);
    } else {
        check_file(f, data, size);
        vlad_st_close(f);
        check_model();
    }
    free(owned);
    return 0;
}
