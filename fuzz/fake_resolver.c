/* fake_resolver.c — a deterministic getaddrinfo for the fuzz targets that load profiles.
 *
 * common/endpoint.c resolves tcp:// host names with getaddrinfo. In a fuzzer a real lookup is
 * slow, may reach the network and answers differently from run to run, so the targets link
 * with -Wl,--wrap=getaddrinfo,--wrap=freeaddrinfo and get this table instead: numeric
 * literals as the real resolver reads them, a few names for loopback, mixed and remote
 * answers, every other name unknown. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
void __wrap_freeaddrinfo(struct addrinfo *ai);

typedef struct {
    const char *name;
    const char *addrs[3];
} fake_host;

static const fake_host k_hosts[] = {
    {"localhost", {"127.0.0.1", "::1", NULL}},
    {"ip6-localhost", {"::1", NULL, NULL}},
    {"loopback.test", {"127.0.0.53", "::ffff:127.0.0.2", NULL}},
    {"mixed.test", {"127.0.0.1", "192.0.2.7", NULL}},
    {"remote.test", {"192.0.2.1", NULL, NULL}},
    {"v6remote.test", {"2001:db8::1", NULL, NULL}},
};

struct node { /* one allocation per answer */
    struct addrinfo ai;
    struct sockaddr_storage sa;
};

/* Append the address `text` if it parses and its family is wanted. */
static int add(struct addrinfo ***tail, const char *text, const struct addrinfo *hints) {
    int fam = hints ? hints->ai_family : AF_UNSPEC;
    struct in_addr a4;
    struct in6_addr a6;
    int is4 = inet_pton(AF_INET, text, &a4) == 1;
    int is6 = !is4 && inet_pton(AF_INET6, text, &a6) == 1;
    if (!is4 && !is6)
        return 0;
    if ((is4 && fam == AF_INET6) || (is6 && fam == AF_INET))
        return 0;
    struct node *n = calloc(1, sizeof *n);
    if (!n)
        return -1;
    n->ai.ai_socktype = hints ? hints->ai_socktype : 0;
    n->ai.ai_addr = (struct sockaddr *)&n->sa;
    if (is4) {
        struct sockaddr_in *s = (struct sockaddr_in *)&n->sa;
        s->sin_family = AF_INET;
        s->sin_addr = a4;
        n->ai.ai_family = AF_INET;
        n->ai.ai_addrlen = sizeof *s;
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&n->sa;
        s->sin6_family = AF_INET6;
        s->sin6_addr = a6;
        n->ai.ai_family = AF_INET6;
        n->ai.ai_addrlen = sizeof *s;
    }
    **tail = &n->ai;
    *tail = &n->ai.ai_next;
    return 1;
}

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res) {
    (void)service;
    *res = NULL;
    if (!node)
        return EAI_NONAME;
    struct addrinfo *head = NULL, **tail = &head;
    int rc = add(&tail, node, hints); /* a numeric literal */
    if (rc == 0 && !(hints && (hints->ai_flags & AI_NUMERICHOST))) {
        for (size_t i = 0; i < sizeof k_hosts / sizeof *k_hosts; i++) {
            if (strcasecmp(node, k_hosts[i].name))
                continue;
            for (int k = 0; k < 3 && k_hosts[i].addrs[k] && rc >= 0; k++) {
                int r = add(&tail, k_hosts[i].addrs[k], hints);
                rc = r < 0 ? r : rc + r;
            }
        }
    }
    if (rc < 0) {
        __wrap_freeaddrinfo(head);
        return EAI_MEMORY;
    }
    if (!head)
        return EAI_NONAME;
    *res = head;
    return 0;
}

void __wrap_freeaddrinfo(struct addrinfo *ai) {
    while (ai) {
        struct addrinfo *next = ai->ai_next;
        free(ai); /* ai is the first member of its struct node */
        ai = next;
    }
}
