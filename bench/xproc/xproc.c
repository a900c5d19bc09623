/*
 * xproc.c - jsonbus across processes (contract Part 2C), for bench/xproc/run.
 *
 *   xproc run tput-p2p   N SIZE        a hub process that does nothing, a publisher peer and a
 *                                      subscriber peer: N messages of SIZE bytes, timed from the
 *                                      first publish until jsonbus_flush on the publisher's
 *                                      handle returns (every callback in the subscriber ran)
 *   xproc run tput-h2p   N SIZE        the hub process publishes, one subscriber peer
 *   xproc run tput-inproc N SIZE       one process: a publisher thread, a subscription callback
 *   xproc run lat-p2p    N SIZE RATE   as tput-p2p, paced at RATE messages/s; each message
 *   xproc run lat-h2p    N SIZE RATE   carries jsonbus_now_ns() taken just before its publish;
 *   xproc run lat-inproc N SIZE RATE   the callback takes jsonbus_now_ns() - that: p50, p99
 *
 * Each prints one line "RESULT variant=... msgs=... seconds=... rate=..." (throughput) or
 * "RESULT variant=... samples=... p50_us=... p99_us=... rate=..." (latency). The roles of the
 * other processes are the same program (/proc/self/exe) with other arguments. Every process
 * uses the bus defaults (1 dispatcher thread), plus what XPROC_OPTIONS adds (a list of JSON
 * members, e.g. '"dispatcher_spin_us":0', for jsonbus_new and jsonbus_attach alike). The subscriber's callbacks do nothing but count
 * (and, for latency, read the stamp) - jsonbus has validated every payload as JSON before it
 * was accepted, in the publishing process, and the hub again.
 * Run it in a private XDG_RUNTIME_DIR (bench/xproc/run does).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jsonbus.h"

#define NAME "xproc-bench"

static void die(const char *what, int64_t rc) {
    fprintf(stderr, "xproc %ld: %s: %s (%" PRId64 "): %s\n", (long)getpid(), what,
            jsonbus_status_name((int32_t)rc), rc, jsonbus_last_error());
    exit(1);
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* A JSON object of exactly `size` bytes: {"n":I,"ts":NS,"pad":"xxx..."} */
static size_t make_msg(char *buf, size_t size, long i, uint64_t ts) {
    int n = snprintf(buf, size, "{\"n\":%ld,\"ts\":%" PRIu64 ",\"pad\":\"", i, ts);
    size_t k = (size_t)n;
    while (k < size - 2) buf[k++] = 'x';
    buf[k++] = '"';
    buf[k++] = '}';
    return k;
}

/* Sleeps until `due` (CLOCK_MONOTONIC ns); with a timer slack of 1 ns the wake-up is close. */
static void pace_until(uint64_t due) {
    if (mono_ns() >= due) return;
    struct timespec ts = {(time_t)(due / 1000000000ULL), (long)(due % 1000000000ULL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    line[n++] = '\n';
    if (write(1, line, (size_t)n) != n) exit(5);
}

static void wait_line(const char *want) {
    char line[256];
    if (fgets(line, sizeof line, stdin) == NULL || strncmp(line, want, strlen(want)) != 0) {
        fprintf(stderr, "xproc: expected \"%s\" on stdin\n", want);
        exit(1);
    }
}

static void wait_eof(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
    }
}

/* ---- the subscribers ---- */
static atomic_long received;
static uint64_t *samples;
static long nsamples, max_samples;

static int32_t on_count(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_fetch_add_explicit(&received, 1, memory_order_relaxed);
    return JSONBUS_OK;
}

static int32_t on_latency(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    uint64_t now = jsonbus_now_ns();
    const char *p = strstr(msg->json, "\"ts\":");
    if (p != NULL && nsamples < max_samples) samples[nsamples++] = now - strtoull(p + 5, NULL, 10);
    atomic_fetch_add_explicit(&received, 1, memory_order_relaxed);
    return JSONBUS_OK;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void latency_result(const char *variant, double rate) {
    qsort(samples, (size_t)nsamples, sizeof *samples, cmp_u64);
    double p50 = nsamples ? (double)samples[nsamples / 2] / 1e3 : 0;
    double p99 = nsamples ? (double)samples[(nsamples * 99) / 100] / 1e3 : 0;
    double max = nsamples ? (double)samples[nsamples - 1] / 1e3 : 0;
    say("RESULT variant=%s samples=%ld p50_us=%.1f p99_us=%.1f max_us=%.1f rate=%.0f", variant,
        nsamples, p50, p99, max, rate);
}

/* ---- the publishers: N messages of SIZE bytes, paced at RATE/s (0: as fast as it goes);
 * returns the seconds from the first publish until the flush returned ---- */
static double publish_run(jsonbus *bus, long n, size_t size, double rate, double *achieved) {
    char *buf = malloc(size + 1);
    uint64_t t0 = mono_ns();
    for (long i = 0; i < n; i++) {
        if (rate > 0) pace_until(t0 + (uint64_t)((double)i * 1e9 / rate));
        size_t len = make_msg(buf, size + 1, i, jsonbus_now_ns());
        int32_t rc = jsonbus_publish(bus, "bench.x", buf, len);
        if (rc != JSONBUS_OK) die("jsonbus_publish", rc);
    }
    uint64_t t_pub = mono_ns();
    int32_t rc = jsonbus_flush(bus, -1);
    if (rc != JSONBUS_OK) die("jsonbus_flush", rc);
    uint64_t t1 = mono_ns();
    free(buf);
    if (achieved) *achieved = (double)n / ((double)(t_pub - t0) / 1e9);
    return (double)(t1 - t0) / 1e9;
}

/* XPROC_OPTIONS='"key":value,...': extra bus options for every process (jsonbus_new and
 * jsonbus_attach), e.g. '"dispatcher_spin_us":0' */
static const char *extra_options(void) {
    const char *e = getenv("XPROC_OPTIONS");
    return e && *e ? e : NULL;
}

static jsonbus *new_bus(void) {
    char o[512];
    snprintf(o, sizeof o, "{%s}", extra_options() ? extra_options() : "");
    jsonbus *bus = jsonbus_new(o);
    if (bus == NULL) die("jsonbus_new", jsonbus_last_status());
    return bus;
}

static jsonbus *attach(void) {
    char o[512];
    snprintf(o, sizeof o, "{\"connect_timeout_ms\":5000%s%s}", extra_options() ? "," : "",
             extra_options() ? extra_options() : "");
    jsonbus *bus = jsonbus_attach(NAME, o);
    if (bus == NULL) die("jsonbus_attach", jsonbus_last_status());
    return bus;
}

static jsonbus *serve(void) {
    jsonbus *bus = new_bus();
    int32_t rc = jsonbus_serve(bus, NAME, NULL);
    if (rc != JSONBUS_OK) die("jsonbus_serve", rc);
    return bus;
}

/* ---- roles (the other processes) ---- */
static int role(int argc, char **argv) {
    const char *r = argv[1];
    long n = argc > 2 ? atol(argv[2]) : 0;
    size_t size = argc > 3 ? (size_t)atol(argv[3]) : 200;
    double rate = argc > 4 ? atof(argv[4]) : 0;
    if (strcmp(r, "hub") == 0) { /* serves and does nothing */
        jsonbus *bus = serve();
        say("ready");
        wait_eof();
        jsonbus_free(bus);
        return 0;
    }
    if (strcmp(r, "sub") == 0 || strcmp(r, "lat-sub") == 0) {
        int lat = strcmp(r, "lat-sub") == 0;
        if (lat) {
            max_samples = n;
            samples = malloc((size_t)n * sizeof *samples);
        }
        jsonbus *bus = attach();
        int64_t id = jsonbus_subscribe(bus, "bench.>", lat ? on_latency : on_count, NULL);
        if (id <= 0) die("jsonbus_subscribe", id);
        say("ready");
        wait_eof();
        jsonbus_free(bus);
        if (lat) latency_result("sub", 0);
        else say("got %ld", atomic_load(&received));
        return 0;
    }
    if (strcmp(r, "pub") == 0 || strcmp(r, "hubpub") == 0) {
        jsonbus *bus = strcmp(r, "hubpub") == 0 ? serve() : attach();
        say("ready");
        wait_line("go");
        double achieved = 0;
        double s = publish_run(bus, n, size, rate, &achieved);
        say("elapsed %.6f %.0f", s, achieved);
        wait_eof();
        jsonbus_free(bus);
        return 0;
    }
    fprintf(stderr, "xproc: unknown role %s\n", r);
    return 2;
}

/* ---- the orchestrator ---- */
struct child {
    pid_t pid;
    FILE *out;
    int in;
};

static struct child start(const char *a1, const char *a2, const char *a3, const char *a4) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) exit(1);
    pid_t pid = fork();
    if (pid < 0) exit(1);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl("/proc/self/exe", "xproc", a1, a2, a3, a4, (char *)NULL);
        _exit(98);
    }
    close(in[0]);
    close(out[1]);
    struct child c = {pid, fdopen(out[0], "r"), in[1]};
    return c;
}

static void read_line(struct child *c, char *line, size_t n, const char *want) {
    if (fgets(line, (int)n, c->out) == NULL || strncmp(line, want, strlen(want)) != 0) {
        fprintf(stderr, "xproc: a child said \"%s\", expected \"%s\"\n", line, want);
        exit(1);
    }
}

static void finish(struct child *c) {
    close(c->in);
    int st = 0;
    waitpid(c->pid, &st, 0);
    fclose(c->out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "xproc: a child ended with status 0x%x\n", (unsigned)st);
        exit(1);
    }
}

static void inproc(const char *variant, long n, size_t size, double rate) {
    jsonbus *bus = new_bus();
    int lat = rate > 0;
    if (lat) {
        max_samples = n;
        samples = malloc((size_t)n * sizeof *samples);
    }
    int64_t id = jsonbus_subscribe(bus, "bench.>", lat ? on_latency : on_count, NULL);
    if (id <= 0) die("jsonbus_subscribe", id);
    double achieved = 0;
    double s = publish_run(bus, n, size, rate, &achieved);
    long got = atomic_load(&received);
    jsonbus_free(bus);
    if (got != n) {
        fprintf(stderr, "xproc: %ld of %ld delivered\n", got, n);
        exit(1);
    }
    if (lat) latency_result(variant, achieved);
    else say("RESULT variant=%s msgs=%ld seconds=%.4f rate=%.0f", variant, n, s, (double)n / s);
}

static int run(const char *variant, long n, size_t size, double rate) {
    char ns[32], sizes[32], rates[32], line[512];
    snprintf(ns, sizeof ns, "%ld", n);
    snprintf(sizes, sizeof sizes, "%zu", size);
    snprintf(rates, sizeof rates, "%.0f", rate);
    int lat = strncmp(variant, "lat-", 4) == 0;
    const char *kind = variant + (lat ? 4 : 5);
    if (strcmp(kind, "inproc") == 0) {
        inproc(variant, n, size, lat ? rate : 0);
        return 0;
    }
    int p2p = strcmp(kind, "p2p") == 0;
    if (!p2p && strcmp(kind, "h2p") != 0) {
        fprintf(stderr, "xproc: unknown variant %s\n", variant);
        return 2;
    }
    struct child hub, pub, sub;
    if (p2p) {
        hub = start("hub", NULL, NULL, NULL);
        read_line(&hub, line, sizeof line, "ready");
    }
    sub = start(lat ? "lat-sub" : "sub", ns, sizes, NULL);
    if (!p2p) { /* the hub publishes: it must serve before the subscriber can attach */
        pub = start("hubpub", ns, sizes, lat ? rates : "0");
        read_line(&pub, line, sizeof line, "ready");
    }
    read_line(&sub, line, sizeof line, "ready");
    if (p2p) {
        pub = start("pub", ns, sizes, lat ? rates : "0");
        read_line(&pub, line, sizeof line, "ready");
    }
    if (write(pub.in, "go\n", 3) != 3) return 1;
    read_line(&pub, line, sizeof line, "elapsed ");
    double s = 0, achieved = 0;
    sscanf(line, "elapsed %lf %lf", &s, &achieved);
    close(sub.in); /* the subscriber reports and exits */
    sub.in = -1;
    read_line(&sub, line, sizeof line, lat ? "RESULT" : "got ");
    if (!lat) {
        long got = atol(line + 4);
        if (got != n) {
            fprintf(stderr, "xproc: the subscriber got %ld of %ld\n", got, n);
            return 1;
        }
        say("RESULT variant=%s msgs=%ld seconds=%.4f rate=%.0f", variant, n, s, (double)n / s);
    } else {
        line[strcspn(line, "\n")] = '\0';
        char *p = strstr(line, "samples=");
        double p50 = 0, p99 = 0, max = 0;
        long k = 0;
        if (p) sscanf(p, "samples=%ld p50_us=%lf p99_us=%lf max_us=%lf", &k, &p50, &p99, &max);
        say("RESULT variant=%s samples=%ld p50_us=%.1f p99_us=%.1f max_us=%.1f rate=%.0f", variant, k,
            p50, p99, max, achieved);
    }
    int st = 0;
    waitpid(sub.pid, &st, 0);
    fclose(sub.out);
    finish(&pub);
    if (p2p) finish(&hub);
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL);
    if (argc >= 2 && strcmp(argv[1], "run") == 0) {
        if (argc < 5) {
            fprintf(stderr, "usage: xproc run VARIANT N SIZE [RATE]\n");
            return 2;
        }
        return run(argv[2], atol(argv[3]), (size_t)atol(argv[4]), argc > 5 ? atof(argv[5]) : 0);
    }
    if (argc >= 2) return role(argc, argv);
    fprintf(stderr, "usage: xproc run VARIANT N SIZE [RATE]\n");
    return 2;
}
