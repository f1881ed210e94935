#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "path.h"

#define ST_MAX_HEADER (64u << 20)

struct vlad_st_file {
    void *map;
    size_t size;
    cJSON *root;
    cJSON *meta;
    int n;
    vlad_st_tensor *t;
};

size_t vlad_dtype_size(vlad_dtype dt) {
    static const size_t sz[] = {4, 2, 1, 8};
    return (unsigned)dt < 4 ? sz[dt] : 0;
}
const char *vlad_dtype_name(vlad_dtype dt) {
    static const char *const nm[] = {"F32", "BF16", "U8", "I64"};
    return (unsigned)dt < 4 ? nm[dt] : "?";
}

uint16_t vlad_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {.f = f};
    if ((v.u & 0x7f800000u) == 0x7f800000u && (v.u & 0x007fffffu))
        return (uint16_t)((v.u >> 16) | 0x40u); /* quiet NaN */
    uint32_t lsb = (v.u >> 16) & 1u;
    v.u += 0x7fffu + lsb;
    return (uint16_t)(v.u >> 16);
}

void vlad_bf16_to_f32_n(float *dst, const void *src, size_t n) {
    const uint8_t *s = src;
    uint32_t *d = (uint32_t *)(void *)dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        d[i] = (uint32_t)h << 16;
    }
}

/* Non-finite = exponent bits all ones. Blocks of 4096 elements are reduced branch-free (the
 * compiler vectorises the inner loop; memcpy keeps any alignment legal); only a block that
 * holds a bad value is searched element by element. */
#define NF_BLOCK 4096

static int64_t nonfinite_f32(const uint8_t *p, size_t n, float *bad) {
    for (size_t b = 0; b < n; b += NF_BLOCK) {
        size_t m = n - b < NF_BLOCK ? n - b : NF_BLOCK;
        const uint8_t *q = p + 4 * b;
        uint32_t any = 0;
        for (size_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, q + 4 * i, 4);
            any |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (!any)
            continue;
        for (size_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, q + 4 * i, 4);
            if ((u & 0x7f800000u) == 0x7f800000u) {
                if (bad)
                    memcpy(bad, &u, 4);
                return (int64_t)(b + i);
            }
        }
    }
    return -1;
}

static int64_t nonfinite_bf16(const uint8_t *p, size_t n, float *bad) {
    for (size_t b = 0; b < n; b += NF_BLOCK) {
        size_t m = n - b < NF_BLOCK ? n - b : NF_BLOCK;
        const uint8_t *q = p + 2 * b;
        uint16_t any = 0;
        for (size_t i = 0; i < m; i++) {
            uint16_t h;
            memcpy(&h, q + 2 * i, 2);
            any |= (h & 0x7f80u) == 0x7f80u;
        }
        if (!any)
            continue;
        for (size_t i = 0; i < m; i++) {
            uint16_t h;
            memcpy(&h, q + 2 * i, 2);
            if ((h & 0x7f80u) == 0x7f80u) {
                if (bad)
                    *bad = vlad_bf16_to_f32(h);
                return (int64_t)(b + i);
            }
        }
    }
    return -1;
}

int64_t vlad_st_find_nonfinite(const vlad_st_tensor *t, float *bad) {
    if (t->dtype == VLAD_DT_F32)
        return nonfinite_f32(t->data, (size_t)t->numel, bad);
    if (t->dtype == VLAD_DT_BF16)
        return nonfinite_bf16(t->data, (size_t)t->numel, bad);
    return -1;
}

static const char *const k_other_dtypes[] = {"F16", "F64", "F8_E4M3", "F8_E5M2", "I8", "I16",
                                             "I32", "U16", "U32", "U64", "BOOL"};

static int cmp_begin(const void *a, const void *b) {
    const vlad_st_tensor *x = *(const vlad_st_tensor *const *)a;
    const vlad_st_tensor *y = *(const vlad_st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

static int parse_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j))
        return -1;
    double d = j->valuedouble;
    if (!(d >= 0) || d != floor(d) || d > 9007199254740992.0) /* 2^53 */
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static int parse_tensor(cJSON *it, vlad_st_tensor *t, size_t data_size, vlad_err *err) {
    const char *name = it->string;
    if (!cJSON_IsObject(it))
        return vlad_err_set(err, VLAD_EPARSE, "tensor '%s': header entry is not an object", name);
    cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt))
        return vlad_err_set(err, VLAD_EPARSE, "tensor '%s': missing dtype", name);
    if (!strcmp(dt->valuestring, "F32"))
        t->dtype = VLAD_DT_F32;
    else if (!strcmp(dt->valuestring, "BF16"))
        t->dtype = VLAD_DT_BF16;
    else if (!strcmp(dt->valuestring, "U8"))
        t->dtype = VLAD_DT_U8;
    else if (!strcmp(dt->valuestring, "I64"))
        t->dtype = VLAD_DT_I64;
    else {
        for (size_t i = 0; i < sizeof k_other_dtypes / sizeof *k_other_dtypes; i++)
            if (!strcmp(dt->valuestring, k_other_dtypes[i]))
                return vlad_err_set(err, VLAD_EINVAL,
                                    "tensor '%s': unsupported dtype '%s' (F32, BF16, U8 or I64)", name,
                                    dt->valuestring);
        return vlad_err_set(err, VLAD_EPARSE, "tensor '%s': unknown dtype '%.32s'", name,
                            dt->valuestring);
    }
    if (!cJSON_IsArray(sh))
        return vlad_err_set(err, VLAD_EPARSE, "tensor '%s': missing shape", name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > VLAD_ST_MAX_DIMS)
        return vlad_err_set(err, VLAD_EPARSE, "tensor '%s': %d dimensions (max %d)", name, nd,
                            VLAD_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    for (int d = 0; d < nd; d++) {
        uint64_t v;
        if (parse_u64(cJSON_GetArrayItem(sh, d), &v) || v > (1ull << 40))
            return vlad_err_set(err, VLAD_EPARSE, "tensor '%s': bad shape entry %d", name, d);
        t->shape[d] = (int64_t)v;
        if (v && numel > (1ull << 40) / v)
            return vlad_err_set(err, VLAD_EPARSE, "tensor '%s': shape too large", name);
        numel *= v;
    }
    t->numel = (int64_t)numel;
    uint64_t b, e;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || parse_u64(of->child, &b) ||
        parse_u64(of->child->next, &e))
        return vlad_err_set(err, VLAD_EPARSE, "tensor '%s': bad data_offsets", name);
    if (b > e)
        return vlad_err_set(err, VLAD_EPARSE, "tensor '%s': data_offsets [%llu, %llu] reversed",
                            name, (unsigned long long)b, (unsigned long long)e);
    if (e > data_size)
        return vlad_err_set(err, VLAD_ERANGE,
                            "tensor '%s': data_offsets [%llu, %llu] outside the file's data "
                            "section (%zu bytes)",
                            name, (unsigned long long)b, (unsigned long long)e, data_size);
    if (e - b != numel * vlad_dtype_size(t->dtype))
        return vlad_err_set(err, VLAD_EPARSE,
                            "tensor '%s': %llu bytes for %llu elements of %s", name,
                            (unsigned long long)(e - b), (unsigned long long)numel,
                            vlad_dtype_name(t->dtype));
    t->begin = (size_t)b;
    t->end = (size_t)e;
    t->nbytes = (size_t)(e - b);
    t->name = name;
    return 0;
}

int vlad_st_open(const char *path, vlad_st_file **out, vlad_err *err) {
    *out = NULL;
    /* a FIFO or device is refused without blocking (a FIFO would block open() and mmap
     * would fail on it; /dev/zero would map as an endless file of zeros) */
    int fd = vlad_open_regular(path, O_RDONLY, 0, err);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return vlad_err_set(err, VLAD_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return vlad_err_set(err, VLAD_EPARSE, "%s: bad header: file too short (%zu bytes)", path,
                            size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return vlad_err_set(err, VLAD_EIO, "%s: mmap: %s", path, strerror(errno));
    vlad_st_file *f = calloc(1, sizeof *f);
    if (!f) {
        munmap(map, size);
        return vlad_err_set(err, VLAD_ENOMEM, "%s: out of memory", path);
    }
    f->map = map;
    f->size = size;
    int rc = 0;
    const uint8_t *p = map;
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++)
        hn |= (uint64_t)p[i] << (8 * i);
    if (hn < 2 || hn > size - 8 || hn > ST_MAX_HEADER) {
        rc = vlad_err_set(err, VLAD_EPARSE, "bad header: header length %llu, file size %zu",
                          (unsigned long long)hn, size);
        goto fail;
    }
    f->root = cJSON_ParseWithLength((const char *)p + 8, (size_t)hn);
    if (!f->root || !cJSON_IsObject(f->root)) {
        rc = vlad_err_set(err, VLAD_EPARSE, "bad header: header is not a JSON object");
        goto fail;
    }
    size_t data_size = size - 8 - (size_t)hn;
    const uint8_t *data = p + 8 + hn;
    int n = 0;
    for (cJSON *it = f->root->child; it; it = it->next)
        if (!it->string || strcmp(it->string, "__metadata__"))
            n++;
    f->t = calloc((size_t)(n ? n : 1), sizeof *f->t);
    if (!f->t) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        goto fail;
    }
    for (cJSON *it = f->root->child; it; it = it->next) {
        if (!it->string) {
            rc = vlad_err_set(err, VLAD_EPARSE, "bad header: entry without a name");
            goto fail;
        }
        if (!strcmp(it->string, "__metadata__")) {
            if (!cJSON_IsObject(it)) {
                rc = vlad_err_set(err, VLAD_EPARSE, "bad header: __metadata__ is not an object");
                goto fail;
            }
            f->meta = it;
            continue;
        }
        for (int i = 0; i < f->n; i++)
            if (!strcmp(f->t[i].name, it->string)) {
                rc = vlad_err_set(err, VLAD_EPARSE, "tensor '%s': listed twice", it->string);
                goto fail;
            }
        vlad_st_tensor *t = &f->t[f->n];
        rc = parse_tensor(it, t, data_size, err);
        if (rc)
            goto fail;
        t->data = data + t->begin;
        f->n++;
    }
    if (f->n > 1) {
        vlad_st_tensor **order = malloc((size_t)f->n * sizeof *order);
        if (!order) {
            rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < f->n; i++)
            order[i] = &f->t[i];
        qsort(order, (size_t)f->n, sizeof *order, cmp_begin);
        /* Zero-length tensors occupy no bytes and may sit anywhere, so each non-empty tensor
         * is checked against the non-empty one that ends last before it in begin order, not
         * merely against its sorted neighbour (which may be empty). */
        const vlad_st_tensor *prev = NULL;
        for (int i = 0; i < f->n; i++) {
            const vlad_st_tensor *t = order[i];
            if (!t->nbytes)
                continue;
            if (prev && t->begin < prev->end) {
                rc = vlad_err_set(err, VLAD_EPARSE,
                                  "tensor '%s': data_offsets [%zu, %zu] overlap tensor '%s' "
                                  "[%zu, %zu]",
                                  t->name, t->begin, t->end, prev->name, prev->begin, prev->end);
                break;
            }
            prev = t;
        }
        free(order);
        if (rc)
            goto fail;
    }
    *out = f;
    return 0;
fail:
    vlad_err_prefix(err, "%s: ", path);
    vlad_st_close(f);
    return rc;
}

void vlad_st_close(vlad_st_file *f) {
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->size);
    cJSON_Delete(f->root);
    free(f->t);
    free(f);
}

int vlad_st_count(const vlad_st_file *f) { return f->n; }
const vlad_st_tensor *vlad_st_get(const vlad_st_file *f, int i) {
    return (i >= 0 && i < f->n) ? &f->t[i] : NULL;
}
const vlad_st_tensor *vlad_st_find(const vlad_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}
const char *vlad_st_meta(const vlad_st_file *f, const char *key) {
    if (!f->meta)
        return NULL;
    cJSON *v = cJSON_GetObjectItemCaseSensitive(f->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
size_t vlad_st_file_size(const vlad_st_file *f) { return f->size; }
int vlad_st_owns(const vlad_st_file *f, const void *p) {
    const uint8_t *a = f->map, *q = p;
    return q >= a && q < a + f->size;
}

/* ---- writer ------------------------------------------------------------------------- */

struct vlad_st_writer {
    cJSON *hdr, *meta;
    uint64_t total, written;
    FILE *fp;
    char *path;
};

vlad_st_writer *vlad_st_writer_new(void) {
    vlad_st_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->hdr = cJSON_CreateObject();
    if (!w->hdr) {
        free(w);
        return NULL;
    }
    return w;
}

int vlad_st_writer_meta(vlad_st_writer *w, const char *key, const char *value, vlad_err *err) {
    if (!w->meta) {
        w->meta = cJSON_AddObjectToObject(w->hdr, "__metadata__");
        if (!w->meta)
            return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    }
    if (!cJSON_AddStringToObject(w->meta, key, value))
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    return 0;
}

int vlad_st_writer_add(vlad_st_writer *w, const char *name, vlad_dtype dt, int ndim,
                       const int64_t *shape, vlad_err *err) {
    if (w->fp)
        return vlad_err_set(err, VLAD_ESTATE, "safetensors writer: add after begin");
    if (ndim < 0 || ndim > VLAD_ST_MAX_DIMS)
        return vlad_err_set(err, VLAD_EINVAL, "tensor '%s': bad ndim %d", name, ndim);
    uint64_t numel = 1;
    cJSON *t = cJSON_AddObjectToObject(w->hdr, name);
    if (!t)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    cJSON_AddStringToObject(t, "dtype", vlad_dtype_name(dt));
    cJSON *sh = cJSON_AddArrayToObject(t, "shape");
    for (int i = 0; i < ndim; i++) {
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[i]));
        numel *= (uint64_t)shape[i];
    }
    uint64_t nb = numel * vlad_dtype_size(dt);
    cJSON *of = cJSON_AddArrayToObject(t, "data_offsets");
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)w->total));
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(w->total + nb)));
    w->total += nb;
    return 0;
}

int vlad_st_writer_begin(vlad_st_writer *w, const char *path, vlad_err *err) {
    char *js = cJSON_PrintUnformatted(w->hdr);
    if (!js)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    size_t n = strlen(js);
    size_t padded = (n + 7) & ~(size_t)7; /* keeps the data section 8-byte aligned */
    w->fp = fopen(path, "wb");
    if (!w->fp) {
        free(js);
        return vlad_err_set(err, VLAD_EIO, "%s: %s", path, strerror(errno));
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len, 1, 8, w->fp) == 8 && fwrite(js, 1, n, w->fp) == n;
    for (size_t i = n; ok && i < padded; i++)
        ok = fputc(' ', w->fp) != EOF;
    free(js);
    if (!ok)
        return vlad_err_set(err, VLAD_EIO, "%s: write failed", path);
    return 0;
}

int vlad_st_writer_data(vlad_st_writer *w, const void *bytes, size_t n, vlad_err *err) {
    if (!w->fp)
        return vlad_err_set(err, VLAD_ESTATE, "safetensors writer: data before begin");
    if (w->written + n > w->total)
        return vlad_err_set(err, VLAD_EINVAL, "safetensors writer: more data than declared");
    if (n && fwrite(bytes, 1, n, w->fp) != n)
        return vlad_err_set(err, VLAD_EIO, "safetensors writer: write failed");
    w->written += n;
    return 0;
}

int vlad_st_writer_finish(vlad_st_writer *w, vlad_err *err) {
    if (!w->fp)
        return vlad_err_set(err, VLAD_ESTATE, "safetensors writer: finish before begin");
    int rc = 0;
    if (w->written != w->total)
        rc = vlad_err_set(err, VLAD_EINVAL, "safetensors writer: %llu of %llu bytes written",
                          (unsigned long long)w->written, (unsigned long long)w->total);
    if (fclose(w->fp) != 0 && !rc)
        rc = vlad_err_set(err, VLAD_EIO, "safetensors writer: close failed");
    w->fp = NULL;
    return rc;
}

void vlad_st_writer_free(vlad_st_writer *w) {
    if (!w)
        return;
    if (w->fp)
        fclose(w->fp);
    cJSON_Delete(w->hdr);
    free(w);
}
