#include "jpeg.h"

#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#ifndef TJFLAG_LIMITSCANS /* libjpeg-turbo before 2.1: no scan limit */
#define TJFLAG_LIMITSCANS 0
#endif

struct vlad_jpeg {
    tjhandle enc, dec;
};

size_t vlad_jpeg_max_bytes(int width, int height) {
    if (width < 1 || height < 1 || width > 65535 || height > 65535)
        return 0;
    size_t w = ((size_t)width + 15) & ~(size_t)15, h = ((size_t)height + 15) & ~(size_t)15;
    return w * h * 6 + 2048;
}

vlad_jpeg *vlad_jpeg_new(vlad_err *err) {
    vlad_jpeg *j = calloc(1, sizeof *j);
    if (!j) {
        vlad_err_set(err, VLAD_ENOMEM, "jpeg: out of memory");
        return NULL;
    }
    j->enc = tjInitCompress();
    j->dec = tjInitDecompress();
    if (!j->enc || !j->dec) {
        vlad_err_set(err, VLAD_EIO, "jpeg: cannot make the TurboJPEG handles: %s",
                     tjGetErrorStr2(NULL));
        vlad_jpeg_free(j);
        return NULL;
    }
    return j;
}

void vlad_jpeg_free(vlad_jpeg *j) {
    if (!j)
        return;
    if (j->enc)
        tjDestroy(j->enc);
    if (j->dec)
        tjDestroy(j->dec);
    free(j);
}

int vlad_jpeg_encode(vlad_jpeg *j, const uint8_t *rgb, int width, int height, int quality,
                     uint8_t *out, size_t cap, size_t *len, vlad_err *err) {
    *len = 0;
    size_t need = vlad_jpeg_max_bytes(width, height);
    if (!need)
        return vlad_err_set(err, VLAD_ERANGE, "jpeg: %dx%d pixels, each side must be 1..65535",
                            width, height);
    if (quality < 1 || quality > 100)
        return vlad_err_set(err, VLAD_ERANGE, "jpeg: quality %d, expected 1..100", quality);
    if (cap < need)
        return vlad_err_set(err, VLAD_ERANGE, "jpeg: a %zu-byte buffer, a %dx%d image needs %zu",
                            cap, width, height, need);
    unsigned char *dst = out;
    unsigned long size = (unsigned long)cap;
    /* NOREALLOC: the caller's buffer, never one of TurboJPEG's */
    if (tjCompress2(j->enc, rgb, width, 0, height, TJPF_RGB, &dst, &size, TJSAMP_444, quality,
                    TJFLAG_NOREALLOC | TJFLAG_ACCURATEDCT) != 0)
        return vlad_err_set(err, VLAD_EIO, "jpeg: encoding failed: %s", tjGetErrorStr2(j->enc));
    *len = (size_t)size;
    return VLAD_OK;
}

int vlad_jpeg_decode(vlad_jpeg *j, const uint8_t *data, size_t len, int want_width,
                     int want_height, uint8_t *out, size_t cap, vlad_err *err) {
    if (want_width < 1 || want_height < 1)
        return vlad_err_set(err, VLAD_ERANGE, "jpeg: expected size %dx%d", want_width, want_height);
    size_t need = (size_t)want_width * (size_t)want_height * 3;
    if (cap < need)
        return vlad_err_set(err, VLAD_ERANGE, "jpeg: a %zu-byte buffer, %dx%d RGB needs %zu", cap,
                            want_width, want_height, need);
    if (!data || len == 0)
        return vlad_err_set(err, VLAD_EINVAL, "not a JPEG: no bytes");
    int w = 0, h = 0, sub = 0, cs = 0;
    if (tjDecompressHeader3(j->dec, data, (unsigned long)len, &w, &h, &sub, &cs) != 0)
        return vlad_err_set(err, VLAD_EINVAL, "not a JPEG (%zu bytes): %s", len,
                            tjGetErrorStr2(j->dec));
    if (w < 1 || h < 1) /* TurboJPEG 2.1 "succeeds" on a stream cut before its frame header */
        return vlad_err_set(err, VLAD_EINVAL, "not a JPEG (%zu bytes): no frame header", len);
    if (w != want_width || h != want_height)
        return vlad_err_set(err, VLAD_ERANGE, "JPEG is %dx%d, expected %dx%d", w, h, want_width,
                            want_height);
    /* STOPONWARNING: a truncated or corrupt stream is an error, not a half-grey picture */
    if (tjDecompress2(j->dec, data, (unsigned long)len, out, w, 0, h, TJPF_RGB,
                      TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0)
        return vlad_err_set(err, VLAD_EINVAL, "JPEG (%zu bytes, %dx%d) does not decode: %s", len, w,
                            h, tjGetErrorStr2(j->dec));
    return VLAD_OK;
}
