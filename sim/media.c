/* media.c — PNG, GIF and MP4 writers; see media.h. */
#include "media.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- PNG -------------------------------------------------------------------------- */

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static bool png_chunk(FILE *f, const char *type, const uint8_t *data, uint32_t len) {
    uint8_t hdr[8];
    be32(hdr, len);
    memcpy(hdr + 4, type, 4);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    if (len)
        crc = crc32(crc, data, len);
    uint8_t c[4];
    be32(c, (uint32_t)crc);
    return fwrite(hdr, 1, 8, f) == 8 && (!len || fwrite(data, 1, len, f) == len) && fwrite(c, 1, 4, f) == 4;
}

int vlad_png_write(const char *path, const uint8_t *rgb, int w, int h, int scale, vlad_err *err) {
    if (w <= 0 || h <= 0 || scale < 1 || scale > 64)
        return vlad_err_set(err, VLAD_EINVAL, "png: bad size %dx%d scale %d", w, h, scale);
    size_t W = (size_t)w * (size_t)scale, H = (size_t)h * (size_t)scale, row = 1 + 3 * W;
    uint8_t *raw = malloc(row * H);
    uLongf zcap = compressBound((uLong)(row * H));
    uint8_t *z = malloc(zcap);
    if (!raw || !z) {
        free(raw);
        free(z);
        return vlad_err_set(err, VLAD_ENOMEM, "png: out of memory");
    }
    for (size_t y = 0; y < H; y++) {
        uint8_t *r = raw + y * row;
        r[0] = 0; /* filter: none */
        const uint8_t *src = rgb + (y / (size_t)scale) * (size_t)w * 3;
        for (size_t x = 0; x < W; x++)
            memcpy(r + 1 + 3 * x, src + 3 * (x / (size_t)scale), 3);
    }
    int rc = VLAD_OK;
    if (compress2(z, &zcap, raw, (uLong)(row * H), 9) != Z_OK) {
        rc = vlad_err_set(err, VLAD_EIO, "png: zlib failed");
    } else {
        FILE *f = fopen(path, "wb");
        if (!f) {
            rc = vlad_err_set(err, VLAD_EIO, "%s: %s", path, strerror(errno));
        } else {
            static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
            uint8_t ihdr[13];
            be32(ihdr, (uint32_t)W);
            be32(ihdr + 4, (uint32_t)H);
            ihdr[8] = 8;  /* bit depth */
            ihdr[9] = 2;  /* colour type RGB */
            ihdr[10] = ihdr[11] = ihdr[12] = 0;
            bool ok = fwrite(sig, 1, 8, f) == 8 && png_chunk(f, "IHDR", ihdr, 13) &&
                      png_chunk(f, "IDAT", z, (uint32_t)zcap) && png_chunk(f, "IEND", NULL, 0);
            if (fclose(f) != 0 || !ok)
                rc = vlad_err_set(err, VLAD_EIO, "%s: write failed", path);
        }
    }
    free(raw);
    free(z);
    return rc;
}

/* ---- GIF -------------------------------------------------------------------------- */

#define HSIZE 5003

typedef struct bitw {
    FILE *f;
    uint32_t acc;
    int nbits;
    uint8_t blk[255];
    int blen;
    bool ok;
} bitw;

static void blk_flush(bitw *b) {
    if (!b->blen)
        return;
    if (fputc(b->blen, b->f) == EOF || fwrite(b->blk, 1, (size_t)b->blen, b->f) != (size_t)b->blen)
        b->ok = false;
    b->blen = 0;
}

static void put_code(bitw *b, int code, int size) {
    b->acc |= (uint32_t)code << b->nbits;
    b->nbits += size;
    while (b->nbits >= 8) {
        b->blk[b->blen++] = (uint8_t)(b->acc & 0xff);
        if (b->blen == 255)
            blk_flush(b);
        b->acc >>= 8;
        b->nbits -= 8;
    }
}

/* LZW-compress n 8-bit indices as a GIF image data stream (min code size 8). */
static bool gif_lzw(FILE *f, const uint8_t *px, size_t n, int32_t *hkey, uint16_t *hval) {
    bitw b = {.f = f, .ok = true};
    const int clear = 256, eoi = 257;
    int size = 9, next = 258;
    if (fputc(8, f) == EOF)
        return false;
    for (int i = 0; i < HSIZE; i++)
        hkey[i] = -1;
    put_code(&b, clear, size);
    int prefix = px[0];
    for (size_t i = 1; i < n; i++) {
        int c = px[i];
        int32_t key = (prefix << 8) | c;
        unsigned h = ((unsigned)key * 2654435761u) % HSIZE;
        while (hkey[h] >= 0 && hkey[h] != key)
            h = (h + 1) % HSIZE;
        if (hkey[h] == key) {
            prefix = hval[h];
            continue;
        }
        put_code(&b, prefix, size);
        if (next >= (1 << size) && size < 12)
            size++;
        if (next < 4095) {
            hkey[h] = key;
            hval[h] = (uint16_t)next++;
        } else {
            put_code(&b, clear, size);
            for (int k = 0; k < HSIZE; k++)
                hkey[k] = -1;
            size = 9;
            next = 258;
        }
        prefix = c;
    }
    put_code(&b, prefix, size);
    if (next >= (1 << size) && size < 12)
        size++;
    put_code(&b, eoi, size);
    if (b.nbits > 0)
        put_code(&b, 0, 8 - b.nbits);
    blk_flush(&b);
    if (fputc(0, f) == EOF) /* block terminator */
        return false;
    return b.ok;
}

struct vlad_video {
    FILE *f;
    bool pipe; /* ffmpeg */
    int w, h, scale;
    int delay_cs;
    double fps, carry; /* GIF: fractional delay carried between frames */
    uint8_t *idx, *big;
    int32_t *hkey;
    uint16_t *hval;
    int err;
};

static void le16(FILE *f, int v) {
    fputc(v & 0xff, f);
    fputc((v >> 8) & 0xff, f);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

vlad_video *vlad_video_open(const char *path, int w, int h, int scale, double fps, vlad_err *err) {
    if (w <= 0 || h <= 0 || scale < 1 || scale > 16 || !(fps > 0)) {
        vlad_err_set(err, VLAD_EINVAL, "video: bad size %dx%d, scale %d or rate %g", w, h, scale, fps);
        return NULL;
    }
    vlad_video *v = calloc(1, sizeof *v);
    if (!v) {
        vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        return NULL;
    }
    v->w = w;
    v->h = h;
    v->scale = scale;
    v->fps = fps;
    size_t W = (size_t)w * (size_t)scale, H = (size_t)h * (size_t)scale;
    v->big = malloc(W * H * 3);
    if (!v->big)
        goto nomem;
    if (ends_with(path, ".mp4")) {
        char cmd[VLAD_ERR_MSG_MAX + 256];
        if (strchr(path, '\'')) {
            vlad_err_set(err, VLAD_EINVAL, "video: a quote in the path is not supported");
            vlad_video_close(v, NULL);
            return NULL;
        }
        if (system("command -v ffmpeg >/dev/null 2>&1") != 0) {
            vlad_err_set(err, VLAD_EIO, "video: MP4 needs ffmpeg (apt-get install ffmpeg); or use a .gif path");
            vlad_video_close(v, NULL);
            return NULL;
        }
        snprintf(cmd, sizeof cmd,
                 "ffmpeg -loglevel error -y -f rawvideo -pix_fmt rgb24 -s %zux%zu -r %g -i - "
                 "-pix_fmt yuv420p -vf 'scale=trunc(iw/2)*2:trunc(ih/2)*2' '%s'",
                 W, H, fps, path);
        v->f = popen(cmd, "w");
        v->pipe = true;
        if (!v->f) {
            vlad_err_set(err, VLAD_EIO, "video: cannot start ffmpeg");
            vlad_video_close(v, NULL);
            return NULL;
        }
        return v;
    }
    v->idx = malloc(W * H);
    v->hkey = malloc(sizeof(int32_t) * HSIZE);
    v->hval = malloc(sizeof(uint16_t) * HSIZE);
    if (!v->idx || !v->hkey || !v->hval)
        goto nomem;
    v->f = fopen(path, "wb");
    if (!v->f) {
        vlad_err_set(err, VLAD_EIO, "%s: %s", path, strerror(errno));
        vlad_video_close(v, NULL);
        return NULL;
    }
    /* header, logical screen with a global 256-entry palette: 6x6x6 cube + greys */
    fwrite("GIF89a", 1, 6, v->f);
    le16(v->f, (int)W);
    le16(v->f, (int)H);
    fputc(0xF7, v->f); /* global colour table, 8 bits, 256 entries */
    fputc(0, v->f);
    fputc(0, v->f);
    for (int i = 0; i < 256; i++) {
        uint8_t c[3];
        if (i < 216) {
            c[0] = (uint8_t)(51 * (i / 36));
            c[1] = (uint8_t)(51 * ((i / 6) % 6));
            c[2] = (uint8_t)(51 * (i % 6));
        } else {
            c[0] = c[1] = c[2] = (uint8_t)(8 + (i - 216) * 6);
        }
        fwrite(c, 1, 3, v->f);
    }
    /* loop forever */
    static const uint8_t loop[] = {0x21, 0xFF, 0x0B, 'N', 'E', 'T', 'S', 'C', 'A', 'P', 'E', '2', '.',
                                   '0', 0x03, 0x01, 0x00, 0x00, 0x00};
    fwrite(loop, 1, sizeof loop, v->f);
    return v;
nomem:
    vlad_err_set(err, VLAD_ENOMEM, "video: out of memory");
    vlad_video_close(v, NULL);
    return NULL;
}

static uint8_t quant(const uint8_t *p) {
    int r = p[0], g = p[1], b = p[2];
    int mx = r > g ? (r > b ? r : b) : (g > b ? g : b), mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
    if (mx - mn < 12) { /* near grey: use the 40-step grey ramp */
        int k = ((r + g + b) / 3 - 8 + 3) / 6;
        return (uint8_t)(216 + (k < 0 ? 0 : k > 39 ? 39 : k));
    }
    return (uint8_t)(((r + 25) / 51) * 36 + ((g + 25) / 51) * 6 + (b + 25) / 51);
}

int vlad_video_frame(vlad_video *v, const uint8_t *rgb, vlad_err *err) {
    size_t W = (size_t)v->w * (size_t)v->scale, H = (size_t)v->h * (size_t)v->scale;
    for (size_t y = 0; y < H; y++) {
        const uint8_t *src = rgb + (y / (size_t)v->scale) * (size_t)v->w * 3;
        for (size_t x = 0; x < W; x++)
            memcpy(v->big + (y * W + x) * 3, src + 3 * (x / (size_t)v->scale), 3);
    }
    if (v->pipe) {
        if (fwrite(v->big, 1, W * H * 3, v->f) != W * H * 3)
            return v->err = vlad_err_set(err, VLAD_EIO, "video: ffmpeg pipe closed");
        return VLAD_OK;
    }
    for (size_t i = 0; i < W * H; i++)
        v->idx[i] = quant(v->big + 3 * i);
    v->carry += 100.0 / v->fps;
    int delay = (int)v->carry;
    if (delay < 2) /* browsers treat delays below 2/100 s as slow; merge into 2 */
        delay = 2;
    v->carry -= delay;
    FILE *f = v->f;
    static const uint8_t gce0[] = {0x21, 0xF9, 0x04, 0x00};
    fwrite(gce0, 1, 4, f);
    le16(f, delay);
    fputc(0, f);
    fputc(0, f);
    fputc(0x2C, f);
    le16(f, 0);
    le16(f, 0);
    le16(f, (int)W);
    le16(f, (int)H);
    fputc(0, f);
    if (!gif_lzw(f, v->idx, W * H, v->hkey, v->hval))
        return v->err = vlad_err_set(err, VLAD_EIO, "video: write failed");
    return VLAD_OK;
}

int vlad_video_close(vlad_video *v, vlad_err *err) {
    if (!v)
        return VLAD_OK;
    int rc = v->err;
    if (v->f) {
        if (v->pipe) {
            if (pclose(v->f) != 0 && !rc)
                rc = vlad_err_set(err, VLAD_EIO, "video: ffmpeg failed");
        } else {
            fputc(0x3B, v->f);
            if (fclose(v->f) != 0 && !rc)
                rc = vlad_err_set(err, VLAD_EIO, "video: write failed");
        }
    }
    free(v->big);
    free(v->idx);
    free(v->hkey);
    free(v->hval);
    free(v);
    return rc;
}
