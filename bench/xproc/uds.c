/*
 * uds.c - the hand-written peer for bench/xproc: two processes and a Unix-domain SOCK_STREAM
 * socket, length-prefixed messages, as a C programmer would connect two processes by hand.
 *
 *   uds tput N SIZE          the publisher builds each message as xproc.c does (the same
 *                            {"n":..,"ts":..,"pad":"..."} JSON of SIZE bytes) and writes it,
 *                            4-byte length first, with one write(2) per message as it comes
 *   uds tput-writev N SIZE   the same, but collects 64 messages and sends them with one writev
 *   uds lat N SIZE RATE      one write per message, paced at RATE/s; each frame carries
 *                            CLOCK_MONOTONIC (ns) taken before its write; the reader takes the
 *                            clock when it has parsed the frame: p50, p99
 *
 * The reader is a forked child: it reads with a 64 KiB buffer, splits the frames, counts them,
 * and validates nothing (jsonbus validates every payload as JSON). A frame of length 0 is the
 * end marker: the reader answers it with its count (and latency percentiles) and exits. The
 * time is from the first write until that answer arrives. One line "RESULT ..." as xproc.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static size_t make_msg(char *buf, size_t size, long i, uint64_t ts) {
    int n = snprintf(buf, size, "{\"n\":%ld,\"ts\":%" PRIu64 ",\"pad\":\"", i, ts);
    size_t k = (size_t)n;
    while (k < size - 2) buf[k++] = 'x';
    buf[k++] = '"';
    buf[k++] = '}';
    return k;
}

static void pace_until(uint64_t due) {
    if (mono_ns() >= due) return;
    struct timespec ts = {(time_t)(due / 1000000000ULL), (long)(due % 1000000000ULL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            perror("uds: write");
            exit(1);
        }
        c += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, void *p, size_t n) {
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            fprintf(stderr, "uds: short read\n");
            exit(1);
        }
        c += r;
        n -= (size_t)r;
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct answer {
    uint64_t count, p50_ns, p99_ns, max_ns;
};

/* The reader: frames are [u32 length][payload]; for latency the payload starts with the
 * sender's u64 stamp. */
static void reader(int fd, long n, int lat) {
    uint64_t *samples = lat ? malloc((size_t)n * sizeof *samples) : NULL;
    long nsamples = 0;
    static char buf[65536 + 8192];
    size_t have = 0;
    uint64_t count = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, 65536);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            fprintf(stderr, "uds reader: the publisher went away\n");
            exit(1);
        }
        have += (size_t)r;
        size_t off = 0;
        uint64_t now = lat ? mono_ns() : 0;
        while (have - off >= 4) {
            uint32_t len;
            memcpy(&len, buf + off, 4);
            if (len == 0) { /* the end marker */
                struct answer a = {count, 0, 0, 0};
                if (lat && nsamples > 0) {
                    qsort(samples, (size_t)nsamples, sizeof *samples, cmp_u64);
                    a.p50_ns = samples[nsamples / 2];
                    a.p99_ns = samples[(nsamples * 99) / 100];
                    a.max_ns = samples[nsamples - 1];
                }
                write_all(fd, &a, sizeof a);
                exit(0);
            }
            if (have - off - 4 < len) break;
            if (lat && nsamples < n && len >= 8) {
                uint64_t sent;
                memcpy(&sent, buf + off + 4, 8);
                samples[nsamples++] = now - sent;
            }
            count++;
            off += 4 + len;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: uds tput|tput-writev|lat N SIZE [RATE]\n");
        return 2;
    }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    size_t size = (size_t)atol(argv[3]);
    double rate = argc > 4 ? atof(argv[4]) : 0;
    int lat = strcmp(mode, "lat") == 0, batch = strcmp(mode, "tput-writev") == 0;
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("socketpair");
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(sv[0]);
        reader(sv[1], n, lat);
    }
    close(sv[1]);
    int fd = sv[0];
    /* frame: [u32 len][u64 stamp, latency only][SIZE bytes of JSON] */
    size_t stamp = lat ? 8 : 0;
    enum { BATCH = 64 };
    char *frames = malloc((size + 1 + 4 + stamp) * BATCH);
    struct iovec iov[BATCH];
    int queued = 0;
    uint64_t t0 = mono_ns();
    for (long i = 0; i < n; i++) {
        if (rate > 0) pace_until(t0 + (uint64_t)((double)i * 1e9 / rate));
        char *f = frames + (size_t)queued * (size + 1 + 4 + stamp);
        size_t len = make_msg(f + 4 + stamp, size + 1, i, mono_ns());
        uint32_t l32 = (uint32_t)(len + stamp);
        memcpy(f, &l32, 4);
        if (lat) {
            uint64_t now = mono_ns();
            memcpy(f + 4, &now, 8);
        }
        if (!batch) {
            write_all(fd, f, 4 + stamp + len);
            continue;
        }
        iov[queued].iov_base = f;
        iov[queued].iov_len = 4 + stamp + len;
        if (++queued == BATCH || i == n - 1) {
            /* writev may write part of it: finish by hand */
            size_t total = 0;
            for (int k = 0; k < queued; k++) total += iov[k].iov_len;
            ssize_t w = writev(fd, iov, queued);
            if (w < 0) {
                perror("writev");
                return 1;
            }
            if ((size_t)w < total) {
                size_t skip = (size_t)w;
                for (int k = 0; k < queued; k++) {
                    if (skip >= iov[k].iov_len) {
                        skip -= iov[k].iov_len;
                        continue;
                    }
                    write_all(fd, (char *)iov[k].iov_base + skip, iov[k].iov_len - skip);
                    skip = 0;
                }
            }
            queued = 0;
        }
    }
    uint64_t t_sent = mono_ns();
    uint32_t end = 0;
    write_all(fd, &end, 4);
    struct answer a;
    read_all(fd, &a, sizeof a);
    uint64_t t1 = mono_ns();
    int st = 0;
    waitpid(pid, &st, 0);
    if ((long)a.count != n) {
        fprintf(stderr, "uds: the reader got %" PRIu64 " of %ld\n", a.count, n);
        return 1;
    }
    double achieved = (double)n / ((double)(t_sent - t0) / 1e9);
    if (lat)
        printf("RESULT variant=uds-lat samples=%ld p50_us=%.1f p99_us=%.1f max_us=%.1f rate=%.0f\n",
               n, (double)a.p50_ns / 1e3, (double)a.p99_ns / 1e3, (double)a.max_ns / 1e3, achieved);
    else
        printf("RESULT variant=uds-%s msgs=%ld seconds=%.4f rate=%.0f\n", mode, n,
               (double)(t1 - t0) / 1e9, (double)n / ((double)(t1 - t0) / 1e9));
    return 0;
}
