/* tasks.h — the vlad-sim tasks: seeded layouts, instructions, world changes, success
 * checks and per-frame language labels.
 *
 * A vlad_task is a plain value (copyable with =): the layout and progress of one
 * episode. The physics is not in here: each tick the runner passes the measured state
 * (vlad_task_state) to vlad_task_update, which advances the task's own world (moving or
 * popping targets), checks success and appends events. vlad_task_sync_world then shows
 * the objects in the MuJoCo world. Success checks therefore run on hand-made states too.
 *
 * Tasks:
 *   reach  touch the ball of the named colour among distractors; touching a distractor
 *          fails at once.
 *   track  keep the end effector within tol of a ball that moves at `speed` and changes
 *          direction at random times (each change is a WORLD_CHANGE); success if the
 *          fraction of scored ticks (after grace_s) on target is >= on_frac.
 *   whack  n_targets balls pop up one at a time (WORLD_CHANGE) and vanish after
 *          window_s; a hit is the end effector within tol while visible; success if
 *          hits >= min_hits (0 = all).
 *   push   push the block until its centre is within goal_radius of the goal centre. */
#ifndef VLAD_SIM_TASKS_H
#define VLAD_SIM_TASKS_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"
#include "world.h"

typedef enum {
    VLAD_TASK_REACH = 0,
    VLAD_TASK_TRACK,
    VLAD_TASK_WHACK,
    VLAD_TASK_PUSH,
    VLAD_TASK_COUNT
} vlad_task_kind;

/* Difficulty knobs; defaults in the table in tasks.c (vlad_task_default_params). */
typedef struct vlad_task_params {
    double max_s;        /* episode time limit, seconds */
    double tol;          /* reach/track/whack: end-effector to target-centre distance, m */
    int n_distractors;   /* reach: 1..3 */
    double speed;        /* track: target speed, m/s */
    double turn_min_s;   /* track: time between direction changes, min */
    double turn_max_s;   /*        and max */
    double grace_s;      /* track: ticks before this are not scored */
    double on_frac;      /* track: fraction of scored ticks on target for success */
    int n_targets;       /* whack: targets per episode (<= 64) */
    double window_s;     /* whack: a target is visible this long */
    double gap_min_s;    /* whack: pause before the next target, min */
    double gap_max_s;    /*        and max */
    int min_hits;        /* whack: hits for success; 0 = all */
    double goal_radius;  /* push: block centre within this of the goal centre, m */
} vlad_task_params;

typedef enum {
    VLAD_EV_START = 1,  /* values equal Vlad__TaskEvent__Kind */
    VLAD_EV_WORLD_CHANGE = 2,
    VLAD_EV_SUCCESS = 3,
    VLAD_EV_END = 4,
} vlad_ev_kind;

#define VLAD_TASK_MAX_EVENTS 8
typedef struct vlad_task_events {
    int n;
    struct {
        vlad_ev_kind kind;
        char detail[64];
    } ev[VLAD_TASK_MAX_EVENTS];
} vlad_task_events;

/* What the task needs to know about the physical world at one tick. */
typedef struct vlad_task_state {
    double ee[3];    /* end-effector site position, m */
    double block[3]; /* block centre, m */
} vlad_task_state;

#define VLAD_COLOUR_COUNT 4
typedef struct vlad_task {
    vlad_task_kind kind;
    vlad_task_params prm;
    double hz;
    int k;            /* ticks done in this episode (the next update is for tick k) */
    int max_ticks;
    vlad_rng rng;
    char instruction[128];
    /* objects: obj[0] is the target (reach/track/whack) */
    int n_obj;
    struct {
        double pos[3];
        int colour;
        bool visible;
    } obj[VLAD_WORLD_N_OBJ];
    /* track */
    double vel[3];
    int next_turn;
    int on_ticks, scored_ticks;
    /* whack */
    int popped, hits, misses;
    int pop_k, vanish_k, next_pop_k; /* tick of the current pop / its vanishing / the next pop */
    int hit_ticks_max;               /* slowest hit: ticks from pop to hit */
    /* push */
    double block0[2], block_yaw, goal[2];
    int block_colour, goal_colour;
    /* outcome */
    bool done, success, failed;
    int success_k;    /* tick (within the episode) the task was completed; -1 if not */
    int acquired_k;   /* track: first tick on target; -1 if never */
    int world_changes;
    bool forecast;    /* vlad_task_forecast: no random future (turns, pops) */
} vlad_task;

/* One frame's language labels: a commentary and short question/answer pairs. */
#define VLAD_LABEL_MAX_QA 5
typedef struct vlad_labels {
    char commentary[96];
    int n_qa;
    struct {
        char q[64];
        char a[24];
    } qa[VLAD_LABEL_MAX_QA];
} vlad_labels;

const char *vlad_task_name(vlad_task_kind k);
/* Parse "reach|track|whack|push". Returns VLAD_OK or VLAD_EINVAL. */
int vlad_task_parse(const char *s, vlad_task_kind *out);
/* Colour word ("red", "green", "blue", "yellow") and its RGB. */
const char *vlad_colour_name(int c);
const float *vlad_colour_rgb(int c);

/* The default difficulty of a task (the table in tasks.c). */
vlad_task_params vlad_task_default_params(vlad_task_kind k);

/* Start an episode: seeded layout and instruction. control_hz > 0. */
int vlad_task_begin(vlad_task *t, vlad_task_kind kind, const vlad_task_params *prm, double control_hz,
                    uint64_t seed, vlad_err *err);

/* Advance to the next tick with the world state `s` measured at it: move/pop targets,
 * check hits/success/failure, append WORLD_CHANGE / SUCCESS / EPISODE_END events (ev may
 * be NULL). Does nothing once done. */
void vlad_task_update(vlad_task *t, const vlad_task_state *s, vlad_task_events *ev);

/* Make t a forecast of itself from its present: from the next update on, the track target
 * keeps its heading (it still bounces off the region's edges, which are fixed) and no new
 * whack target pops; a visible one still vanishes at its time. What a planner that knows the
 * present exactly, and not the random future, can predict (the chunked expert's world). */
void vlad_task_forecast(vlad_task *t);

/* Show the task's objects in the world; with place_block also put the block at its
 * start pose (episode start). */
void vlad_task_sync_world(const vlad_task *t, vlad_world *w, bool place_block);

/* Language labels of the current frame (commentary + question/answer pairs). */
void vlad_task_labels(const vlad_task *t, const vlad_task_state *s, vlad_labels *out);

/* Score in [0,1]: reach/push 0|1, track on-target fraction, whack hits/targets. */
double vlad_task_score(const vlad_task *t);

/* Set one difficulty knob by name ("speed", "window_s", ... as in vlad_task_params).
 * VLAD_EINVAL for an unknown name. */
int vlad_task_param_set(vlad_task_params *prm, const char *name, double value);

/* Append an event (dropped if ev is NULL or full). */
void vlad_task_events_add(vlad_task_events *ev, vlad_ev_kind kind, const char *detail);

#endif
