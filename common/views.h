/* views.h — what the model sees: image views made of the robot's cameras and their recent
 * past, and the frame history the daemon keeps to build them.
 *
 * A model's n_cameras image inputs are *views*. View i is camera `camera` of the robot as it
 * was `lag` robot ticks before the observation: a model that sees motion takes the current
 * frame and an older one of the same camera (MODEL.md "Views"). A checkpoint says which in
 * its metadata key "vlad.views", a JSON array in view order:
 *     [{"camera": 0, "lag": 0}, {"camera": 0, "lag": 4}]
 * (camera: index into the profile's cameras; lag: 0..VLAD_MAX_VIEW_LAG). Without the key the
 * views are the cameras themselves, in order, lag 0.
 *
 * The rule for an older view (the same in training, vlad_train/data.py, and here): the
 * newest image of the camera whose robot tick is at most t - lag; when the history has none
 * that old (an episode's first ticks), the oldest image it has since the episode began (the
 * first frame, as training clamps t - lag to the episode's start). The history forgets
 * everything at a reset (images of ticks before the reset's first tick are not kept) and
 * when the robot's tick goes backwards (a restarted robot).
 *
 * Threads: a vlad_view_hist belongs to one thread (the daemon's io thread); it never
 * allocates after vlad_view_hist_new. */
#ifndef VLAD_VIEWS_H
#define VLAD_VIEWS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define VLAD_MAX_VIEWS 16
#define VLAD_MAX_VIEW_LAG 64

typedef struct vlad_view {
    int camera; /* the robot's camera (profile order) */
    int lag;    /* robot ticks before the observation */
} vlad_view;

typedef struct vlad_views {
    int n;
    int max_lag;
    vlad_view v[VLAD_MAX_VIEWS];
} vlad_views;

/* Views = cameras 0..n_cameras-1 at lag 0 (n_cameras 0..VLAD_MAX_VIEWS). */
void vlad_views_identity(int n_cameras, vlad_views *out);

/* Parse the "vlad.views" JSON text (NULL: the identity over n_views cameras). Checks: an
 * array of exactly n_views objects with integer "camera" in [0, n_cameras) and "lag" in
 * [0, VLAD_MAX_VIEW_LAG], no other keys; errors name the view and the field. */
int vlad_views_parse(const char *json, int n_views, int n_cameras, vlad_views *out,
                     vlad_err *err);

/* "[{"camera":0,"lag":0},...]" into buf (NUL-terminated, truncated to cap). */
void vlad_views_format(const vlad_views *v, char *buf, size_t cap);

/* Does any view look into the past? */
static inline int vlad_views_have_lag(const vlad_views *v) { return v->max_lag > 0; }

/* Index of the frame view `view` takes from a recorded episode whose frames are one per
 * tick: max(t - lag, 0) (t: the frame's index in its episode). The history's rule when the
 * robot sent an image every tick. */
int64_t vlad_views_frame_index(const vlad_views *v, int view, int64_t t);

typedef struct vlad_view_hist vlad_view_hist;

/* A history for views v over n_cameras cameras of cam_bytes[c] bytes each (every view's
 * camera must be < n_cameras). Keeps max_lag + 1 images per camera. NULL on failure. */
vlad_view_hist *vlad_view_hist_new(const vlad_views *v, int n_cameras, const size_t *cam_bytes,
                                   vlad_err *err);
void vlad_view_hist_free(vlad_view_hist *h); /* NULL is fine */

/* Bytes of one composed frame set: the sum over views of their camera's bytes. */
size_t vlad_view_hist_frame_bytes(const vlad_view_hist *h);

/* Camera `camera`'s image of robot tick `tick` (cam_bytes[camera] bytes, copied). A second
 * image for the camera's newest tick replaces it (a resent observation); a tick older than
 * the camera's newest first clears the whole history (the robot restarted). A tick before
 * the last reset's first tick is ignored while no image of the new episode has come (a late
 * observation from before the reset); after one has, it is a restarted robot too. An
 * out-of-range camera is ignored. */
void vlad_view_hist_put(vlad_view_hist *h, int camera, int64_t tick, const uint8_t *data);

/* Every view for the observation of robot tick `tick`, in view order, into out
 * (vlad_view_hist_frame_bytes bytes): per the rule above; zeros for a camera that has
 * sent no image since the history was last cleared. */
void vlad_view_hist_compose(const vlad_view_hist *h, int64_t tick, uint8_t *out);

/* Forget everything; images of ticks before from_tick are ignored from now on (a reset). */
void vlad_view_hist_reset(vlad_view_hist *h, int64_t from_tick);

#endif
