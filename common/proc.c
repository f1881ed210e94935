#include "proc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

pid_t vlad_proc_start(char *const argv[], const char *log_path) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* die with the parent (proc.h): SIGKILL when the thread that forked ends; and if the
     * parent already died before that took hold, do not run at all */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127);
    if (log_path) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
    }
    execv(argv[0], argv);
    _exit(127);
}

int vlad_proc_wait(pid_t pid, int timeout_ms) {
    for (int waited = 0;; waited += 5) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st))
                return WEXITSTATUS(st);
            if (WIFSIGNALED(st))
                return 128 + WTERMSIG(st);
            return -1;
        }
        if (waited >= timeout_ms)
            return -1;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
}

void vlad_proc_kill(pid_t pid) {
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

const char *vlad_proc_bin(const char *name) {
    static _Thread_local char buf[4][512]; /* a few results stay valid at once, per thread */
    static _Thread_local int k;
    const char *dir = getenv("VLAD_BIN");
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir ? dir : "build/bin", name);
    return b;
}

int vlad_proc_free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &len)) {
        if (s >= 0)
            close(s);
        return -1;
    }
    close(s);
    return ntohs(a.sin_port);
}
