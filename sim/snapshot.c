/* snapshot.c — task pictures and the simulator's speed; see snapshot.h. */
#include "snapshot.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "expert.h"
#include "media.h"
#include "path.h"
#include "run.h"
#include "tasks.h"
#include "world.h"

int vlad_sim_snapshots(const vlad_profile *p, const char *dir, uint64_t seed, int ticks, int scale,
                       vlad_err *err) {
    if (p->n_cameras < 1)
        return vlad_err_set(err, VLAD_EINVAL, "snapshots need a camera in the profile");
    int rc = vlad_mkdir_p(dir, err);
    if (rc)
        return rc;
    vlad_world *w = vlad_world_new(p, true, err);
    if (!w)
        return err ? err->code : VLAD_EINVAL;
    vlad_expert *ex = vlad_expert_new(p, w, err);
    int W = p->cameras[0].width, H = p->cameras[0].height;
    rc = ex ? VLAD_OK : VLAD_ENOMEM;
    uint8_t *img = malloc((size_t)W * (size_t)H * 3);
    if (!img)
        rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
    double home[VLAD_MAX_JOINTS], q[VLAD_MAX_JOINTS];
    for (int j = 0; j < p->n_joints; j++)
        home[j] = p->joints[j].home;
    for (int k = 0; !rc && k < VLAD_TASK_COUNT; k++) {
        vlad_task t;
        rc = vlad_task_begin(&t, (vlad_task_kind)k, NULL, p->control_hz, vlad_sim_episode_seed(seed, (vlad_task_kind)k, 0),
                             err);
        if (rc)
            break;
        vlad_world_reset(w, home);
        vlad_task_sync_world(&t, w, true);
        double ee[3];
        vlad_world_ee(w, ee);
        vlad_expert_begin(ex, home, ee);
        /* whack: also wait until a target is up, so that the picture shows one */
        for (int i = 0; (i < ticks || (k == VLAD_TASK_WHACK && !t.obj[0].visible)) && !t.done && i < 1000; i++) {
            vlad_task_state st;
            vlad_world_ee(w, st.ee);
            vlad_world_block(w, st.block);
            vlad_task_update(&t, &st, NULL);
            vlad_task_sync_world(&t, w, false);
            vlad_expert_act(ex, &t, &st, q);
            vlad_world_step(w, q);
        }
        char path[VLAD_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/task-%s.png", dir, vlad_task_name((vlad_task_kind)k));
        rc = vlad_world_render(w, 0, img, err);
        if (!rc)
            rc = vlad_png_write(path, img, W, H, scale, err);
    }
    free(img);
    vlad_expert_free(ex);
    vlad_world_free(w);
    return rc;
}

int vlad_sim_bench_run(const vlad_profile *p, int ticks, int frames, vlad_sim_bench *b, vlad_err *err) {
    memset(b, 0, sizeof *b);
    vlad_world *w = vlad_world_new(p, p->n_cameras > 0, err);
    if (!w)
        return err ? err->code : VLAD_EINVAL;
    vlad_expert *ex = vlad_expert_new(p, w, err);
    if (!ex) {
        vlad_world_free(w);
        return VLAD_ENOMEM;
    }
    double home[VLAD_MAX_JOINTS], q[VLAD_MAX_JOINTS];
    for (int j = 0; j < p->n_joints; j++)
        home[j] = p->joints[j].home;
    vlad_task t;
    vlad_task_begin(&t, VLAD_TASK_WHACK, NULL, p->control_hz, 1, NULL);
    vlad_world_reset(w, home);
    double ee[3];
    vlad_world_ee(w, ee);
    vlad_expert_begin(ex, home, ee);
    int64_t step_ns = 0, ik_ns = 0;
    for (int i = 0; i < ticks; i++) {
        if (t.done) {
            vlad_task_begin(&t, VLAD_TASK_WHACK, NULL, p->control_hz, (uint64_t)i, NULL);
            vlad_world_reset(w, home);
            vlad_world_ee(w, ee);
            vlad_expert_begin(ex, home, ee);
        }
        vlad_task_state st;
        vlad_world_ee(w, st.ee);
        vlad_world_block(w, st.block);
        vlad_task_update(&t, &st, NULL);
        vlad_task_sync_world(&t, w, false);
        int64_t a = vlad_now_ns();
        vlad_expert_act(ex, &t, &st, q);
        int64_t m = vlad_now_ns();
        vlad_world_step(w, q);
        int64_t z = vlad_now_ns();
        ik_ns += m - a;
        step_ns += z - m;
    }
    b->ticks = ticks;
    b->substeps = p->sim.substeps;
    b->tick_us = ticks ? (double)step_ns / ticks / 1e3 : 0;
    b->step_us = b->tick_us / p->sim.substeps;
    b->ik_us = ticks ? (double)ik_ns / ticks / 1e3 : 0;
    b->realtime_factor = step_ns ? ticks * vlad_world_tick_seconds(w) / ((double)step_ns / 1e9) : 0;
    int rc = VLAD_OK;
    if (p->n_cameras > 0 && frames > 0) {
        uint8_t *img = malloc((size_t)p->cameras[0].width * (size_t)p->cameras[0].height * 3);
        if (!img) {
            rc = vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        } else {
            vlad_world_render(w, 0, img, NULL); /* warm-up */
            int64_t a = vlad_now_ns();
            for (int i = 0; i < frames && !rc; i++) {
                vlad_world_step(w, q);
                rc = vlad_world_render(w, 0, img, err);
            }
            int64_t z = vlad_now_ns();
            /* subtract the physics part measured above */
            b->render_ms = ((double)(z - a) / 1e6 - frames * b->tick_us / 1e3) / frames;
            b->frames = frames;
            b->width = p->cameras[0].width;
            b->height = p->cameras[0].height;
            free(img);
        }
    }
    vlad_expert_free(ex);
    vlad_world_free(w);
    return rc;
}

int vlad_sim_bench_report(const vlad_profile *p, const vlad_sim_bench *b, FILE *out,
                          const char *json_path, vlad_err *err) {
    fprintf(out, "vlad-sim bench: robot %s (%d joints), %s\n", p->robot, p->n_joints, p->sim.model);
    fprintf(out, "| measure | value |\n|---|---:|\n");
    fprintf(out, "| physics per control tick (%d substeps) | %.1f us |\n", b->substeps, b->tick_us);
    fprintf(out, "| physics per step | %.2f us |\n", b->step_us);
    fprintf(out, "| control ticks per second | %.0f |\n", b->tick_us > 0 ? 1e6 / b->tick_us : 0);
    fprintf(out, "| faster than real time | %.0fx |\n", b->realtime_factor);
    fprintf(out, "| expert action (IK) per tick | %.1f us |\n", b->ik_us);
    if (b->frames)
        fprintf(out, "| render %dx%d per frame | %.3f ms |\n", b->width, b->height, b->render_ms);
    if (!json_path)
        return VLAD_OK;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "robot", p->robot);
    cJSON_AddNumberToObject(o, "joints", p->n_joints);
    cJSON_AddNumberToObject(o, "ticks", b->ticks);
    cJSON_AddNumberToObject(o, "substeps", b->substeps);
    cJSON_AddNumberToObject(o, "physics_tick_us", b->tick_us);
    cJSON_AddNumberToObject(o, "physics_step_us", b->step_us);
    cJSON_AddNumberToObject(o, "realtime_factor", b->realtime_factor);
    cJSON_AddNumberToObject(o, "expert_action_us", b->ik_us);
    cJSON_AddNumberToObject(o, "render_frames", b->frames);
    cJSON_AddNumberToObject(o, "render_width", b->width);
    cJSON_AddNumberToObject(o, "render_height", b->height);
    cJSON_AddNumberToObject(o, "render_ms_per_frame", b->render_ms);
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = txt ? fopen(json_path, "w") : NULL;
    bool ok = f && fputs(txt, f) >= 0 && fputc('\n', f) != EOF;
    if (f)
        ok = fclose(f) == 0 && ok;
    free(txt);
    return ok ? VLAD_OK : vlad_err_set(err, VLAD_EIO, "cannot write %s", json_path);
}
