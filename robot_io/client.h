/* client.h — the controller-side library: what a robot controller, vlad-sim or vladctl
 * uses to talk to a vlad daemon described by the same profile.
 *
 * One vlad_client is used by one thread. Subscriptions are chosen at creation:
 * actions, chunks, language, events. Every received message is validated against the
 * profile; bad ones are counted (vlad_client_bad_messages) and skipped. */
#ifndef VLAD_CLIENT_H
#define VLAD_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "profile.h"
#include "vlad.pb-c.h"

enum {
    VLAD_CLIENT_ACTIONS = 1 << 0,  /* subscribe action.<robot> */
    VLAD_CLIENT_CHUNKS = 1 << 1,   /* subscribe chunk.<robot> */
    VLAD_CLIENT_LANG = 1 << 2,     /* subscribe lang.<robot> */
    VLAD_CLIENT_EVENTS = 1 << 3,   /* subscribe event.<robot> */
    VLAD_CLIENT_CONTROL = 1 << 4,  /* DEALER to the control endpoint */
    VLAD_CLIENT_PUBLISH = 1 << 5,  /* PUB observations to the daemon */
    VLAD_CLIENT_LATEST = 1 << 6,   /* vlad_client_recv_action keeps only the newest action */
};

typedef enum {
    VLAD_MSG_NONE = 0,
    VLAD_MSG_ACTION,
    VLAD_MSG_CHUNK,
    VLAD_MSG_LANG,
    VLAD_MSG_EVENT,
} vlad_msg_kind;

/* A received message; release with vlad_msg_clear. */
typedef struct vlad_msg {
    vlad_msg_kind kind;
    union {
        Vlad__Action *action;
        Vlad__ActionChunk *chunk;
        Vlad__LanguageToken *lang;
        Vlad__Event *event;
        ProtobufCMessage *base;
    } u;
} vlad_msg;

typedef struct vlad_client vlad_client;

/* Connect per `flags` to the endpoints of profile p (kept by pointer). With CURVE on (the
 * profile names the daemon's public key) the client's secret key comes from key_file, else
 * $VLAD_CLIENT_KEY, else security.client_key_file (robot_io/keys.h); vlad_client_new is
 * vlad_client_new_keyed with key_file NULL. */
vlad_client *vlad_client_new(const vlad_profile *p, unsigned flags, vlad_err *err);
vlad_client *vlad_client_new_keyed(const vlad_profile *p, unsigned flags, const char *key_file,
                                   vlad_err *err);
void vlad_client_free(vlad_client *c);

/* Publish an observation (robot name and sequence filled in if empty/zero). Observations go
 * only to a connected daemon (ZMQ_IMMEDIATE): while none is there they are dropped, never
 * queued for a daemon that starts later (it would act on states the robot has left). */
int vlad_client_publish_observation(vlad_client *c, Vlad__Observation *o, vlad_err *err);

/* Next subscribed message within timeout_ms (-1 forever, 0 poll). VLAD_OK with *m
 * filled, or VLAD_ETIMEOUT. Bad messages are counted and skipped. */
int vlad_client_recv(vlad_client *c, int timeout_ms, vlad_msg *m, vlad_err *err);
void vlad_msg_clear(vlad_msg *m);

/* Next Action within timeout_ms, skipping other kinds. With VLAD_CLIENT_LATEST, all
 * actions already queued are drained and only the newest is returned.
 * Release with vlad__action__free_unpacked(*a, NULL). */
int vlad_client_recv_action(vlad_client *c, int timeout_ms, Vlad__Action **a, vlad_err *err);

/* The lockstep handshake of a robot (or simulator) with a lockstep daemon: publish o (robot
 * tick o->tick) and wait up to timeout_ms for the Action that answers it (robot_tick ==
 * o->tick), publishing o again every resend_ms while none comes (a first message can meet a
 * subscription that is not connected yet; the daemon answers a resend with the same Action).
 * Actions for other robot ticks are dropped; every other subscribed message is handed to
 * on_msg(arg, m), which takes it (NULL: dropped). VLAD_OK with *a (release with
 * vlad__action__free_unpacked), VLAD_ETIMEOUT, or a publish error. */
int vlad_client_lockstep(vlad_client *c, Vlad__Observation *o, int timeout_ms, int resend_ms,
                         void (*on_msg)(void *arg, vlad_msg *m), void *arg, Vlad__Action **a,
                         vlad_err *err);

/* Send cmd (request_id assigned if 0) and wait up to timeout_ms for its reply; replies to
 * older requests are discarded. VLAD_ETIMEOUT if none came. Release the reply with
 * vlad__reply__free_unpacked(*reply, NULL). */
int vlad_client_command(vlad_client *c, Vlad__Command *cmd, int timeout_ms, Vlad__Reply **reply,
                        vlad_err *err);

/* vlad_client_command with a StatusRequest: the daemon's Status is (*reply)->status. */
int vlad_client_status(vlad_client *c, int timeout_ms, Vlad__Reply **reply, vlad_err *err);

/* Messages dropped as invalid so far. */
uint64_t vlad_client_bad_messages(const vlad_client *c);

/* The subscription socket (for zmq_poll by callers that multiplex), or NULL. */
void *vlad_client_sub_socket(vlad_client *c);

#endif
