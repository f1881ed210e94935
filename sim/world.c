/* world.c — MuJoCo physics + OSMesa rendering; see world.h. */
#include "world.h"

#include <GL/osmesa.h>
#include <fenv.h>
#include <math.h>
#include <mujoco/mujoco.h>
#include <stdlib.h>
#include <string.h>

struct vlad_world {
    const vlad_profile *p;
    mjModel *m;
    mjData *d;
    mjData *ik; /* scratch copy for IK / FK */
    mjData *rd; /* scratch copy for rendering */
    int n;
    int qadr[VLAD_MAX_JOINTS], vadr[VLAD_MAX_JOINTS], act[VLAD_MAX_JOINTS];
    double lo[VLAD_MAX_JOINTS], hi[VLAD_MAX_JOINTS];
    int ee_site, ee_geom;
    int obj_mocap[VLAD_WORLD_N_OBJ], obj_geom[VLAD_WORLD_N_OBJ];
    int goal_mocap, goal_geom;
    int block_qadr, block_vadr, block_geom;
    int cam_id[VLAD_MAX_CAMERAS];
    /* rendering */
    bool render;
    OSMesaContext gl;
    unsigned char *glbuf;
    int buf_w, buf_h;
    mjvScene scn;
    mjvOption opt;
    mjrContext con;
    unsigned char *rgb_tmp;
    double *jac; /* 3 x nv */
    double model_dt; /* the MJCF file's timestep (replaced: set_timestep) */
};

static int body_mocap(const mjModel *m, const char *name, vlad_err *err) {
    int b = mj_name2id(m, mjOBJ_BODY, name);
    if (b < 0 || m->body_mocapid[b] < 0)
        return vlad_err_set(err, VLAD_EINVAL, "model has no mocap body '%s'", name), -1;
    return m->body_mocapid[b];
}

static int geom_id(const mjModel *m, const char *name, vlad_err *err) {
    int g = mj_name2id(m, mjOBJ_GEOM, name);
    if (g < 0)
        vlad_err_set(err, VLAD_EINVAL, "model has no geom '%s'", name);
    return g;
}

static int map_model(vlad_world *w, vlad_err *err) {
    const vlad_profile *p = w->p;
    mjModel *m = w->m;
    w->n = p->n_joints;
    for (int j = 0; j < w->n; j++) {
        const char *name = p->joints[j].name;
        int jid = mj_name2id(m, mjOBJ_JOINT, name);
        if (jid < 0)
            return vlad_err_set(err, VLAD_EINVAL, "joint '%s' of the profile is not in the model",
                                name);
        if (m->jnt_type[jid] != mjJNT_HINGE && m->jnt_type[jid] != mjJNT_SLIDE)
            return vlad_err_set(err, VLAD_EINVAL, "joint '%s' is not a hinge or slide joint", name);
        w->qadr[j] = m->jnt_qposadr[jid];
        w->vadr[j] = m->jnt_dofadr[jid];
        w->act[j] = -1;
        for (int a = 0; a < m->nu; a++) {
            if (m->actuator_trntype[a] == mjTRN_JOINT && m->actuator_trnid[2 * a] == jid) {
                if (w->act[j] >= 0)
                    return vlad_err_set(err, VLAD_EINVAL, "joint '%s' has several actuators", name);
                w->act[j] = a;
            }
        }
        if (w->act[j] < 0)
            return vlad_err_set(err, VLAD_EINVAL, "joint '%s' has no position actuator", name);
        w->lo[j] = p->joints[j].min;
        w->hi[j] = p->joints[j].max;
        if (m->jnt_limited[jid]) {
            if (w->lo[j] < m->jnt_range[2 * jid] - 1e-9 || w->hi[j] > m->jnt_range[2 * jid + 1] + 1e-9)
                return vlad_err_set(err, VLAD_EINVAL,
                                    "joint '%s': profile limits [%g, %g] exceed the model's [%g, %g]",
                                    name, w->lo[j], w->hi[j], m->jnt_range[2 * jid],
                                    m->jnt_range[2 * jid + 1]);
        }
    }
    w->ee_site = mj_name2id(m, mjOBJ_SITE, "ee");
    if (w->ee_site < 0)
        return vlad_err_set(err, VLAD_EINVAL, "model has no site 'ee' (end effector)");
    if ((w->ee_geom = geom_id(m, "ee", err)) < 0)
        return VLAD_EINVAL;
    char nm[16];
    for (int i = 0; i < VLAD_WORLD_N_OBJ; i++) {
        snprintf(nm, sizeof nm, "obj%d", i);
        if ((w->obj_mocap[i] = body_mocap(m, nm, err)) < 0 || (w->obj_geom[i] = geom_id(m, nm, err)) < 0)
            return VLAD_EINVAL;
    }
    if ((w->goal_mocap = body_mocap(m, "goal", err)) < 0 || (w->goal_geom = geom_id(m, "goal", err)) < 0)
        return VLAD_EINVAL;
    int bj = mj_name2id(m, mjOBJ_JOINT, "block");
    if (bj < 0 || m->jnt_type[bj] != mjJNT_FREE)
        return vlad_err_set(err, VLAD_EINVAL, "model has no free joint 'block'");
    w->block_qadr = m->jnt_qposadr[bj];
    w->block_vadr = m->jnt_dofadr[bj];
    if ((w->block_geom = geom_id(m, "block", err)) < 0)
        return VLAD_EINVAL;
    for (int c = 0; c < p->n_cameras; c++) {
        w->cam_id[c] = mj_name2id(m, mjOBJ_CAMERA, p->cameras[c].name);
        if (w->cam_id[c] < 0)
            return vlad_err_set(err, VLAD_EINVAL, "camera '%s' of the profile is not in the model",
                                p->cameras[c].name);
    }
    return VLAD_OK;
}

static int make_renderer(vlad_world *w, vlad_err *err) {
    const vlad_profile *p = w->p;
    int bw = 1, bh = 1;
    for (int c = 0; c < p->n_cameras; c++) {
        if (p->cameras[c].width > bw)
            bw = p->cameras[c].width;
        if (p->cameras[c].height > bh)
            bh = p->cameras[c].height;
    }
    w->buf_w = bw;
    w->buf_h = bh;
    w->m->vis.global.offwidth = bw;
    w->m->vis.global.offheight = bh;
    w->m->vis.quality.shadowsize = 0;
    w->gl = OSMesaCreateContextExt(OSMESA_RGBA, 24, 8, 8, NULL);
    if (!w->gl)
        return vlad_err_set(err, VLAD_EIO, "OSMesaCreateContextExt failed");
    w->glbuf = malloc((size_t)bw * (size_t)bh * 4);
    w->rgb_tmp = malloc((size_t)bw * (size_t)bh * 3);
    if (!w->glbuf || !w->rgb_tmp)
        return vlad_err_set(err, VLAD_ENOMEM, "out of memory (render buffers)");
    if (!OSMesaMakeCurrent(w->gl, w->glbuf, GL_UNSIGNED_BYTE, bw, bh))
        return vlad_err_set(err, VLAD_EIO, "OSMesaMakeCurrent failed");
    mjv_defaultScene(&w->scn);
    mjv_defaultOption(&w->opt);
    mjr_defaultContext(&w->con);
    mjv_makeScene(w->m, &w->scn, 200);
    mjr_makeContext(w->m, &w->con, mjFONTSCALE_100);
    mjr_setBuffer(mjFB_OFFSCREEN, &w->con);
    if (w->con.currentBuffer != mjFB_OFFSCREEN)
        return vlad_err_set(err, VLAD_EIO, "offscreen rendering is not available");
    w->render = true;
    return VLAD_OK;
}

/* The physics step (world.h): 1 / (control_hz x sim.substeps), so that every control tick is
 * exactly 1 / control_hz of simulated time whatever timestep the MJCF file names; refused if
 * that is more than VLAD_WORLD_MAX_DT_FACTOR times the model's own timestep. */
static int set_timestep(vlad_world *w, vlad_err *err) {
    const vlad_profile *p = w->p;
    double model_dt = w->m->opt.timestep;
    double dt = 1.0 / (p->control_hz * (double)p->sim.substeps);
    if (!(dt > 0) || !isfinite(dt))
        return vlad_err_set(err, VLAD_EINVAL, "%s: control_hz %g and sim.substeps %d give no physics step",
                            p->path, p->control_hz, p->sim.substeps);
    if (model_dt > 0 && dt > VLAD_WORLD_MAX_DT_FACTOR * model_dt * (1 + 1e-9)) {
        int need = (int)ceil(1.0 / (p->control_hz * VLAD_WORLD_MAX_DT_FACTOR * model_dt) - 1e-9);
        return vlad_err_set(err, VLAD_EINVAL,
                            "%s: sim.substeps %d at control_hz %g makes physics steps of %g ms, more "
                            "than %g times the timestep of %s (%g ms), which may not be stable: set "
                            "sim.substeps to at least %d (%d for the model's own step)",
                            p->path, p->sim.substeps, p->control_hz, dt * 1e3,
                            (double)VLAD_WORLD_MAX_DT_FACTOR, p->sim.model, model_dt * 1e3, need,
                            (int)ceil(1.0 / (p->control_hz * model_dt) - 1e-9));
    }
    w->model_dt = model_dt;
    w->m->opt.timestep = dt;
    return VLAD_OK;
}

vlad_world *vlad_world_new(const vlad_profile *p, bool render, vlad_err *err) {
    if (!p->sim.model[0]) {
        vlad_err_set(err, VLAD_EINVAL, "%s: sim.model is not set (the MJCF file of the robot)", p->path);
        return NULL;
    }
    if (p->n_joints < 1) {
        vlad_err_set(err, VLAD_EINVAL, "%s: the profile has no joints", p->path);
        return NULL;
    }
    vlad_world *w = calloc(1, sizeof *w);
    if (!w) {
        vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        return NULL;
    }
    w->p = p;
    char msg[1000] = "";
    w->m = mj_loadXML(p->sim.model, NULL, msg, sizeof msg);
    if (!w->m) {
        vlad_err_set(err, VLAD_EINVAL, "%s: cannot load MJCF: %s", p->sim.model, msg);
        goto fail;
    }
    if (set_timestep(w, err))
        goto fail;
    w->d = mj_makeData(w->m);
    w->ik = mj_makeData(w->m);
    w->rd = mj_makeData(w->m);
    w->jac = malloc(sizeof(double) * 3 * (size_t)(w->m->nv > 0 ? w->m->nv : 1));
    if (!w->d || !w->ik || !w->rd || !w->jac) {
        vlad_err_set(err, VLAD_ENOMEM, "out of memory (mjData)");
        goto fail;
    }
    if (map_model(w, err)) {
        vlad_err_prefix(err, "%s: ", p->sim.model);
        goto fail;
    }
    if (render && p->n_cameras > 0) {
        /* Mesa may switch the FPU to flush denormals to zero; keep the physics' FP
         * environment so that runs with and without rendering are bit-identical. */
        fenv_t env;
        fegetenv(&env);
        int rc = make_renderer(w, err);
        fesetenv(&env);
        if (rc)
            goto fail;
    }
    double q[VLAD_MAX_JOINTS];
    for (int j = 0; j < w->n; j++)
        q[j] = p->joints[j].home;
    vlad_world_reset(w, q);
    return w;
fail:
    vlad_world_free(w);
    return NULL;
}

void vlad_world_free(vlad_world *w) {
    if (!w)
        return;
    fenv_t env;
    fegetenv(&env);
    if (w->gl) {
        if (w->render) {
            OSMesaMakeCurrent(w->gl, w->glbuf, GL_UNSIGNED_BYTE, w->buf_w, w->buf_h);
            mjr_freeContext(&w->con);
            mjv_freeScene(&w->scn);
        }
        OSMesaDestroyContext(w->gl);
    }
    fesetenv(&env);
    free(w->glbuf);
    free(w->rgb_tmp);
    free(w->jac);
    if (w->ik)
        mj_deleteData(w->ik);
    if (w->rd)
        mj_deleteData(w->rd);
    if (w->d)
        mj_deleteData(w->d);
    if (w->m)
        mj_deleteModel(w->m);
    free(w);
}

int vlad_world_n_joints(const vlad_world *w) { return w->n; }

double vlad_world_tick_seconds(const vlad_world *w) {
    return w->m->opt.timestep * (double)w->p->sim.substeps;
}

double vlad_world_timestep(const vlad_world *w) { return w->m->opt.timestep; }
double vlad_world_model_timestep(const vlad_world *w) { return w->model_dt; }
double vlad_world_time(const vlad_world *w) { return w->d->time; }

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static void park_block(vlad_world *w) {
    double *q = w->d->qpos + w->block_qadr;
    q[0] = 2.0;
    q[1] = 2.0;
    q[2] = vlad_world_block_half(w);
    q[3] = 1;
    q[4] = q[5] = q[6] = 0;
    memset(w->d->qvel + w->block_vadr, 0, 6 * sizeof(double));
}

void vlad_world_reset(vlad_world *w, const double *q) {
    mj_resetData(w->m, w->d);
    for (int j = 0; j < w->n; j++) {
        double v = clampd(isfinite(q[j]) ? q[j] : 0, w->lo[j], w->hi[j]);
        w->d->qpos[w->qadr[j]] = v;
        w->d->ctrl[w->act[j]] = v;
    }
    for (int i = 0; i < VLAD_WORLD_N_OBJ; i++)
        vlad_world_set_object(w, i, NULL, NULL);
    vlad_world_set_goal(w, NULL, 0, NULL);
    park_block(w);
    mj_forward(w->m, w->d);
}

void vlad_world_step(vlad_world *w, const double *target) {
    for (int j = 0; j < w->n; j++) {
        if (isfinite(target[j]))
            w->d->ctrl[w->act[j]] = clampd(target[j], w->lo[j], w->hi[j]);
    }
    for (int s = 0; s < w->p->sim.substeps; s++)
        mj_step(w->m, w->d);
}

void vlad_world_joint_state(const vlad_world *w, double *pos, double *vel) {
    for (int j = 0; j < w->n; j++) {
        if (pos)
            pos[j] = w->d->qpos[w->qadr[j]];
        if (vel)
            vel[j] = w->d->qvel[w->vadr[j]];
    }
}

void vlad_world_ee(const vlad_world *w, double ee[3]) {
    memcpy(ee, w->d->site_xpos + 3 * w->ee_site, 3 * sizeof(double));
}

void vlad_world_block(const vlad_world *w, double pos[3]) {
    memcpy(pos, w->d->qpos + w->block_qadr, 3 * sizeof(double));
}

static void set_rgb(vlad_world *w, int geom, const float rgb[3], float alpha) {
    float *c = w->m->geom_rgba + 4 * geom;
    if (rgb) {
        c[0] = rgb[0];
        c[1] = rgb[1];
        c[2] = rgb[2];
    }
    c[3] = alpha;
}

void vlad_world_set_object(vlad_world *w, int i, const double *pos, const float rgb[3]) {
    if (i < 0 || i >= VLAD_WORLD_N_OBJ)
        return;
    double *mp = w->d->mocap_pos + 3 * w->obj_mocap[i];
    if (pos) {
        memcpy(mp, pos, 3 * sizeof(double));
        set_rgb(w, w->obj_geom[i], rgb, 1.0f);
    } else {
        mp[0] = 0.3;
        mp[1] = 0;
        mp[2] = -1.0;
        set_rgb(w, w->obj_geom[i], NULL, 0.0f);
    }
}

void vlad_world_set_goal(vlad_world *w, const double *pos, double radius, const float rgb[3]) {
    double *mp = w->d->mocap_pos + 3 * w->goal_mocap;
    if (pos) {
        mp[0] = pos[0];
        mp[1] = pos[1];
        mp[2] = 0.0005;
        if (radius > 0)
            w->m->geom_size[3 * w->goal_geom] = radius;
        set_rgb(w, w->goal_geom, rgb, 1.0f);
    } else {
        mp[0] = 0.3;
        mp[1] = 0;
        mp[2] = -1.0;
        set_rgb(w, w->goal_geom, NULL, 0.0f);
    }
}

void vlad_world_set_block(vlad_world *w, const double pos[2], double yaw, const float rgb[3]) {
    double *q = w->d->qpos + w->block_qadr;
    q[0] = pos[0];
    q[1] = pos[1];
    q[2] = vlad_world_block_half(w);
    q[3] = cos(yaw / 2);
    q[4] = 0;
    q[5] = 0;
    q[6] = sin(yaw / 2);
    memset(w->d->qvel + w->block_vadr, 0, 6 * sizeof(double));
    if (rgb)
        set_rgb(w, w->block_geom, rgb, 1.0f);
    mj_forward(w->m, w->d);
}

double vlad_world_block_half(const vlad_world *w) { return w->m->geom_size[3 * w->block_geom + 2]; }

double vlad_world_ee_radius(const vlad_world *w) { return w->m->geom_size[3 * w->ee_geom]; }

int vlad_world_render(vlad_world *w, int cam, uint8_t *rgb, vlad_err *err) {
    if (!w->render)
        return vlad_err_set(err, VLAD_ESTATE, "world created without rendering");
    if (cam < 0 || cam >= w->p->n_cameras)
        return vlad_err_set(err, VLAD_EINVAL, "no camera %d", cam);
    fenv_t env;
    fegetenv(&env); /* see vlad_world_new: Mesa must not change the physics' FP mode */
    if (OSMesaGetCurrentContext() != w->gl &&
        !OSMesaMakeCurrent(w->gl, w->glbuf, GL_UNSIGNED_BYTE, w->buf_w, w->buf_h)) {
        fesetenv(&env);
        return vlad_err_set(err, VLAD_EIO, "OSMesaMakeCurrent failed");
    }
    int W = w->p->cameras[cam].width, H = w->p->cameras[cam].height;
    mjvCamera c;
    mjv_defaultCamera(&c);
    c.type = mjCAMERA_FIXED;
    c.fixedcamid = w->cam_id[cam];
    mjrRect vp = {0, 0, W, H};
    /* render from a copy, so that rendering never touches the physics state */
    mjData *rd = w->rd;
    memcpy(rd->qpos, w->d->qpos, sizeof(double) * (size_t)w->m->nq);
    memcpy(rd->mocap_pos, w->d->mocap_pos, sizeof(double) * 3 * (size_t)w->m->nmocap);
    memcpy(rd->mocap_quat, w->d->mocap_quat, sizeof(double) * 4 * (size_t)w->m->nmocap);
    mj_kinematics(w->m, rd);
    mj_camlight(w->m, rd);
    mjv_updateScene(w->m, rd, &w->opt, NULL, &c, mjCAT_ALL, &w->scn);
    mjr_render(vp, &w->scn, &w->con);
    mjr_readPixels(w->rgb_tmp, NULL, vp, &w->con);
    fesetenv(&env);
    size_t row = (size_t)W * 3;
    for (int y = 0; y < H; y++) /* readPixels rows are bottom-up */
        memcpy(rgb + (size_t)y * row, w->rgb_tmp + (size_t)(H - 1 - y) * row, row);
    return VLAD_OK;
}

static void fk_scratch(vlad_world *w, const double *q) {
    mjData *d = w->ik;
    for (int j = 0; j < w->n; j++)
        d->qpos[w->qadr[j]] = q[j];
    mj_kinematics(w->m, d);
    mj_comPos(w->m, d);
}

void vlad_world_fk(vlad_world *w, const double *q, double ee[3]) {
    memcpy(w->ik->qpos, w->d->qpos, sizeof(double) * (size_t)w->m->nq);
    fk_scratch(w, q);
    memcpy(ee, w->ik->site_xpos + 3 * w->ee_site, 3 * sizeof(double));
}

/* Solve the 3x3 system A x = b (A symmetric positive definite) by Cramer's rule. */
static void solve3(const double A[9], const double b[3], double x[3]) {
    double det = A[0] * (A[4] * A[8] - A[5] * A[7]) - A[1] * (A[3] * A[8] - A[5] * A[6]) +
                 A[2] * (A[3] * A[7] - A[4] * A[6]);
    if (fabs(det) < 1e-300) {
        x[0] = x[1] = x[2] = 0;
        return;
    }
    for (int c = 0; c < 3; c++) {
        double M[9];
        memcpy(M, A, sizeof M);
        for (int r = 0; r < 3; r++)
            M[3 * r + c] = b[r];
        x[c] = (M[0] * (M[4] * M[8] - M[5] * M[7]) - M[1] * (M[3] * M[8] - M[5] * M[6]) +
                M[2] * (M[3] * M[7] - M[4] * M[6])) /
               det;
    }
}

double vlad_world_ik(vlad_world *w, const double target[3], const double *q_init,
                     const double *q_rest, double *q_out) {
    const int n = w->n, nv = w->m->nv;
    const double lambda2 = 1e-4, k_null = 0.1;
    double q[VLAD_MAX_JOINTS], J[3 * VLAD_MAX_JOINTS];
    memcpy(w->ik->qpos, w->d->qpos, sizeof(double) * (size_t)w->m->nq);
    for (int j = 0; j < n; j++)
        q[j] = clampd(q_init[j], w->lo[j], w->hi[j]);
    double errn = 1e9;
    for (int it = 0; it < 100; it++) {
        fk_scratch(w, q);
        const double *x = w->ik->site_xpos + 3 * w->ee_site;
        double e[3] = {target[0] - x[0], target[1] - x[1], target[2] - x[2]};
        errn = sqrt(e[0] * e[0] + e[1] * e[1] + e[2] * e[2]);
        if (errn < 2e-5)
            break;
        mj_jacSite(w->m, w->ik, w->jac, NULL, w->ee_site);
        for (int r = 0; r < 3; r++)
            for (int j = 0; j < n; j++)
                J[r * n + j] = w->jac[r * nv + w->vadr[j]];
        double A[9];
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) {
                double s = r == c ? lambda2 : 0;
                for (int j = 0; j < n; j++)
                    s += J[r * n + j] * J[c * n + j];
                A[3 * r + c] = s;
            }
        /* primary: dq1 = J^T A^-1 e; secondary: null-space pull toward q_rest */
        double y[3], dq[VLAD_MAX_JOINTS], z[VLAD_MAX_JOINTS], Jz[3], yz[3];
        solve3(A, e, y);
        for (int j = 0; j < n; j++) {
            dq[j] = J[0 * n + j] * y[0] + J[1 * n + j] * y[1] + J[2 * n + j] * y[2];
            z[j] = q_rest ? k_null * (q_rest[j] - q[j]) : 0;
        }
        for (int r = 0; r < 3; r++) {
            Jz[r] = 0;
            for (int j = 0; j < n; j++)
                Jz[r] += J[r * n + j] * z[j];
        }
        solve3(A, Jz, yz);
        double mx = 0;
        for (int j = 0; j < n; j++) {
            dq[j] += z[j] - (J[0 * n + j] * yz[0] + J[1 * n + j] * yz[1] + J[2 * n + j] * yz[2]);
            if (fabs(dq[j]) > mx)
                mx = fabs(dq[j]);
        }
        double s = mx > 0.25 ? 0.25 / mx : 1.0;
        for (int j = 0; j < n; j++)
            q[j] = clampd(q[j] + s * dq[j], w->lo[j], w->hi[j]);
    }
    memcpy(q_out, q, sizeof(double) * (size_t)n);
    return errn;
}
