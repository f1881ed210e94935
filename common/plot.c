/* plot.c — see plot.h. */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct vlad_plot {
    char *png;
    char *buf;
    size_t len, cap;
    int failed; /* an allocation failed: finish reports it */
};

static void append(vlad_plot *p, const char *s, size_t n) {
    if (p->failed)
        return;
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->len + n + 1)
            cap *= 2;
        char *b = realloc(p->buf, cap);
        if (!b) {
            p->failed = 1;
            return;
        }
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = 0;
}

static void appends(vlad_plot *p, const char *s) { append(p, s, strlen(s)); }

static void vappend(vlad_plot *p, const char *fmt, va_list ap) {
    char small[1024];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) {
        p->failed = 1;
    } else if ((size_t)n < sizeof small) {
        append(p, small, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        if (!big)
            p->failed = 1;
        else {
            vsnprintf(big, (size_t)n + 1, fmt, ap2);
            append(p, big, (size_t)n);
            free(big);
        }
    }
    va_end(ap2);
}

void vlad_plot_printf(vlad_plot *p, const char *fmt, ...) {
    if (!p)
        return;
    va_list ap;
    va_start(ap, fmt);
    vappend(p, fmt, ap);
    va_end(ap);
}

/* gnuplot single-quoted string: a quote is doubled */
static void quoted(vlad_plot *p, const char *s) {
    appends(p, "'");
    for (; *s; s++)
        append(p, *s == '\'' ? "''" : s, *s == '\'' ? 2 : 1);
    appends(p, "'");
}

int vlad_plot_available(void) {
    int rc = system("command -v gnuplot >/dev/null 2>&1");
    return rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
}

vlad_plot *vlad_plot_new(const char *png_path, int width, int height, const char *title,
                         vlad_err *err) {
    if (!png_path || !*png_path || width < 16 || height < 16 || width > 10000 || height > 10000) {
        vlad_err_set(err, VLAD_EINVAL, "plot: bad output '%s' or size %dx%d",
                     png_path ? png_path : "(null)", width, height);
        return NULL;
    }
    vlad_plot *p = calloc(1, sizeof *p);
    if (!p || !(p->png = strdup(png_path))) {
        free(p);
        vlad_err_set(err, VLAD_ENOMEM, "plot: out of memory");
        return NULL;
    }
    /* pngcairo where gnuplot has it, png otherwise; noenhanced: titles are literal */
    vlad_plot_printf(p,
                     "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) "
                     "{ set terminal pngcairo size %d,%d noenhanced font ',10' } "
                     "else { set terminal png size %d,%d noenhanced }\nset output ",
                     width, height, width, height);
    quoted(p, png_path);
    appends(p, "\nset grid\nset key noautotitle\n");
    if (title) {
        appends(p, "set title ");
        quoted(p, title);
        appends(p, "\n");
    }
    return p;
}

void vlad_plot_free(vlad_plot *p) {
    if (!p)
        return;
    free(p->png);
    free(p->buf);
    free(p);
}

void vlad_plot_data(vlad_plot *p, const char *name) {
    if (p)
        vlad_plot_printf(p, "$%s << EOD\n", name);
}

void vlad_plot_row(vlad_plot *p, const double *v, int n) {
    if (!p)
        return;
    for (int i = 0; i < n; i++) {
        if (isfinite(v[i]))
            vlad_plot_printf(p, "%s%.9g", i ? " " : "", v[i]);
        else
            vlad_plot_printf(p, "%sNaN", i ? " " : "");
    }
    appends(p, "\n");
}

void vlad_plot_end_data(vlad_plot *p) {
    if (p)
        appends(p, "EOD\n");
}

int vlad_plot_finish(vlad_plot *p, int keep_script, vlad_err *err) {
    if (!p)
        return vlad_err_set(err, VLAD_EINVAL, "plot: NULL");
    int rc = VLAD_OK;
    char script[4200];
    if (p->failed) {
        rc = vlad_err_set(err, VLAD_ENOMEM, "plot %s: out of memory building the script", p->png);
        goto out;
    }
    if (snprintf(script, sizeof script, "%s.gp", p->png) >= (int)sizeof script) {
        rc = vlad_err_set(err, VLAD_EINVAL, "plot: path too long");
        goto out;
    }
    FILE *f = fopen(script, "w");
    if (!f) {
        rc = vlad_err_set(err, VLAD_EIO, "plot: cannot write %s", script);
        goto out;
    }
    size_t wrote = fwrite(p->buf, 1, p->len, f);
    if (fclose(f) != 0 || wrote != p->len) {
        remove(script);
        rc = vlad_err_set(err, VLAD_EIO, "plot: cannot write %s", script);
        goto out;
    }
    remove(p->png);
    pid_t pid = fork();
    if (pid < 0) {
        rc = vlad_err_set(err, VLAD_EIO, "plot: fork failed");
    } else if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) { /* gnuplot's warnings go to stderr; keep stdout for the caller */
            dup2(null, 1);
            close(null);
        }
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    } else {
        int st = 0;
        while (waitpid(pid, &st, 0) < 0)
            ;
        struct stat sb;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
            rc = vlad_err_set(err, VLAD_EIO, "plot %s: gnuplot not found (apt-get install gnuplot-nox)",
                              p->png);
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = vlad_err_set(err, VLAD_EIO, "plot %s: gnuplot failed (script %s)", p->png, script);
        else if (stat(p->png, &sb) != 0 || sb.st_size == 0)
            rc = vlad_err_set(err, VLAD_EIO, "plot %s: gnuplot wrote nothing", p->png);
        if (rc)
            remove(p->png); /* "set output" made it before the error: no half picture */
    }
    if (!keep_script && rc == VLAD_OK)
        remove(script);
out:
    vlad_plot_free(p);
    return rc;
}
