#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

vlad_kvcache *vlad_kvcache_new(const vlad_config *c, int n_prefix, int n_streams, vlad_err *err) {
    if (n_prefix < 1 || n_streams < 0) {
        vlad_err_set(err, VLAD_EINVAL, "kv cache: %d prefix blocks, %d streams", n_prefix,
                     n_streams);
        return NULL;
    }
    vlad_kvcache *kv = calloc(1, sizeof *kv);
    if (!kv)
        goto oom;
    kv->depth = c->depth;
    kv->kv_dim = vlad_cfg_kv_dim(c);
    kv->prefix_max = vlad_cfg_prefix_max(c);
    kv->stream_max = vlad_cfg_stream_max(c);
    kv->prefix = calloc((size_t)n_prefix, sizeof *kv->prefix);
    kv->streams = calloc((size_t)(n_streams ? n_streams : 1), sizeof *kv->streams);
    if (!kv->prefix || !kv->streams)
        goto oom;
    kv->n_prefix = n_prefix;
    kv->n_streams = n_streams;
    size_t pf = (size_t)kv->depth * 2 * kv->prefix_max * kv->kv_dim;
    size_t sf = (size_t)kv->depth * 2 * kv->stream_max * kv->kv_dim;
    for (int i = 0; i < n_prefix; i++) {
        kv->prefix[i].kv = calloc(pf, sizeof(float));
        if (!kv->prefix[i].kv)
            goto oom;
        kv->bytes += pf * sizeof(float);
    }
    for (int i = 0; i < n_streams; i++) {
        kv->streams[i].prefix = -1;
        kv->streams[i].kv = calloc(sf, sizeof(float));
        if (!kv->streams[i].kv)
            goto oom;
        kv->bytes += sf * sizeof(float);
    }
    return kv;
oom:
    vlad_kvcache_free(kv);
    vlad_err_set(err, VLAD_ENOMEM, "kv cache: out of memory");
    return NULL;
}

void vlad_kvcache_free(vlad_kvcache *kv) {
    if (!kv)
        return;
    if (kv->prefix)
        for (int i = 0; i < kv->n_prefix; i++)
            free(kv->prefix[i].kv);
    if (kv->streams)
        for (int i = 0; i < kv->n_streams; i++)
            free(kv->streams[i].kv);
    free(kv->prefix);
    free(kv->streams);
    free(kv);
}

int vlad_kv_prefix_acquire(vlad_kvcache *kv) {
    for (int i = 0; i < kv->n_prefix; i++) {
        if (kv->prefix[i].refs == 0) {
            kv->prefix[i].refs = 1;
            kv->prefix[i].len = 0;
            kv->prefix[i].frame = ++kv->frames;
            return i;
        }
    }
    return -1;
}

void vlad_kv_prefix_ref(vlad_kvcache *kv, int block) {
    if (block >= 0 && block < kv->n_prefix)
        kv->prefix[block].refs++;
}

void vlad_kv_prefix_unref(vlad_kvcache *kv, int block) {
    if (block >= 0 && block < kv->n_prefix && kv->prefix[block].refs > 0)
        kv->prefix[block].refs--;
}
