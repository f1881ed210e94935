#include "endpoint.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static bool addr_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(a))
            return a->s6_addr[12] == 127;
    }
    return false;
}

int vlad_endpoint_parse(const char *text, vlad_endpoint *out, vlad_err *err) {
    memset(out, 0, sizeof *out);
    if (!text || !text[0])
        return vlad_err_set(err, VLAD_EINVAL, "endpoint: empty");
    if (strlen(text) >= VLAD_ENDPOINT_MAX)
        return vlad_err_set(err, VLAD_EINVAL, "endpoint '%.40s...': too long", text);
    if (strchr(text, ';'))
        return vlad_err_set(err, VLAD_EINVAL,
                            "endpoint '%s': the 'source;destination' form is refused (one address "
                            "per endpoint)",
                            text);
    if (!strncmp(text, "ipc://", 6) || !strncmp(text, "inproc://", 9)) {
        bool ipc = text[0] == 'i' && text[1] == 'p';
        if (!text[ipc ? 6 : 9])
            return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': no path", text);
        out->transport = ipc ? VLAD_EP_IPC : VLAD_EP_INPROC;
        out->loopback = true;
        snprintf(out->bind, sizeof out->bind, "%s", text);
        return VLAD_OK;
    }
    if (strncmp(text, "tcp://", 6))
        return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': not tcp://, ipc:// or inproc://", text);
    const char *h = text + 6, *colon = strrchr(h, ':');
    if (!colon || colon == h)
        return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': expected tcp://HOST:PORT", text);
    const char *port = colon + 1;
    size_t nd = strspn(port, "0123456789");
    long pn = nd && nd <= 5 && !port[nd] ? strtol(port, NULL, 10) : -1;
    if (pn < 1 || pn > 65535)
        return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': port '%s' is not in 1..65535", text,
                            port);
    out->port = (int)pn;
    size_t hl = (size_t)(colon - h);
    if (hl >= sizeof out->host)
        return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': host too long", text);
    char host[256];
    memcpy(host, h, hl);
    host[hl] = 0;
    bool bracket = host[0] == '[';
    if (bracket) {
        if (hl < 3 || host[hl - 1] != ']')
            return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': unterminated [IPv6] host", text);
        host[hl - 1] = 0;
        memmove(host, host + 1, hl - 1);
    }
    if (!bracket && strchr(host, ':'))
        return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': an IPv6 host goes in brackets ([::1])",
                            text);
    if (!host[0])
        return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': empty host", text);
    snprintf(out->host, sizeof out->host, "%s", host);
    if (!strcmp(host, "*")) { /* every interface: never loopback */
        snprintf(out->bind, sizeof out->bind, "tcp://*:%d", out->port);
        return VLAD_OK;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = bracket ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1)
        hints.ai_flags = AI_NUMERICHOST;
    else if (bracket)
        return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': '[%s]' is not an IPv6 address", text,
                            host);
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc || !res)
        return vlad_err_set(err, VLAD_EINVAL, "endpoint '%s': host '%s' does not resolve (%s)", text,
                            host, rc ? gai_strerror(rc) : "no address");
    out->loopback = true;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (!addr_loopback(a->ai_addr))
            out->loopback = false;
    /* bind the first resolved address, IPv4 first (localhost -> 127.0.0.1) */
    const struct addrinfo *pick = res;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    char num[INET6_ADDRSTRLEN];
    if (pick->ai_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)pick->ai_addr)->sin_addr, num, sizeof num);
        snprintf(out->bind, sizeof out->bind, "tcp://%s:%d", num, out->port);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, num, sizeof num);
        snprintf(out->bind, sizeof out->bind, "tcp://[%s]:%d", num, out->port);
        out->ipv6 = true;
    }
    freeaddrinfo(res);
    return VLAD_OK;
}
