#include "zap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "zutil.h"

/* A connection accepted this long ago has finished its handshake or been dropped: ZeroMQ
 * drops unfinished handshakes VLAD_HANDSHAKE_IVL_MS after the accept (a second more covers
 * ZeroMQ's and our own latency). So an open connection this old is an established one. */
#define SETTLED_NS (VLAD_HANDSHAKE_IVL_MS * VLAD_NS_PER_MS + VLAD_NS_PER_S)
/* Which connection an ambiguous ZAP request is put down to (for the reported count only):
 * the oldest unmatched one accepted this recently -- a client sends its request a round trip
 * after it connected, and simultaneous clients send theirs in the order they connected --
 * else the newest unmatched one (an older unmatched one is more likely a connection that
 * sends nothing). */
#define RECENT_NS (100 * VLAD_NS_PER_MS)

/* What the handler decided for a connection (whose ZAP request was matched to it). AMB_*: the
 * match was a guess (several connections could have sent the request). */
enum { UNM = 0, OK200, REF, AMB200, AMBREF };

/* one open connection, indexed by its descriptor */
typedef struct node {
    int64_t t_acc;  /* accepted (our clock) */
    int prev, next; /* the list of open connections, oldest first */
    uint8_t st, open, settled;
} node;

typedef struct watch {
    char domain[8];
    void *sock, *mon; /* the watched socket (monitor on), our end of its monitor */
    node *nd;
    int nnd;
    int head, tail; /* open connections in accept order */
    int young;      /* the first of them not settled (-1: none) */
    /* open connections: settled; young ones admitted for certain, admitted by a guess, not
     * matched to a request yet, holding a guessed match (AMB200 or AMBREF) */
    uint32_t n_settled, n_ok, n_amb_ok, n_unm, n_amb;
    int64_t *amb; /* ring: times of the admissions decided on a guess, the last SETTLED_NS */
    int amb_head, amb_n, amb_cap;
} watch;

struct vlad_zap {
    void *ctx, *rep;
    const vlad_keyring *kr;
    int max_conn;
    watch w[VLAD_ZAP_MAX_WATCH];
    int nw;
    uint64_t refused, accepted, conn_refused, disconnects;
    char last[320]; /* room for the longest line one() writes */
};

vlad_zap *vlad_zap_new(void *ctx, const vlad_keyring *kr, int max_conn, vlad_err *err) {
    if (max_conn < 1) {
        vlad_err_set(err, VLAD_EINVAL, "zap: max connections %d, expected >= 1", max_conn);
        return NULL;
    }
    vlad_zap *z = calloc(1, sizeof *z);
    if (!z) {
        vlad_err_set(err, VLAD_ENOMEM, "zap: out of memory");
        return NULL;
    }
    z->ctx = ctx;
    z->kr = kr;
    z->max_conn = max_conn;
    z->rep = zmq_socket(ctx, ZMQ_REP);
    int zero = 0;
    if (!z->rep || zmq_setsockopt(z->rep, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_bind(z->rep, "inproc://zeromq.zap.01")) {
        vlad_err_set(err, VLAD_EIO, "zap: cannot bind the authentication handler: %s",
                     zmq_strerror(errno));
        vlad_zap_free(z);
        return NULL;
    }
    return z;
}

void vlad_zap_free(vlad_zap *z) {
    if (!z)
        return;
    for (int i = 0; i < z->nw; i++) {
        watch *w = &z->w[i];
        if (w->sock)
            zmq_socket_monitor(w->sock, NULL, 0);
        if (w->mon)
            zmq_close(w->mon);
        free(w->nd);
        free(w->amb);
    }
    if (z->rep)
        zmq_close(z->rep);
    free(z);
}

int vlad_zap_watch(vlad_zap *z, void *sock, const char *domain, vlad_err *err) {
    if (z->nw >= VLAD_ZAP_MAX_WATCH || strlen(domain) >= sizeof z->w[0].domain)
        return vlad_err_set(err, VLAD_EINVAL, "zap: cannot watch socket '%s'", domain);
    watch *w = &z->w[z->nw++]; /* counted at once: vlad_zap_free undoes a partial set-up */
    snprintf(w->domain, sizeof w->domain, "%s", domain);
    w->head = w->tail = w->young = -1;
    w->amb_cap = z->max_conn;
    w->amb = calloc((size_t)w->amb_cap, sizeof *w->amb);
    if (!w->amb)
        return vlad_err_set(err, VLAD_ENOMEM, "zap: out of memory");
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://vlad.monitor.%s", domain);
    if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED))
        return vlad_err_set(err, VLAD_EIO, "zap: cannot monitor socket '%s': %s", domain,
                            zmq_strerror(errno));
    w->sock = sock;
    /* receive high-water mark 0: the monitor's queue is unbounded, so ZeroMQ's I/O thread
     * never blocks on an event we have not read yet (we read them all at every wake-up) */
    int zero = 0;
    w->mon = zmq_socket(z->ctx, ZMQ_PAIR);
    if (!w->mon || zmq_setsockopt(w->mon, ZMQ_RCVHWM, &zero, sizeof zero) ||
        zmq_setsockopt(w->mon, ZMQ_LINGER, &zero, sizeof zero) || zmq_connect(w->mon, ep))
        return vlad_err_set(err, VLAD_EIO, "zap: cannot read the monitor of socket '%s': %s",
                            domain, zmq_strerror(errno));
    return VLAD_OK;
}

int vlad_zap_sockets(vlad_zap *z, void **socks, int max) {
    int n = 0;
    if (n < max)
        socks[n++] = z->rep;
    for (int i = 0; i < z->nw && n < max; i++)
        if (z->w[i].mon)
            socks[n++] = z->w[i].mon;
    return n;
}

uint64_t vlad_zap_refused(const vlad_zap *z) { return z->refused; }
uint64_t vlad_zap_accepted(const vlad_zap *z) { return z->accepted; }
uint64_t vlad_zap_conn_refused(const vlad_zap *z) { return z->conn_refused; }
uint64_t vlad_zap_disconnects(const vlad_zap *z) { return z->disconnects; }
const char *vlad_zap_last_refusal(const vlad_zap *z) { return z->last; }

/* ---- the connection count ------------------------------------------------------------
 *
 * ZeroMQ's monitor events name the descriptor of a connection accepted and of one that ended,
 * and nothing else does: a ZAP request does not say which connection sent it. Each request is
 * matched to an open connection not matched yet (on the socket its domain names) when it is
 * answered, with the monitor read up to that moment: ZeroMQ reports a connection's accept
 * before it sends its ZAP request (both from its one I/O thread), so the sender is among those
 * connections. If it is the only one, and no guessed match is open (one could have taken the
 * sender's place), the match is certain, else it is a guess. What the handler weighs against
 * security.max_connections is then an upper bound of the established connections:
 *   open connections settled (older than SETTLED_NS: established, or ZeroMQ would have
 *   dropped them) + younger ones admitted for certain + admissions decided on a guess during
 *   the last SETTLED_NS (whether or not the connection guessed has ended: it may have been
 *   the wrong one)
 * so the cap holds even while handshakes overlap; ending connections free their place at once
 * when their match was certain, SETTLED_NS after the guess otherwise. The count reported
 * (vlad_zap_connections) puts guessed admissions on the connections guessed instead. */

static bool settled(const node *x, int64_t now) { return now - x->t_acc >= SETTLED_NS; }

/* take node x out of the young counters (it ended or settled) */
static void young_leave(watch *w, const node *x) {
    switch (x->st) {
    case OK200: w->n_ok--; break;
    case AMB200: w->n_ok--, w->n_amb_ok--, w->n_amb--; break; /* (AMB200 is counted in n_ok) */
    case AMBREF: w->n_amb--; break;
    case UNM: w->n_unm--; break;
    default: break;
    }
}

static void settle(watch *w, int64_t now) {
    while (w->young >= 0 && settled(&w->nd[w->young], now)) {
        node *x = &w->nd[w->young];
        young_leave(w, x);
        x->settled = 1;
        w->n_settled++;
        w->young = x->next;
    }
    while (w->amb_n > 0 && now - w->amb[w->amb_head] >= SETTLED_NS) {
        w->amb_head = (w->amb_head + 1) % w->amb_cap;
        w->amb_n--;
    }
}

/* the connections of w, as reported: settled ones, and young ones admitted (matched for
 * certain or guessed); const: what settled since the last settle() is counted here */
static uint32_t counted(const watch *w, int64_t now) {
    uint32_t n = w->n_settled + w->n_ok;
    for (int i = w->young; i >= 0 && settled(&w->nd[i], now); i = w->nd[i].next)
        n += w->nd[i].st != OK200 && w->nd[i].st != AMB200;
    return n;
}

/* the upper bound the cap is checked against (after settle()) */
static uint32_t bound(const watch *w) {
    return w->n_settled + (w->n_ok - w->n_amb_ok) + (uint32_t)w->amb_n;
}

/* an unmatched young connection: the oldest accepted within RECENT_NS, else the newest */
static int pick_unmatched(const watch *w, int64_t now) {
    int oldest_recent = -1, newest = -1;
    for (int i = w->tail; i >= 0 && !w->nd[i].settled && !settled(&w->nd[i], now); i = w->nd[i].prev) {
        if (w->nd[i].st != UNM)
            continue;
        if (newest < 0)
            newest = i;
        if (now - w->nd[i].t_acc < RECENT_NS)
            oldest_recent = i;
        else
            break;
    }
    return oldest_recent >= 0 ? oldest_recent : newest;
}

/* Match a request on w decided `admit` to a connection. */
static void match(watch *w, bool admit, int64_t now) {
    bool certain = w->n_unm == 1 && w->n_amb == 0;
    int c = pick_unmatched(w, now);
    if (c >= 0) {
        node *x = &w->nd[c];
        w->n_unm--;
        if (certain) {
            x->st = admit ? OK200 : REF;
            w->n_ok += admit;
        } else {
            x->st = admit ? AMB200 : AMBREF;
            w->n_amb++;
            w->n_ok += admit, w->n_amb_ok += admit;
        }
    }
    if (admit && !(certain && c >= 0) && w->amb_n < w->amb_cap) {
        w->amb[(w->amb_head + w->amb_n) % w->amb_cap] = now;
        w->amb_n++;
    }
}

static void conn_open(watch *w, int fd, int64_t now) {
    if (fd < 0)
        return;
    if (fd >= w->nnd) {
        int n = w->nnd ? w->nnd : 64;
        while (n <= fd)
            n *= 2;
        node *nd = realloc(w->nd, (size_t)n * sizeof *nd);
        if (!nd)
            return; /* not tracked: its request will not be matched (a guess) */
        memset(nd + w->nnd, 0, (size_t)(n - w->nnd) * sizeof *nd);
        w->nd = nd;
        w->nnd = n;
    }
    node *x = &w->nd[fd];
    if (x->open) /* (cannot happen: ZeroMQ reports the end first) */
        return;
    *x = (node){.t_acc = now, .prev = w->tail, .next = -1, .st = UNM, .open = 1};
    if (w->tail >= 0)
        w->nd[w->tail].next = fd;
    else
        w->head = fd;
    w->tail = fd;
    if (w->young < 0)
        w->young = fd;
    w->n_unm++;
}

static void conn_close(watch *w, int fd) {
    if (fd < 0 || fd >= w->nnd || !w->nd[fd].open)
        return;
    node *x = &w->nd[fd];
    if (x->prev >= 0)
        w->nd[x->prev].next = x->next;
    else
        w->head = x->next;
    if (x->next >= 0)
        w->nd[x->next].prev = x->prev;
    else
        w->tail = x->prev;
    if (w->young == fd)
        w->young = x->next;
    x->open = 0;
    if (x->settled) {
        w->n_settled--;
        return;
    }
    young_leave(w, x);
    if (x->st == AMB200) {
        /* A guessed admission ended while young. A refused client hangs up at once, an
         * admitted one stays: the guess more likely fell on a refused connection, so put
         * it on the oldest open one whose refusal was a guess (reported count only; the
         * cap's bound keeps the guessed admission for SETTLED_NS anyway). */
        for (int i = w->young; i >= 0; i = w->nd[i].next)
            if (w->nd[i].st == AMBREF) {
                w->nd[i].st = AMB200;
                w->n_ok++, w->n_amb_ok++;
                break;
            }
    }
}

/* Read up to `max` pending events of one monitor. */
static void drain(vlad_zap *z, watch *w, int max) {
    if (!w->mon)
        return;
    for (int k = 0; k < max; k++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, w->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        /* frame 1: 16-bit event, 32-bit value (the descriptor; native order); frame 2: the
         * endpoint */
        bool ok = zmq_msg_size(&m) == 6;
        uint16_t ev = 0;
        uint32_t fd = 0;
        if (ok) {
            memcpy(&ev, zmq_msg_data(&m), 2);
            memcpy(&fd, (uint8_t *)zmq_msg_data(&m) + 2, 4);
        }
        bool more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) {
            zmq_msg_init(&m);
            more = zmq_msg_recv(&m, w->mon, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (!ok || fd > INT32_MAX)
            continue;
        if (ev == ZMQ_EVENT_ACCEPTED) {
            int64_t now = vlad_now_ns();
            settle(w, now); /* keep the list's young part young */
            conn_open(w, (int)fd, now);
        } else if (ev == ZMQ_EVENT_DISCONNECTED) {
            z->disconnects++;
            conn_close(w, (int)fd);
        }
    }
}

static void drain_all(vlad_zap *z) {
    for (int i = 0; i < z->nw; i++) {
        drain(z, &z->w[i], 4096);
        settle(&z->w[i], vlad_now_ns());
    }
}

uint32_t vlad_zap_connections(const vlad_zap *z) {
    int64_t now = vlad_now_ns();
    uint32_t n = 0;
    for (int i = 0; i < z->nw; i++)
        n += counted(&z->w[i], now);
    return n;
}

/* ---- the handler -------------------------------------------------------------------- */

static void send_str(void *s, const char *str, size_t n, int more) {
    zmq_send(s, str, n, more ? ZMQ_SNDMORE : 0);
}

#define ZAP_FRAMES 8

/* handle one request; false if none was pending */
static bool one(vlad_zap *z) {
    zmq_msg_t f[ZAP_FRAMES];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t tmp, *m = n < ZAP_FRAMES ? &f[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, z->rep, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            for (int i = 0; i < n && i < ZAP_FRAMES; i++)
                zmq_msg_close(&f[i]);
            return false;
        }
        more = zmq_msg_more(m);
        if (m == &tmp)
            zmq_msg_close(m);
        else
            n++;
    }
    /* version, request id, domain, address, identity, mechanism, credentials... */
    char domain[16] = "", mech[16] = "", addr[64] = "";
    if (n >= 6) {
        snprintf(domain, sizeof domain, "%.*s", (int)zmq_msg_size(&f[2]), (char *)zmq_msg_data(&f[2]));
        snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&f[3]), (char *)zmq_msg_data(&f[3]));
        snprintf(mech, sizeof mech, "%.*s", (int)zmq_msg_size(&f[5]), (char *)zmq_msg_data(&f[5]));
    }
    const char *status = "400", *why = "refused";
    char user[VLAD_Z85_KEY + 1] = "", full[96];
    const vlad_cert *c = NULL;
    bool ok = false;
    if (n < 6 || zmq_msg_size(&f[0]) != 3 || memcmp(zmq_msg_data(&f[0]), "1.0", 3)) {
        why = "malformed ZAP request";
    } else if (!z->kr) { /* no CURVE: loopback, NULL mechanism */
        if (strcmp(mech, "NULL"))
            why = "only NULL-mechanism clients are let in without CURVE";
        else
            ok = true;
    } else if (strcmp(mech, "CURVE") || n < 7 || zmq_msg_size(&f[6]) != 32) {
        why = "only CURVE clients are let in";
    } else if (!(c = vlad_keyring_find(z->kr, zmq_msg_data(&f[6])))) {
        why = "unknown client key";
    } else if (!strcmp(domain, "obs") && !(c->rights & VLAD_RIGHT_PUBLISH)) {
        why = "key lacks the publish right";
    } else if (!strcmp(domain, "act") && !(c->rights & VLAD_RIGHT_OBSERVE)) {
        why = "key lacks the observe right";
    } else if (!strcmp(domain, "inf") && !(c->rights & VLAD_RIGHT_INFER)) {
        why = "key lacks the infer right";
    } else {
        ok = true;
        snprintf(user, sizeof user, "%s", c->public_key);
    }
    watch *w = NULL;
    for (int i = 0; i < z->nw && !w; i++)
        if (!strcmp(z->w[i].domain, domain))
            w = &z->w[i];
    if (w) {
        drain_all(z); /* every connection accepted before this request was sent */
        if (ok && bound(w) >= (uint32_t)z->max_conn) {
            ok = false;
            z->conn_refused++;
            snprintf(full, sizeof full, "the %s socket has its %d connections (security.max_connections)",
                     domain, z->max_conn);
            why = full;
            user[0] = 0;
        }
        match(w, ok, vlad_now_ns());
    }
    if (ok) {
        status = "200";
        why = "OK";
    }
    /* reply: version, request id, status code, status text, user id, metadata */
    send_str(z->rep, "1.0", 3, 1);
    if (n >= 2)
        zmq_send(z->rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        send_str(z->rep, "", 0, 1);
    send_str(z->rep, status, 3, 1);
    send_str(z->rep, why, strlen(why), 1);
    send_str(z->rep, user, strlen(user), 1);
    send_str(z->rep, "", 0, 0);
    if (ok) {
        z->accepted++;
    } else {
        z->refused++;
        snprintf(z->last, sizeof z->last, "%s connection from %s refused: %s%s%s", domain, addr, why,
                 c ? " (" : "", c ? c->name : "");
        if (c)
            strncat(z->last, ")", sizeof z->last - strlen(z->last) - 1);
    }
    for (int i = 0; i < n && i < ZAP_FRAMES; i++)
        zmq_msg_close(&f[i]);
    return true;
}

void vlad_zap_handle(vlad_zap *z) {
    drain_all(z);
    for (int i = 0; i < 64 && one(z); i++)
        ;
}
