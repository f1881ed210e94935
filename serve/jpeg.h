/* jpeg.h — JPEG images on the vlad-serve wire (ENCODING_JPEG, proto/serve.proto): the ONE
 * encoder and decoder both sides use. The client library (client.h) encodes a request's RAW
 * views when its jpeg_quality is set (the daemon's policy.remote.images: jpeg, on the worker
 * thread); the server (server.h) decodes them on its io thread, into the job's own memory,
 * before the model sees them. Part of vlad_serve_wire (libturbojpeg).
 *
 * A vlad_jpeg is one codec: a TurboJPEG compressor and decompressor handle, made once. It is
 * used by ONE thread at a time (TurboJPEG handles are not shared): the client owns one, the
 * server's io thread owns one. Encoding and decoding write into the caller's buffers; nothing
 * of ours is allocated per image (libjpeg's own working memory is its business).
 *
 * The format: baseline JPEG, 4:4:4 (no chroma subsampling: the model's 64x64 views are small
 * and colour is what the tasks and the questions are about), libjpeg's accurate integer DCT
 * both ways; an image decodes to RGB8, HWC, rows top to bottom -- the RAW layout. Decoding the
 * same bytes gives the same pixels every time with the same library. */
#ifndef VLAD_SERVE_JPEG_H
#define VLAD_SERVE_JPEG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define VLAD_JPEG_DEFAULT_QUALITY 90

typedef struct vlad_jpeg vlad_jpeg;

/* The largest JPEG any encoder may make of a width x height image, any subsampling
 * (TurboJPEG's worst case: 6 bytes per pixel, the sides padded to 16, plus 2048): the bound
 * the wire check puts on a JPEG image's bytes. 0 for a side outside 1..65535. Pure. */
size_t vlad_jpeg_max_bytes(int width, int height);

/* A codec. NULL with err filled when TurboJPEG cannot make its handles. */
vlad_jpeg *vlad_jpeg_new(vlad_err *err);
void vlad_jpeg_free(vlad_jpeg *j); /* NULL is fine */

/* Encode rgb (width*height*3 bytes, RGB8 HWC) at quality 1..100 into out (cap bytes, at
 * least vlad_jpeg_max_bytes(width, height) -- then it always fits); *len gets the JPEG's
 * size. VLAD_ERANGE for a bad size or quality or a buffer too small, VLAD_EIO when the
 * encoder fails (TurboJPEG's message). */
int vlad_jpeg_encode(vlad_jpeg *j, const uint8_t *rgb, int width, int height, int quality,
                     uint8_t *out, size_t cap, size_t *len, vlad_err *err);

/* Read data's header and decode it into out (cap bytes) as RGB8 HWC. The image must be
 * exactly want_width x want_height: another size is VLAD_ERANGE before anything is decoded
 * ("JPEG is 32x32, expected 64x64"). Bytes that are not a JPEG, a truncated or corrupt one
 * (libjpeg's warnings count as errors: nothing half-decoded is used), a colour space that does
 * not convert to RGB, or more than 500 progressive scans: VLAD_EINVAL with the decoder's
 * message. cap below want_width*want_height*3: VLAD_ERANGE. On any error out's contents are
 * unspecified. */
int vlad_jpeg_decode(vlad_jpeg *j, const uint8_t *data, size_t len, int want_width,
                     int want_height, uint8_t *out, size_t cap, vlad_err *err);

#endif
