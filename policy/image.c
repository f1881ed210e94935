#include "image.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "path.h"

#ifdef VLAD_HAVE_PNG
#include <png.h>
#endif

#define MAX_SIDE 16384

static int ppm_int(FILE *fp, int *out) {
    int ch;
    for (;;) {
        ch = fgetc(fp);
        if (ch == '#') {
            while (ch != '\n' && ch != EOF)
                ch = fgetc(fp);
        } else if (!isspace(ch)) {
            break;
        }
    }
    if (ch == EOF || !isdigit(ch))
        return -1;
    long v = 0;
    while (ch != EOF && isdigit(ch)) {
        v = v * 10 + (ch - '0');
        if (v > 1000000)
            return -1;
        ch = fgetc(fp);
    }
    if (ch != EOF && !isspace(ch))
        return -1;
    *out = (int)v;
    return 0;
}

static int load_ppm(const char *path, FILE *fp, int ascii, vlad_image *out, vlad_err *err) {
    int w, h, mx;
    if (ppm_int(fp, &w) || ppm_int(fp, &h) || ppm_int(fp, &mx))
        return vlad_err_set(err, VLAD_EPARSE, "%s: bad PPM header", path);
    if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE || mx != 255)
        return vlad_err_set(err, VLAD_EPARSE, "%s: PPM %dx%d maxval %d unsupported", path, w, h,
                            mx);
    size_t n = (size_t)w * h * 3;
    uint8_t *px = malloc(n);
    if (!px)
        return vlad_err_set(err, VLAD_ENOMEM, "%s: out of memory", path);
    if (!ascii) {
        if (fread(px, 1, n, fp) != n) {
            free(px);
            return vlad_err_set(err, VLAD_EPARSE, "%s: PPM truncated", path);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            int v;
            if (ppm_int(fp, &v) || v > 255) {
                free(px);
                return vlad_err_set(err, VLAD_EPARSE, "%s: bad PPM sample %zu", path, i);
            }
            px[i] = (uint8_t)v;
        }
    }
    out->width = w;
    out->height = h;
    out->rgb = px;
    return 0;
}

#ifdef VLAD_HAVE_PNG
static int load_png(const char *path, vlad_image *out, vlad_err *err) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path))
        return vlad_err_set(err, VLAD_EPARSE, "%s: PNG: %s", path, im.message);
    if (im.width < 1 || im.height < 1 || im.width > MAX_SIDE || im.height > MAX_SIDE) {
        png_image_free(&im);
        return vlad_err_set(err, VLAD_EPARSE, "%s: PNG %ux%u unsupported", path, im.width,
                            im.height);
    }
    im.format = PNG_FORMAT_RGB;
    size_t n = PNG_IMAGE_SIZE(im);
    uint8_t *px = malloc(n);
    if (!px) {
        png_image_free(&im);
        return vlad_err_set(err, VLAD_ENOMEM, "%s: out of memory", path);
    }
    if (!png_image_finish_read(&im, NULL, px, 0, NULL)) {
        free(px);
        png_image_free(&im);
        return vlad_err_set(err, VLAD_EPARSE, "%s: PNG: %s", path, im.message);
    }
    out->width = (int)im.width;
    out->height = (int)im.height;
    out->rgb = px;
    png_image_free(&im);
    return 0;
}
#endif

int vlad_image_load(const char *path, vlad_image *out, vlad_err *err) {
    memset(out, 0, sizeof *out);
    int fd = vlad_open_regular(path, O_RDONLY, 0, err); /* never blocks on a FIFO */
    if (fd < 0)
        return fd;
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        close(fd);
        return vlad_err_set(err, VLAD_EIO, "%s: %s", path, strerror(errno));
    }
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, 8, fp);
    int rc;
    if (got >= 2 && magic[0] == 'P' && (magic[1] == '6' || magic[1] == '3')) {
        fseek(fp, 2, SEEK_SET);
        rc = load_ppm(path, fp, magic[1] == '3', out, err);
    } else if (got == 8 && !memcmp(magic, "\x89PNG\r\n\x1a\n", 8)) {
#ifdef VLAD_HAVE_PNG
        fclose(fp);
        return load_png(path, out, err);
#else
        rc = vlad_err_set(err, VLAD_EINVAL, "%s: PNG support not built (libpng missing)", path);
#endif
    } else {
        rc = vlad_err_set(err, VLAD_EPARSE, "%s: not a PPM (P6/P3) or PNG image", path);
    }
    fclose(fp);
    return rc;
}

void vlad_image_free(vlad_image *img) {
    if (!img)
        return;
    free(img->rgb);
    img->rgb = NULL;
}

int vlad_image_write_ppm(const char *path, const vlad_image *img, vlad_err *err) {
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return vlad_err_set(err, VLAD_EIO, "%s: %s", path, strerror(errno));
    size_t n = (size_t)img->width * img->height * 3;
    int ok = fprintf(fp, "P6\n%d %d\n255\n", img->width, img->height) > 0 &&
             fwrite(img->rgb, 1, n, fp) == n;
    if (fclose(fp) != 0)
        ok = 0;
    return ok ? 0 : vlad_err_set(err, VLAD_EIO, "%s: write failed", path);
}
