/* link.c — vlad-sim's daemon client; see link.h. */
#include "link.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "clock.h"

#define RESEND_MS 100

struct vlad_sim_link {
    const vlad_profile *p;
    vlad_client *cl;
    int command_timeout_ms;
    int lockstep_timeout_ms;
    FILE *log;
    bool warned_cmd;
    int unanswered, timeouts; /* since the last vlad_sim_link_take_faults */
};

vlad_sim_link *vlad_sim_link_new(const vlad_profile *p, const char *key_file, int command_timeout_ms,
                                 double lockstep_timeout_ms, FILE *log, vlad_err *err) {
    vlad_sim_link *l = calloc(1, sizeof *l);
    if (!l) {
        vlad_err_set(err, VLAD_ENOMEM, "out of memory");
        return NULL;
    }
    l->p = p;
    l->log = log;
    double to = lockstep_timeout_ms > 0 ? lockstep_timeout_ms : p->lockstep_timeout_ms;
    l->lockstep_timeout_ms = to < 1 ? 1 : (int)(to + 0.5);
    /* lockstep: an episode's reset and instruction are part of the run (a reply missed on a
     * loaded machine would start the episode on the last one's state): the tick's bound */
    int def = p->clock == VLAD_CLOCK_LOCKSTEP && l->lockstep_timeout_ms > 500 ? l->lockstep_timeout_ms
                                                                              : 500;
    l->command_timeout_ms = command_timeout_ms > 0 ? command_timeout_ms : def;
    l->cl = vlad_client_new_keyed(p, VLAD_CLIENT_ACTIONS | VLAD_CLIENT_CONTROL | VLAD_CLIENT_PUBLISH,
                                  key_file, err);
    if (!l->cl) {
        free(l);
        return NULL;
    }
    vlad_sleep_until_ns(vlad_now_ns() + 300 * VLAD_NS_PER_MS); /* let ZeroMQ connect */
    return l;
}

void vlad_sim_link_free(vlad_sim_link *l) {
    if (!l)
        return;
    vlad_client_free(l->cl);
    free(l);
}

static int command(vlad_sim_link *l, Vlad__Command *c, vlad_err *err) {
    Vlad__Reply *rep = NULL;
    int rc = vlad_client_command(l->cl, c, l->command_timeout_ms, &rep, err);
    if (rep)
        vlad__reply__free_unpacked(rep, NULL);
    return rc;
}

void vlad_sim_link_begin_episode(vlad_sim_link *l, int64_t first_tick, const char *instruction) {
    vlad_err err;
    Vlad__Command c = VLAD__COMMAND__INIT;
    Vlad__Reset rs = VLAD__RESET__INIT;
    rs.from_robot_tick = first_tick;
    c.body_case = VLAD__COMMAND__BODY_RESET;
    c.reset = &rs;
    int rc = command(l, &c, &err);
    if (rc == VLAD_OK) {
        Vlad__Command c2 = VLAD__COMMAND__INIT;
        Vlad__SetInstruction si = VLAD__SET_INSTRUCTION__INIT;
        si.text = (char *)instruction;
        c2.body_case = VLAD__COMMAND__BODY_SET_INSTRUCTION;
        c2.set_instruction = &si;
        rc = command(l, &c2, &err);
    }
    if (rc != VLAD_OK)
        l->unanswered++;
    if (rc != VLAD_OK && !l->warned_cmd) {
        l->warned_cmd = true;
        if (l->log)
            fprintf(l->log, "vlad-sim: warning: daemon did not answer reset/set_instruction (%s); "
                            "continuing\n", err.msg);
    }
}

/* The wire message of o; the arrays live in *b (the caller's stack). */
typedef struct obs_buf {
    Vlad__Observation o;
    Vlad__CameraImage imgs[VLAD_MAX_CAMERAS];
    Vlad__CameraImage *ip[VLAD_MAX_CAMERAS];
    Vlad__TaskEvent evs[VLAD_TASK_MAX_EVENTS];
    Vlad__TaskEvent *ep[VLAD_TASK_MAX_EVENTS];
} obs_buf;

static Vlad__Observation *build(const vlad_sim_link *l, const vlad_sim_obs *s, obs_buf *b) {
    const vlad_profile *p = l->p;
    vlad__observation__init(&b->o);
    b->o.tick = s->tick;
    b->o.stamp_ns = vlad_now_ns();
    b->o.n_joint_pos = b->o.n_joint_vel = (size_t)p->n_joints;
    b->o.joint_pos = (double *)s->q;
    b->o.joint_vel = (double *)s->qd;
    size_t ni = 0;
    for (int c = 0; s->cam_due && s->img && c < p->n_cameras; c++) {
        if (!s->cam_due[c])
            continue;
        Vlad__CameraImage *im = &b->imgs[ni];
        vlad__camera_image__init(im);
        im->name = (char *)p->cameras[c].name;
        im->width = (uint32_t)p->cameras[c].width;
        im->height = (uint32_t)p->cameras[c].height;
        im->encoding = VLAD__IMAGE_ENCODING__IMAGE_ENCODING_RGB8;
        im->data.len = (size_t)im->width * im->height * 3;
        im->data.data = s->img[c];
        im->tick = s->tick;
        b->ip[ni++] = im;
    }
    b->o.n_images = ni;
    b->o.images = b->ip;
    int ne = s->ev ? s->ev->n : 0;
    for (int i = 0; i < ne; i++) {
        vlad__task_event__init(&b->evs[i]);
        b->evs[i].kind = (Vlad__TaskEvent__Kind)s->ev->ev[i].kind;
        b->evs[i].tick = s->tick;
        b->evs[i].episode = (uint32_t)s->episode;
        b->evs[i].detail = (char *)s->ev->ev[i].detail;
        b->ep[i] = &b->evs[i];
    }
    b->o.n_events = (size_t)ne;
    b->o.events = b->ep;
    return &b->o;
}

static void take(const vlad_sim_link *l, const Vlad__Action *a, vlad_sim_target *t) {
    t->fresh = true;
    for (int j = 0; j < l->p->n_joints; j++)
        t->q[j] = a->joint_targets[j];
    t->chunk_id = a->chunk_id;
    t->obs_tick = a->obs_robot_tick; /* on this simulator's timeline */
    t->source = a->source;
}

int vlad_sim_link_lockstep(vlad_sim_link *l, const vlad_sim_obs *o, vlad_sim_target *t, vlad_err *err) {
    memset(t, 0, sizeof *t);
    obs_buf b;
    Vlad__Action *a = NULL;
    int rc = vlad_client_lockstep(l->cl, build(l, o, &b), l->lockstep_timeout_ms, RESEND_MS, NULL,
                                  NULL, &a, err);
    if (rc == VLAD_OK) {
        take(l, a, t);
        vlad__action__free_unpacked(a, NULL);
    }
    if (rc == VLAD_ETIMEOUT)
        l->timeouts++;
    return rc == VLAD_ETIMEOUT ? VLAD_OK : rc;
}

void vlad_sim_link_take_faults(vlad_sim_link *l, int *unanswered, int *timeouts) {
    *unanswered = l->unanswered;
    *timeouts = l->timeouts;
    l->unanswered = l->timeouts = 0;
}

int vlad_sim_link_publish(vlad_sim_link *l, const vlad_sim_obs *o, vlad_err *err) {
    obs_buf b;
    return vlad_client_publish_observation(l->cl, build(l, o, &b), err);
}

void vlad_sim_link_wall_target(vlad_sim_link *l, int64_t episode_first_tick, int64_t tick,
                               int64_t deadline_ns, vlad_sim_target *t) {
    memset(t, 0, sizeof *t);
    vlad_err err;
    for (;;) {
        int64_t left = deadline_ns - vlad_now_ns();
        int ms = left > 0 ? (int)((left + VLAD_NS_PER_MS - 1) / VLAD_NS_PER_MS) : 0;
        Vlad__Action *a = NULL;
        if (vlad_client_recv_action(l->cl, ms, &a, &err) == VLAD_OK && a) {
            if (a->robot_tick >= episode_first_tick && a->robot_tick <= tick) {
                take(l, a, t); /* newest wins */
                t->recv_ns = vlad_now_ns();
            }
            vlad__action__free_unpacked(a, NULL);
            continue; /* drain what is queued (ms = 0 once the tick is over) */
        }
        if (vlad_now_ns() >= deadline_ns)
            break;
    }
}
