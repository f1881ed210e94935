/* world.h — the simulated world of vlad-sim: MuJoCo physics of one MJCF model plus
 * OSMesa offscreen rendering of its cameras.
 *
 * The profile names the model (sim.model), the joints (each an MJCF hinge/slide joint of
 * the same name driven by exactly one position actuator) and the cameras (MJCF cameras of
 * the same name, rendered at the profile's size). The model must also provide the site
 * "ee" (end effector), mocap bodies obj0..obj3 and goal, and a free body "block"
 * (sim/models/scene.xml has them). Joint vectors are always in profile order.
 *
 * Time: every control tick advances the simulation by exactly 1 / control_hz, in sim.substeps
 * physics steps of 1 / (control_hz x sim.substeps) each. That step replaces the MJCF file's
 * <option timestep>, which only bounds it: a profile whose step would be more than
 * VLAD_WORLD_MAX_DT_FACTOR times the model's timestep is refused (raise sim.substeps; the
 * error says to what). The bundled models' 2 ms with 50 Hz and 10 substeps is exactly their
 * own step, so those profiles simulate bit for bit what they did when the model's timestep
 * was used as is; at 200 Hz, 2 substeps are 2.5 ms steps (before: 2 ms ones, and the arm
 * moved at 0.8x the control clock).
 *
 * One vlad_world is used by one thread. Worlds with rendering each own an OSMesa context
 * and make it current when they render. */
#ifndef VLAD_SIM_WORLD_H
#define VLAD_SIM_WORLD_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "profile.h"

#define VLAD_WORLD_N_OBJ 4
/* Largest physics step accepted, in multiples of the model's own timestep: a guard against
 * profiles far from what the model was made for (the bundled arms stay stable, and the
 * expert succeeds at every task, up to 10x: 20 ms steps, one per 50 Hz tick). */
#define VLAD_WORLD_MAX_DT_FACTOR 10

typedef struct vlad_world vlad_world;

/* Load p->sim.model, set its physics step (above), map joints/actuators/cameras, and (if
 * render) create the offscreen context sized to the largest camera. NULL with err filled on
 * any mismatch. */
vlad_world *vlad_world_new(const vlad_profile *p, bool render, vlad_err *err);
void vlad_world_free(vlad_world *w);

int vlad_world_n_joints(const vlad_world *w);
/* Physics seconds per control tick: timestep * sim.substeps = 1 / control_hz (to rounding). */
double vlad_world_tick_seconds(const vlad_world *w);
/* The physics step in use, 1 / (control_hz x sim.substeps), and the MJCF file's own. */
double vlad_world_timestep(const vlad_world *w);
double vlad_world_model_timestep(const vlad_world *w);
/* Simulated seconds since the last reset (MuJoCo's time). */
double vlad_world_time(const vlad_world *w);

/* Reset physics to rest with the arm at q (profile order, clamped to the joint limits)
 * and actuator targets q; objects hidden, block parked out of view. */
void vlad_world_reset(vlad_world *w, const double *q);

/* Set the actuator targets to `target` (clamped to the profile limits; non-finite
 * values keep the previous target) and advance sim.substeps physics steps. */
void vlad_world_step(vlad_world *w, const double *target);

/* Joint positions / velocities (either may be NULL), end-effector and block positions. */
void vlad_world_joint_state(const vlad_world *w, double *pos, double *vel);
void vlad_world_ee(const vlad_world *w, double ee[3]);
void vlad_world_block(const vlad_world *w, double pos[3]);

/* Place task objects. pos NULL hides the object. rgb in [0,1]. */
void vlad_world_set_object(vlad_world *w, int i, const double *pos, const float rgb[3]);
void vlad_world_set_goal(vlad_world *w, const double *pos, double radius, const float rgb[3]);
/* Put the block at rest at pos (x, y; z = resting on the table) with yaw (rad). */
void vlad_world_set_block(vlad_world *w, const double pos[2], double yaw, const float rgb[3]);
/* Half-size of the block's box (m) and radius of the end-effector ball. */
double vlad_world_block_half(const vlad_world *w);
double vlad_world_ee_radius(const vlad_world *w);

/* Render camera `cam` (profile index) into rgb: width*height*3 bytes, rows top to
 * bottom. Renders from a copy of the state: rendering never changes the physics. VLAD_ESTATE if the world was created without rendering. */
int vlad_world_render(vlad_world *w, int cam, uint8_t *rgb, vlad_err *err);

/* Inverse kinematics on a scratch copy (the physics state is untouched): joint
 * positions q_out (profile order, inside the limits) that put the site "ee" at
 * target, starting from q_init and preferring postures near q_rest (null space).
 * Returns the remaining position error in metres. */
double vlad_world_ik(vlad_world *w, const double target[3], const double *q_init,
                     const double *q_rest, double *q_out);

/* End-effector position for joint positions q (forward kinematics on the scratch copy). */
void vlad_world_fk(vlad_world *w, const double *q, double ee[3]);

#endif
