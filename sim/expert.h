/* expert.h — the scripted expert of vlad-sim: solves every task from privileged state.
 *
 * It plans end-effector motion in Cartesian space with minimum-jerk (quintic) segments
 * that start from the current commanded position, velocity and acceleration, follows
 * moving targets directly, and turns each commanded point into joint targets by damped
 * least-squares inverse kinematics (vlad_world_ik) followed by the profile's limits:
 * joint range and max_velocity per tick. It reacts to a world change on the tick it sees
 * it. It keeps its own plan state; the task and state it is shown may be stale (the
 * runner's --expert-delay), which is how a late plan is emulated. */
#ifndef VLAD_SIM_EXPERT_H
#define VLAD_SIM_EXPERT_H

#include "err.h"
#include "profile.h"
#include "tasks.h"
#include "world.h"

typedef struct vlad_expert vlad_expert;

/* The expert for profile p acting in world w (used for IK only; both kept by pointer). */
vlad_expert *vlad_expert_new(const vlad_profile *p, vlad_world *w, vlad_err *err);
void vlad_expert_free(vlad_expert *e);

/* Start an episode with the arm commanded at q (profile order) and its end effector at ee. */
void vlad_expert_begin(vlad_expert *e, const double *q, const double ee[3]);

/* Joint targets for the next tick (profile order) from task t and state s as the expert
 * sees them. Targets are inside the joint limits and within max_velocity/control_hz of
 * the previous targets. */
void vlad_expert_act(vlad_expert *e, const vlad_task *t, const vlad_task_state *s, double *q_out);

/* A short name of the expert's current subtask ("approach", "push", ...). */
const char *vlad_expert_phase(const vlad_expert *e);

#endif
