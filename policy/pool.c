#include "pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_HELPERS 63

struct vlad_pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long gen;   /* job generation, bumped per vlad_pool_run */
    int active;          /* helpers running the current job */
    int closed;          /* the caller has finished its share: late helpers skip the job */
    int stop;
    int nice;
    void (*fn)(void *, int, int);
    void *arg;
    int n;               /* parts = helpers + 1 */
    int nh;              /* helpers started */
    pthread_t th[MAX_HELPERS];
    struct helper { struct vlad_pool *p; int part; } hs[MAX_HELPERS];
    float *scr[MAX_HELPERS];
    int tid[MAX_HELPERS];
    int started;
};

static void *helper_main(void *a) {
    struct helper *h = a;
    vlad_pool *p = h->p;
    unsigned long seen = 0;
    int my_nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    pthread_mutex_lock(&p->mu);
    p->tid[h->part - 1] = (int)syscall(SYS_gettid);
    p->started++;
    pthread_cond_broadcast(&p->done);
    for (;;) {
        while (!p->stop && p->gen == seen)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->stop)
            break;
        seen = p->gen;
        if (p->closed) /* woke too late: the caller did the work (jobs share it out) */
            continue;
        p->active++;
        void (*fn)(void *, int, int) = p->fn;
        void *arg = p->arg;
        int n = p->n, nice = p->nice;
        pthread_mutex_unlock(&p->mu);
        if (nice != my_nice) /* normally done already by vlad_pool_set_nice */
            if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) == 0)
                my_nice = nice;
        fn(arg, h->part, n);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

float *vlad_pool_scratch(const vlad_pool *p, int part) {
    return p && part >= 1 && part <= p->nh ? p->scr[part - 1] : NULL;
}

vlad_pool *vlad_pool_new(int n_threads, size_t scratch_floats) {
    if (n_threads < 2)
        return NULL;
    if (n_threads > MAX_HELPERS + 1)
        n_threads = MAX_HELPERS + 1;
    vlad_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    for (int i = 0; i < n_threads - 1; i++) {
        void *b = NULL;
        if (scratch_floats && posix_memalign(&b, 64, scratch_floats * sizeof(float)) != 0)
            break;
        p->scr[i] = b;
        p->hs[i] = (struct helper){p, i + 1};
        if (pthread_create(&p->th[i], NULL, helper_main, &p->hs[i]) != 0) {
            free(b);
            p->scr[i] = NULL;
            break;
        }
        p->nh++;
    }
    p->n = p->nh + 1;
    pthread_mutex_lock(&p->mu); /* their thread ids, for vlad_pool_set_nice */
    while (p->started < p->nh)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    if (p->nh == 0) {
        vlad_pool_free(p);
        return NULL;
    }
    return p;
}

void vlad_pool_free(vlad_pool *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nh; i++) {
        pthread_join(p->th[i], NULL);
        free(p->scr[i]);
    }
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int vlad_pool_threads(const vlad_pool *p) { return p ? p->n : 1; }

void vlad_pool_set_nice(vlad_pool *p, int nice) {
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->nice = nice;
    for (int i = 0; i < p->nh; i++) /* at once, so a sleeping helper is not left at 0 */
        setpriority(PRIO_PROCESS, (id_t)p->tid[i], nice);
    pthread_mutex_unlock(&p->mu);
}

void vlad_pool_run(vlad_pool *p, void (*fn)(void *, int, int), void *arg) {
    if (!p) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->closed = 0;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    pthread_mutex_lock(&p->mu);
    p->closed = 1; /* helpers that have not started yet never will */
    while (p->active > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
