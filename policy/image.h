/* image.h — RGB8 images from PPM (P6/P3, maxval 255) or PNG files (PNG needs libpng at build
 * time: VLAD_HAVE_PNG). */
#ifndef VLAD_POLICY_IMAGE_H
#define VLAD_POLICY_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct vlad_image {
    int width, height;
    uint8_t *rgb; /* [height][width][3], malloc'd */
} vlad_image;

/* Load by content (magic bytes), any of the formats above. Gray/alpha PNGs become RGB. */
int vlad_image_load(const char *path, vlad_image *out, vlad_err *err);
/* Free the pixels (the struct itself is the caller's); NULL or empty is fine. */
void vlad_image_free(vlad_image *img);
/* Write binary PPM (P6). */
int vlad_image_write_ppm(const char *path, const vlad_image *img, vlad_err *err);

#endif
