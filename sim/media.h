/* media.h — pictures and videos of camera frames: PNG files (zlib), animated GIFs (own
 * LZW encoder, 6x6x6 colour cube) and MP4 through Debian's ffmpeg (if installed).
 * Frames are RGB8, rows top to bottom; `scale` >= 1 enlarges by pixel repetition. */
#ifndef VLAD_SIM_MEDIA_H
#define VLAD_SIM_MEDIA_H

#include <stdint.h>

#include "err.h"

/* Write rgb (w x h) to a PNG file at `scale`x size. */
int vlad_png_write(const char *path, const uint8_t *rgb, int w, int h, int scale, vlad_err *err);

/* A video being written: an animated GIF, or an MP4 when the path ends in ".mp4". */
typedef struct vlad_video vlad_video;

/* Open path for frames of w x h shown at fps (GIF delays are in 1/100 s). */
vlad_video *vlad_video_open(const char *path, int w, int h, int scale, double fps, vlad_err *err);
int vlad_video_frame(vlad_video *v, const uint8_t *rgb, vlad_err *err);
/* Finish the file and free v (NULL is fine). Returns the first error seen, if any. */
int vlad_video_close(vlad_video *v, vlad_err *err);

#endif
