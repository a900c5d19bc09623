/*
 * jsonbus benchmark driver: one program that measures every contender the same way.
 *
 *   driver <lib.so> info
 *   driver <lib.so> tput   <publishers> <size> <subscribers> <messages>
 *   driver <lib.so> lat    <rate/s> <seconds> <size>
 *   driver <lib.so> burst  <messages> <size> <spin_ns>
 *   driver <lib.so> fanout <other_subscriptions> <messages> <size>
 *   driver <lib.so> broadcast <subscribers> <messages> <size>
 *   driver <lib.so> pull <messages> <size> wait|poll
 *   driver <lib.so> limited <messages> <size> none|block|drop_new|drop_oldest [queue_limit]
 *   driver <lib.so> request <requesters> <round_trips_per_requester> <size>
 *   driver <lib.so> timers <rate/s> <count> [max_delay_ms]
 *
 * The library is dlopen'ed; it must export jsonbus_default and jsonbus_now_ns, and every
 * workload but `info`, `request` and `timers` needs the quick API (register_callback,
 * push_json) and jsonbus_flush.  `fanout` also needs the full API (jsonbus_new,
 * jsonbus_subscribe, jsonbus_publish), `pull` needs jsonbus_subscribe_pull, jsonbus_next and
 * jsonbus_message_release (`poll` also jsonbus_pull_fd), `limited` needs jsonbus_subscribe
 * and jsonbus_subscribe_with, `request` needs jsonbus_subscribe, jsonbus_request,
 * jsonbus_reply and jsonbus_string_free, `timers` needs jsonbus_subscribe and
 * jsonbus_publish_after; each prints "n/a" without them.  Every workload prints exactly one
 * JSON object on stdout.
 *
 * Deliberately independent of include/jsonbus.h: the struct below is the CONTRACT.md
 * layout.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct jsonbus_message {
    const char *topic;
    size_t topic_len;
    const char *json;
    size_t json_len;
    uint64_t seq;
    uint64_t published_ns;
    int64_t subscription;
    /* Part 2B: the peers of the older workloads (c-queue, go-seed) stop at `subscription`;
       the driver reads these two only in `request`, through the contender's jsonbus_reply */
    const char *reply_to;
    size_t reply_to_len;
} jsonbus_message;

typedef int32_t (*jsonbus_callback)(const jsonbus_message *msg, void *user_data);

/* quick API + helpers (required) */
static int64_t (*p_register_callback)(jsonbus_callback, void *);
static int32_t (*p_push_json)(const char *);
static void *(*p_default)(void);
static int32_t (*p_flush)(void *, int32_t);
static uint64_t (*p_now_ns)(void);
/* full API (optional) */
static void *(*p_new)(const char *);
static int64_t (*p_subscribe)(void *, const char *, jsonbus_callback, void *);
static int32_t (*p_publish)(void *, const char *, const char *, size_t);
static void (*p_free)(void *);
static const char *(*p_last_error)(void);
static char *(*p_stats)(void *);
static void (*p_string_free)(char *);
/* Part 2A (optional) */
typedef void (*jsonbus_end_callback)(int64_t subscription, int32_t reason, void *user_data);
static int64_t (*p_subscribe_with)(void *, const char *, const char *, jsonbus_callback,
                                   jsonbus_end_callback, void *);
static int64_t (*p_subscribe_pull)(void *, const char *, const char *);
static int32_t (*p_next)(void *, int64_t, int32_t, jsonbus_message **);
static void (*p_release)(jsonbus_message *);
static int32_t (*p_pull_fd)(void *, int64_t);
static char *(*p_sub_stats)(void *, int64_t);
/* Part 2B (optional) */
static int32_t (*p_request)(void *, const char *, const char *, size_t, int32_t, char **, size_t *);
static int32_t (*p_reply)(void *, const jsonbus_message *, const char *, size_t);
static int64_t (*p_publish_after)(void *, const char *, const char *, size_t, int64_t);
static const char *(*p_status_name)(int32_t);

static void die(const char *what) {
    fprintf(stderr, "driver: %s\n", what);
    exit(2);
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Peak RSS of this program: VmHWM, the high-water mark of the current address space.  Not
 * ru_maxrss, which Linux carries over execve: under a parent that forks (or vforks) it is at
 * least the parent's RSS (the Python runner's ~26 MiB), whatever the contender uses. */
static long maxrss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        long kb = -1;
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "VmHWM:", 6)) {
                kb = atol(line + 6);
                break;
            }
        fclose(f);
        if (kb >= 0) return kb;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *sym(void *h, const char *name, int required) {
    void *p = dlsym(h, name);
    if (!p && required) {
        fprintf(stderr, "driver: missing symbol %s\n", name);
        exit(2);
    }
    return p;
}

/* ---------- payloads ----------
 * {"t":"<20 digits>","d":[{"id":N,"ok":true,"v":"abcdefghij"},...],"p":"xxx"}
 * exactly `size` bytes, valid JSON, structured (numbers, bools, strings, arrays, objects)
 * so that validators and parsers do real work.  The timestamp digits start at TS_OFF. */
#define TS_OFF 6
#define TS_DIGITS 20

static char *make_payload(size_t size) {
    const char *head = "{\"t\":\"00000000000000000000\",\"d\":[";
    const char *mid = "],\"p\":\"";
    const char *tail = "\"}";
    size_t fixed = strlen(head) + strlen(mid) + strlen(tail);
    if (size < fixed) die("message size too small (minimum 42 bytes)");
    char *buf = malloc(size + 1);
    size_t pos = 0;
    memcpy(buf, head, strlen(head));
    pos += strlen(head);
    char item[96];
    int first = 1;
    for (unsigned id = 1;; id++) {
        int n = snprintf(item, sizeof item, "%s{\"id\":%u,\"ok\":%s,\"v\":\"abcdefghij\"}",
                         first ? "" : ",", id * 7919u, (id & 1) ? "true" : "false");
        if (pos + (size_t)n + strlen(mid) + strlen(tail) + 8 > size) break;
        memcpy(buf + pos, item, (size_t)n);
        pos += (size_t)n;
        first = 0;
    }
    memcpy(buf + pos, mid, strlen(mid));
    pos += strlen(mid);
    while (pos < size - strlen(tail)) buf[pos++] = 'x';
    memcpy(buf + pos, tail, strlen(tail));
    pos += strlen(tail);
    buf[pos] = 0;
    if (pos != size) die("payload size bug");
    return buf;
}

static void put_ts(char *buf, uint64_t t) {
    char *p = buf + TS_OFF + TS_DIGITS;
    for (int i = 0; i < TS_DIGITS; i++) {
        *--p = (char)('0' + t % 10);
        t /= 10;
    }
}

/* ---------- subscribers ---------- */
typedef struct {
    _Atomic uint64_t count;
    _Atomic uint64_t bad;
    size_t expect_len;
    char pad[64 - 24];
} sub_t;

static int32_t cb_count(const jsonbus_message *m, void *ud) {
    sub_t *s = ud;
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    if (m->json_len != s->expect_len || m->json[0] != '{')
        atomic_fetch_add_explicit(&s->bad, 1, memory_order_relaxed);
    return 0;
}

static int32_t cb_nop(const jsonbus_message *m, void *ud) {
    (void)m;
    (void)ud;
    return 0;
}

/* ---------- tput ---------- */
typedef struct {
    pthread_barrier_t *bar;
    const char *payload;
    uint64_t n;
    uint64_t errors;
} pub_arg;

static void *pub_main(void *a_) {
    pub_arg *a = a_;
    pthread_barrier_wait(a->bar);
    const char *p = a->payload;
    for (uint64_t i = 0; i < a->n; i++)
        if (p_push_json(p) != 0) a->errors++;
    return NULL;
}

static int w_tput(int pubs, size_t size, int subs, uint64_t n) {
    if (pubs < 1 || pubs > 64 || subs < 1 || subs > 64) die("bad tput arguments");
    sub_t *s = aligned_alloc(64, sizeof(sub_t) * (size_t)subs);
    memset(s, 0, sizeof(sub_t) * (size_t)subs);
    for (int i = 0; i < subs; i++) {
        s[i].expect_len = size;
        if (p_register_callback(cb_count, &s[i]) <= 0) die("register_callback failed");
    }
    void *bus = p_default();
    /* warm-up: start the contender's threads, fault in its allocator */
    char *warm = make_payload(size);
    for (int i = 0; i < 100; i++) p_push_json(warm);
    p_flush(bus, -1);
    for (int i = 0; i < subs; i++) atomic_store(&s[i].count, 0);

    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)pubs + 1);
    pthread_t th[64];
    pub_arg args[64];
    uint64_t per = n / (uint64_t)pubs;
    n = per * (uint64_t)pubs;
    for (int i = 0; i < pubs; i++) {
        args[i] = (pub_arg){&bar, make_payload(size), per, 0};
        pthread_create(&th[i], NULL, pub_main, &args[i]);
    }
    double c0 = cpu_s();
    uint64_t t0 = mono_ns();
    pthread_barrier_wait(&bar);
    for (int i = 0; i < pubs; i++) pthread_join(th[i], NULL);
    uint64_t t1 = mono_ns();
    int32_t fr = p_flush(bus, -1);
    uint64_t t2 = mono_ns();
    double c1 = cpu_s();

    uint64_t errors = 0, delivered = 0, bad = 0;
    for (int i = 0; i < pubs; i++) errors += args[i].errors;
    for (int i = 0; i < subs; i++) {
        delivered += atomic_load(&s[i].count);
        bad += atomic_load(&s[i].bad);
    }
    double secs = (t2 - t0) / 1e9;
    printf("{\"workload\":\"tput\",\"pubs\":%d,\"size\":%zu,\"subs\":%d,\"messages\":%llu,"
           "\"seconds\":%.6f,\"publish_seconds\":%.6f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.2f,"
           "\"cpu_ns_per_msg\":%.1f,\"maxrss_kb\":%ld,\"delivered\":%llu,\"expected\":%llu,"
           "\"push_errors\":%llu,\"bad\":%llu,\"flush\":%d,\"ok\":%s}\n",
           pubs, size, subs, (unsigned long long)n, secs, (t1 - t0) / 1e9, n / secs,
           n * (double)size / secs / 1e6, (c1 - c0) * 1e9 / (double)n, maxrss_kb(),
           (unsigned long long)delivered, (unsigned long long)(n * (uint64_t)subs),
           (unsigned long long)errors, (unsigned long long)bad, fr,
           (delivered == n * (uint64_t)subs && errors == 0 && bad == 0 && fr == 0) ? "true"
                                                                                   : "false");
    return 0;
}

/* ---------- lat ---------- */
static uint64_t *lat_buf;
static _Atomic uint64_t lat_idx;
static uint64_t lat_cap;

static int32_t cb_lat(const jsonbus_message *m, void *ud) {
    (void)ud;
    uint64_t now = p_now_ns();
    uint64_t t = strtoull(m->json + TS_OFF, NULL, 10);
    uint64_t i = atomic_fetch_add_explicit(&lat_idx, 1, memory_order_relaxed);
    if (i < lat_cap) lat_buf[i] = now - t;
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* below this period a sleep cannot pace evenly: the publisher spins instead */
#define SPIN_BELOW_NS 20000

static int w_lat(double rate, double seconds, size_t size) {
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    uint64_t n = (uint64_t)(rate * seconds);
    if (n < 100) n = 100;
    lat_cap = n;
    lat_buf = calloc(n, sizeof(uint64_t));
    uint64_t *push_buf = calloc(n, sizeof(uint64_t));
    if (p_register_callback(cb_lat, NULL) <= 0) die("register_callback failed");
    void *bus = p_default();
    char *buf = make_payload(size);
    for (int i = 0; i < 100; i++) {
        put_ts(buf, p_now_ns());
        p_push_json(buf);
    }
    p_flush(bus, -1);
    atomic_store(&lat_idx, 0);

    double c0 = cpu_s();
    uint64_t period = (uint64_t)(1e9 / rate);
    /* DRIVER_SPIN_BELOW_NS overrides when the publisher spins instead of sleeping */
    uint64_t spin_below = getenv("DRIVER_SPIN_BELOW_NS") ? strtoull(getenv("DRIVER_SPIN_BELOW_NS"), NULL, 10)
                                                         : SPIN_BELOW_NS;
    uint64_t start = mono_ns() + 1000000, late = 0, errors = 0;
    /* Each message is sent at its own time, start + i * period: a latency workload measures
     * one message at a time, not bursts (the timers workload arms in batches; this one did too
     * from 2026-12-02 to 2026-12-03 by mistake, which made its figures the wait behind a burst
     * of rate / 1000 messages). */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t target = start + i * period;
        uint64_t now = mono_ns();
        if (now < target && period >= spin_below) {
            struct timespec ts = {(time_t)(target / 1000000000ull),
                                  (long)(target % 1000000000ull)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
            }
        } else if (now < target) {
            while (mono_ns() < target) {
            }
        } else if (now > target + period) {
            late++;
        }
        uint64_t b = mono_ns();
        put_ts(buf, p_now_ns());
        if (p_push_json(buf) != 0) errors++;
        push_buf[i] = mono_ns() - b;
    }
    uint64_t end = mono_ns();
    int32_t fr = p_flush(bus, -1);
    double c1 = cpu_s();
    uint64_t got = atomic_load(&lat_idx);
    if (got > n) got = n;
    /* drop the first 2% (warm-up after the idle gap) */
    uint64_t skip = got / 50;
    uint64_t m = got - skip;
    uint64_t *v = lat_buf + skip;
    qsort(v, m, sizeof(uint64_t), cmp_u64);
    double sum = 0;
    for (uint64_t i = 0; i < m; i++) sum += (double)v[i];
#define PCT(p) (m ? v[(uint64_t)((double)(m - 1) * (p))] : 0)
    qsort(push_buf, n, sizeof(uint64_t), cmp_u64);
    uint64_t push_p50 = push_buf[(n - 1) / 2], push_p99 = push_buf[(uint64_t)((n - 1) * 0.99)],
             push_max = push_buf[n - 1];
    printf("{\"workload\":\"lat\",\"rate\":%.0f,\"achieved_rate\":%.0f,\"size\":%zu,"
           "\"messages\":%llu,\"received\":%llu,\"late_sends\":%llu,\"push_errors\":%llu,"
           "\"p50_ns\":%llu,\"p90_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu,\"max_ns\":%llu,"
           "\"mean_ns\":%.0f,\"push_p50_ns\":%llu,\"push_p99_ns\":%llu,\"push_max_ns\":%llu,"
           "\"cpu_ns_per_msg\":%.1f,\"maxrss_kb\":%ld,\"flush\":%d,\"ok\":%s}\n",
           rate, n / ((end - start) / 1e9), size, (unsigned long long)n,
           (unsigned long long)got, (unsigned long long)late, (unsigned long long)errors,
           (unsigned long long)PCT(0.5), (unsigned long long)PCT(0.9),
           (unsigned long long)PCT(0.99), (unsigned long long)PCT(0.999),
           (unsigned long long)(m ? v[m - 1] : 0), m ? sum / m : 0.0,
           (unsigned long long)push_p50, (unsigned long long)push_p99, (unsigned long long)push_max,
           (c1 - c0) * 1e9 / (double)n, maxrss_kb(), fr,
           (got == n && errors == 0 && fr == 0) ? "true" : "false");
    return 0;
}

/* ---------- burst ---------- */
static _Atomic int burst_on;
static _Atomic uint64_t burst_pushed, burst_delivered;
static uint64_t burst_spin_ns;
static _Atomic int mon_stop;
static uint64_t mon_maxq;
static long mon_rss_at_maxq, mon_maxrss;

static int32_t cb_slow(const jsonbus_message *m, void *ud) {
    (void)m;
    (void)ud;
    if (atomic_load_explicit(&burst_on, memory_order_relaxed)) {
        uint64_t until = mono_ns() + burst_spin_ns;
        while (mono_ns() < until) {
        }
    }
    atomic_fetch_add_explicit(&burst_delivered, 1, memory_order_relaxed);
    return 0;
}

static void mon_sample(void) {
    uint64_t p = atomic_load(&burst_pushed), d = atomic_load(&burst_delivered);
    uint64_t q = p > d ? p - d : 0;
    long rss = rss_kb();
    if (q > mon_maxq) {
        mon_maxq = q;
        mon_rss_at_maxq = rss;
    }
    if (rss > mon_maxrss) mon_maxrss = rss;
}

static void *mon_main(void *a) {
    (void)a;
    while (!atomic_load(&mon_stop)) {
        mon_sample();
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int w_burst(uint64_t n, size_t size, uint64_t spin_ns) {
    burst_spin_ns = spin_ns;
    if (p_register_callback(cb_slow, NULL) <= 0) die("register_callback failed");
    void *bus = p_default();
    char *buf = make_payload(size);
    for (int i = 0; i < 1000; i++) p_push_json(buf);
    p_flush(bus, -1);
    atomic_store(&burst_delivered, 0);
    long base = rss_kb();
    pthread_t mon;
    atomic_store(&burst_on, 1);
    pthread_create(&mon, NULL, mon_main, NULL);
    uint64_t errors = 0;
    uint64_t t0 = mono_ns();
    for (uint64_t i = 0; i < n; i++) {
        if (p_push_json(buf) != 0) errors++;
        atomic_store_explicit(&burst_pushed, i + 1, memory_order_relaxed);
    }
    uint64_t t1 = mono_ns();
    atomic_store(&mon_stop, 1);
    pthread_join(mon, NULL);
    mon_sample();
    uint64_t q_end = n - atomic_load(&burst_delivered);
    long rss_end = rss_kb();
    atomic_store(&burst_on, 0);
    int32_t fr = p_flush(bus, -1);
    uint64_t t2 = mono_ns();
    uint64_t d = atomic_load(&burst_delivered);
    double per = mon_maxq ? (mon_rss_at_maxq - base) * 1024.0 / (double)mon_maxq : 0;
    printf("{\"workload\":\"burst\",\"messages\":%llu,\"size\":%zu,\"spin_ns\":%llu,"
           "\"baseline_rss_kb\":%ld,\"max_queued\":%llu,\"rss_at_max_queued_kb\":%ld,"
           "\"bytes_per_queued\":%.0f,\"queued_at_publish_end\":%llu,\"rss_at_publish_end_kb\":%ld,"
           "\"peak_rss_kb\":%ld,\"maxrss_kb\":%ld,\"publish_seconds\":%.3f,\"drain_seconds\":%.3f,"
           "\"delivered\":%llu,\"push_errors\":%llu,\"flush\":%d,\"ok\":%s}\n",
           (unsigned long long)n, size, (unsigned long long)spin_ns, base,
           (unsigned long long)mon_maxq, mon_rss_at_maxq, per, (unsigned long long)q_end, rss_end,
           mon_maxrss, maxrss_kb(), (t1 - t0) / 1e9, (t2 - t1) / 1e9, (unsigned long long)d,
           (unsigned long long)errors, fr, (d == n && errors == 0 && fr == 0) ? "true" : "false");
    return 0;
}

/* ---------- fanout (full API only) ---------- */
static int w_fanout(int others, uint64_t n, size_t size) {
    if (!p_new || !p_subscribe || !p_publish) {
        printf("{\"workload\":\"fanout\",\"others\":%d,\"na\":true}\n", others);
        return 0;
    }
    void *bus = p_new("{}");
    if (!bus) die("jsonbus_new failed");
    sub_t *s = aligned_alloc(64, sizeof(sub_t));
    memset(s, 0, sizeof *s);
    s->expect_len = size;
    if (p_subscribe(bus, "bench.target", cb_count, s) <= 0) die("subscribe failed");
    uint64_t ts0 = mono_ns();
    char pat[64];
    for (int i = 0; i < others; i++) {
        if (i % 2 == 0)
            snprintf(pat, sizeof pat, "other.%d", i);
        else
            snprintf(pat, sizeof pat, "other.*.x%d.>", i);
        if (p_subscribe(bus, pat, cb_nop, NULL) <= 0) {
            fprintf(stderr, "subscribe %s: %s\n", pat, p_last_error ? p_last_error() : "?");
            die("subscribe failed");
        }
    }
    uint64_t ts1 = mono_ns();
    char *buf = make_payload(size);
    for (int i = 0; i < 100; i++) p_publish(bus, "bench.target", buf, size);
    p_flush(bus, -1);
    atomic_store(&s->count, 0);
    uint64_t errors = 0;
    double c0 = cpu_s();
    uint64_t t0 = mono_ns();
    for (uint64_t i = 0; i < n; i++)
        if (p_publish(bus, "bench.target", buf, size) != 0) errors++;
    uint64_t t1 = mono_ns();
    int32_t fr = p_flush(bus, -1);
    uint64_t t2 = mono_ns();
    double c1 = cpu_s();
    uint64_t d = atomic_load(&s->count);
    printf("{\"workload\":\"fanout\",\"others\":%d,\"messages\":%llu,\"size\":%zu,"
           "\"subscribe_ns_each\":%.0f,\"publish_ns\":%.1f,\"msgs_per_s\":%.1f,"
           "\"cpu_ns_per_msg\":%.1f,\"delivered\":%llu,\"push_errors\":%llu,\"flush\":%d,"
           "\"ok\":%s}\n",
           others, (unsigned long long)n, size, others ? (ts1 - ts0) / (double)others : 0.0,
           (t1 - t0) / (double)n, n / ((t2 - t0) / 1e9), (c1 - c0) * 1e9 / (double)n,
           (unsigned long long)d, (unsigned long long)errors, fr,
           (d == n && errors == 0 && fr == 0) ? "true" : "false");
    if (p_free) p_free(bus);
    return 0;
}

/* ---------- publisher thread for broadcast / pull / limited ----------
 * push_json n times after the barrier; records its own wall time and thread CPU time. */
typedef struct {
    pthread_barrier_t *bar;
    const char *payload;
    uint64_t n;
    uint64_t errors;
    uint64_t t0, t1;
    double cpu;
} pub1_arg;

static void *pub1_main(void *a_) {
    pub1_arg *a = a_;
    pthread_barrier_wait(a->bar);
    double c0 = thread_cpu_s();
    a->t0 = mono_ns();
    const char *p = a->payload;
    for (uint64_t i = 0; i < a->n; i++)
        if (p_push_json(p) != 0) a->errors++;
    a->t1 = mono_ns();
    a->cpu = thread_cpu_s() - c0;
    return NULL;
}

/* a subscriber that also checks seq order */
typedef struct {
    _Atomic uint64_t count;
    _Atomic uint64_t bad;
    _Atomic uint64_t out_of_order;
    uint64_t last_seq;
    size_t expect_len;
    char pad[64 - 40];
} bsub_t;

static int32_t cb_order(const jsonbus_message *m, void *ud) {
    bsub_t *s = ud;
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    if (m->json_len != s->expect_len || m->json[0] != '{')
        atomic_fetch_add_explicit(&s->bad, 1, memory_order_relaxed);
    if (m->seq <= s->last_seq) atomic_fetch_add_explicit(&s->out_of_order, 1, memory_order_relaxed);
    s->last_seq = m->seq;
    return 0;
}

/* ---------- broadcast: 1 publisher, every message to every one of `subs` subscribers ---------- */
static int w_broadcast(int subs, uint64_t n, size_t size) {
    if (subs < 1 || subs > 65536 || n < 1) die("bad broadcast arguments");
    bsub_t *s = aligned_alloc(64, sizeof(bsub_t) * (size_t)subs);
    memset(s, 0, sizeof(bsub_t) * (size_t)subs);
    uint64_t ts0 = mono_ns();
    for (int i = 0; i < subs; i++) {
        s[i].expect_len = size;
        if (p_register_callback(cb_order, &s[i]) <= 0) die("register_callback failed");
    }
    uint64_t ts1 = mono_ns();
    void *bus = p_default();
    char *payload = make_payload(size);
    /* warm-up: start the contender's threads, fault in its allocator and queues */
    int warm = 200000 / subs;
    if (warm > 100) warm = 100;
    if (warm < 4) warm = 4;
    for (int i = 0; i < warm; i++) p_push_json(payload);
    p_flush(bus, -1);
    for (int i = 0; i < subs; i++) {
        atomic_store(&s[i].count, 0);
        atomic_store(&s[i].bad, 0);
    }

    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    pub1_arg a = {&bar, payload, n, 0, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, pub1_main, &a);
    double c0 = cpu_s();
    pthread_barrier_wait(&bar);
    pthread_join(th, NULL);
    int32_t fr = p_flush(bus, -1);
    uint64_t t2 = mono_ns();
    double c1 = cpu_s();

    uint64_t delivered = 0, bad = 0, ooo = 0, minc = UINT64_MAX, maxc = 0;
    for (int i = 0; i < subs; i++) {
        uint64_t c = atomic_load(&s[i].count);
        delivered += c;
        if (c < minc) minc = c;
        if (c > maxc) maxc = c;
        bad += atomic_load(&s[i].bad);
        ooo += atomic_load(&s[i].out_of_order);
    }
    double secs = (t2 - a.t0) / 1e9;
    double dels = (double)n * subs;
    printf("{\"workload\":\"broadcast\",\"subs\":%d,\"messages\":%llu,\"size\":%zu,"
           "\"seconds\":%.6f,\"publish_seconds\":%.6f,\"msgs_per_s\":%.1f,"
           "\"deliveries_per_s\":%.1f,\"ns_per_delivery\":%.2f,\"cpu_ns_per_delivery\":%.2f,"
           "\"cpu_ns_per_msg\":%.1f,\"publish_ns\":%.1f,\"pub_cpu_ns_per_msg\":%.1f,"
           "\"subscribe_ns_each\":%.0f,\"maxrss_kb\":%ld,\"delivered\":%llu,\"expected\":%llu,"
           "\"min_per_sub\":%llu,\"max_per_sub\":%llu,\"out_of_order\":%llu,\"push_errors\":%llu,"
           "\"bad\":%llu,\"flush\":%d,\"ok\":%s}\n",
           subs, (unsigned long long)n, size, secs, (a.t1 - a.t0) / 1e9, n / secs, dels / secs,
           secs * 1e9 / dels, (c1 - c0) * 1e9 / dels, (c1 - c0) * 1e9 / (double)n,
           (a.t1 - a.t0) / (double)n, a.cpu * 1e9 / (double)n, (ts1 - ts0) / (double)subs,
           maxrss_kb(), (unsigned long long)delivered, (unsigned long long)(n * (uint64_t)subs),
           (unsigned long long)minc, (unsigned long long)maxc, (unsigned long long)ooo,
           (unsigned long long)a.errors, (unsigned long long)bad, fr,
           (delivered == n * (uint64_t)subs && a.errors == 0 && bad == 0 && fr == 0) ? "true"
                                                                                      : "false");
    return 0;
}

/* ---------- pull: 1 publisher thread, 1 thread pulling (jsonbus_next + release) ---------- */
static int w_pull(uint64_t n, size_t size, const char *mode) {
    int poll_mode = !strcmp(mode, "poll");
    if (!poll_mode && strcmp(mode, "wait")) die("pull mode is wait or poll");
    if (!p_subscribe_pull || !p_next || !p_release || (poll_mode && !p_pull_fd)) {
        printf("{\"workload\":\"pull\",\"mode\":\"%s\",\"na\":true}\n", mode);
        return 0;
    }
    void *bus = p_default();
    int64_t id = p_subscribe_pull(bus, ">", NULL);
    if (id <= 0) die("jsonbus_subscribe_pull failed");
    int fd = -1;
    if (poll_mode) {
        fd = p_pull_fd(bus, id);
        if (fd < 0) die("jsonbus_pull_fd failed");
    }
    char *payload = make_payload(size);
    jsonbus_message *m;
    for (int i = 0; i < 100; i++) p_push_json(payload);
    for (int i = 0; i < 100; i++) {
        if (p_next(bus, id, -1, &m) != 0) die("jsonbus_next failed in warm-up");
        p_release(m);
    }
    p_flush(bus, -1);

    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    pub1_arg a = {&bar, payload, n, 0, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, pub1_main, &a);
    uint64_t got = 0, bad = 0, ooo = 0, last = 0, polls = 0, empty_polls = 0, errs = 0;
    double c0 = cpu_s();
    pthread_barrier_wait(&bar);
    double tc0 = thread_cpu_s();
    while (got < n) {
        if (poll_mode) {
            struct pollfd pfd = {fd, POLLIN, 0};
            int pr = poll(&pfd, 1, 10000);
            polls++;
            if (pr <= 0) {
                errs++;
                if (errs > 3) break; /* 30 s without a message: give up */
                continue;
            }
            uint64_t took = 0;
            while (p_next(bus, id, 0, &m) == 0) {
                if (m->json_len != size || m->json[0] != '{') bad++;
                if (m->seq <= last) ooo++;
                last = m->seq;
                p_release(m);
                took++;
            }
            if (!took) empty_polls++;
            got += took;
        } else {
            int32_t r = p_next(bus, id, -1, &m); /* blocks; the runner's timeout bounds a hang */
            if (r != 0) {
                fprintf(stderr, "jsonbus_next: %d %s\n", r, p_last_error ? p_last_error() : "");
                errs++;
                break;
            }
            if (m->json_len != size || m->json[0] != '{') bad++;
            if (m->seq <= last) ooo++;
            last = m->seq;
            p_release(m);
            got++;
        }
    }
    uint64_t tg = mono_ns();
    double pull_cpu = thread_cpu_s() - tc0;
    pthread_join(th, NULL);
    int32_t fr = p_flush(bus, -1);
    uint64_t t2 = mono_ns();
    double c1 = cpu_s();
    double secs = (t2 - a.t0) / 1e9;
    printf("{\"workload\":\"pull\",\"mode\":\"%s\",\"messages\":%llu,\"size\":%zu,"
           "\"seconds\":%.6f,\"pull_seconds\":%.6f,\"publish_seconds\":%.6f,\"msgs_per_s\":%.1f,"
           "\"publish_ns\":%.1f,\"pub_cpu_ns_per_msg\":%.1f,\"pull_cpu_ns_per_msg\":%.1f,"
           "\"cpu_ns_per_msg\":%.1f,\"polls\":%llu,\"empty_polls\":%llu,\"maxrss_kb\":%ld,"
           "\"delivered\":%llu,\"out_of_order\":%llu,\"push_errors\":%llu,\"bad\":%llu,"
           "\"flush\":%d,\"ok\":%s}\n",
           mode, (unsigned long long)n, size, secs, (tg - a.t0) / 1e9, (a.t1 - a.t0) / 1e9,
           n / secs, (a.t1 - a.t0) / (double)n, a.cpu * 1e9 / (double)n,
           pull_cpu * 1e9 / (double)n, (c1 - c0) * 1e9 / (double)n, (unsigned long long)polls,
           (unsigned long long)empty_polls, maxrss_kb(), (unsigned long long)got,
           (unsigned long long)ooo, (unsigned long long)a.errors, (unsigned long long)bad, fr,
           (got == n && a.errors == 0 && bad == 0 && ooo == 0 && fr == 0) ? "true" : "false");
    return 0;
}

/* ---------- limited: 1 pub 1 sub, a subscription with or without a queue_limit ---------- */
static uint64_t stat_u64(const char *json, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = json ? strstr(json, k) : NULL;
    return p ? strtoull(p + strlen(k), NULL, 10) : 0;
}

static int w_limited(uint64_t n, size_t size, const char *mode, long limit) {
    int none = !strcmp(mode, "none");
    if (!none && strcmp(mode, "block") && strcmp(mode, "drop_new") && strcmp(mode, "drop_oldest"))
        die("limited mode is none, block, drop_new or drop_oldest");
    if (!p_subscribe || !p_subscribe_with) {
        printf("{\"workload\":\"limited\",\"mode\":\"%s\",\"na\":true}\n", mode);
        return 0;
    }
    void *bus = p_default();
    sub_t *s = aligned_alloc(64, sizeof(sub_t));
    memset(s, 0, sizeof *s);
    s->expect_len = size;
    char opts[128];
    snprintf(opts, sizeof opts, "{\"queue_limit\":%ld,\"on_full\":\"%s\"}", limit, mode);
    int64_t id = none ? p_subscribe(bus, ">", cb_count, s)
                      : p_subscribe_with(bus, ">", opts, cb_count, NULL, s);
    if (id <= 0) {
        fprintf(stderr, "subscribe %s: %s\n", none ? "" : opts, p_last_error ? p_last_error() : "?");
        die("subscribe failed");
    }
    char *payload = make_payload(size);
    for (int i = 0; i < 100; i++) p_push_json(payload);
    p_flush(bus, -1);
    char *st0 = p_sub_stats ? p_sub_stats(bus, id) : NULL;
    uint64_t dropped0 = stat_u64(st0, "dropped");
    if (st0 && p_string_free) p_string_free(st0);
    atomic_store(&s->count, 0);

    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    pub1_arg a = {&bar, payload, n, 0, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, pub1_main, &a);
    double c0 = cpu_s();
    pthread_barrier_wait(&bar);
    pthread_join(th, NULL);
    int32_t fr = p_flush(bus, -1);
    uint64_t t2 = mono_ns();
    double c1 = cpu_s();
    char *st = p_sub_stats ? p_sub_stats(bus, id) : NULL;
    uint64_t dropped = stat_u64(st, "dropped") - dropped0, max_queued = stat_u64(st, "max_queued");
    if (st && p_string_free) p_string_free(st);
    uint64_t d = atomic_load(&s->count);
    double secs = (t2 - a.t0) / 1e9;
    int ok = d + dropped == n && a.errors == 0 && s->bad == 0 && fr == 0 && (st || none);
    if (none || !strcmp(mode, "block")) ok = ok && dropped == 0;
    printf("{\"workload\":\"limited\",\"mode\":\"%s\",\"queue_limit\":%ld,\"messages\":%llu,"
           "\"size\":%zu,\"seconds\":%.6f,\"publish_seconds\":%.6f,\"msgs_per_s\":%.1f,"
           "\"publish_ns\":%.1f,\"pub_cpu_ns_per_msg\":%.1f,\"cpu_ns_per_msg\":%.1f,"
           "\"maxrss_kb\":%ld,\"delivered\":%llu,\"dropped\":%llu,\"max_queued\":%llu,"
           "\"push_errors\":%llu,\"bad\":%llu,\"flush\":%d,\"ok\":%s}\n",
           mode, none ? 0 : limit, (unsigned long long)n, size, secs, (a.t1 - a.t0) / 1e9,
           n / secs, (a.t1 - a.t0) / (double)n, a.cpu * 1e9 / (double)n,
           (c1 - c0) * 1e9 / (double)n, maxrss_kb(), (unsigned long long)d,
           (unsigned long long)dropped, (unsigned long long)max_queued,
           (unsigned long long)a.errors, (unsigned long long)atomic_load(&s->bad), fr,
           ok ? "true" : "false");
    return 0;
}

/* ---------- request: N requester threads, each doing sequential round trips ----------
 * One responder, a callback subscription on REQ_TOPIC that echoes every request with
 * jsonbus_reply.  Each request payload carries its requester's id and sequence number in
 * the "t" digits (id * 10^12 + n); a round trip counts as right only if the reply is
 * byte-for-byte the request (same length, same digits, NUL-terminated), i.e. the reply
 * reached the requester that asked. */
#define REQ_TOPIC "bench.svc.echo"
#define REQ_TIMEOUT_MS 10000
#define REQ_WARMUP 50
#define REQ_TAG_BASE 1000000000000ull /* id * this + sequence number */

static void *req_bus;
static _Atomic uint64_t resp_calls, resp_errors;
static _Atomic int32_t resp_first_error;

static int32_t cb_echo(const jsonbus_message *m, void *ud) {
    (void)ud;
    atomic_fetch_add_explicit(&resp_calls, 1, memory_order_relaxed);
    int32_t r = p_reply(req_bus, m, m->json, m->json_len);
    if (r != 0) {
        atomic_fetch_add_explicit(&resp_errors, 1, memory_order_relaxed);
        int32_t z = 0;
        atomic_compare_exchange_strong(&resp_first_error, &z, r);
    }
    return 0;
}

typedef struct {
    pthread_barrier_t *bar;
    int id;
    uint64_t n;
    size_t size;
    uint64_t *lat; /* n entries, one per successful round trip */
    uint64_t ok, errors, mismatched;
    int32_t first_error;
    uint64_t t0, t1;
    double cpu;
} req_arg;

/* one round trip; returns its latency in ns, or 0 if it failed */
static uint64_t round_trip(req_arg *a, char *buf, uint64_t tag) {
    put_ts(buf, tag);
    char *reply = NULL;
    size_t rlen = 0;
    uint64_t b = mono_ns();
    int32_t r = p_request(req_bus, REQ_TOPIC, buf, a->size, REQ_TIMEOUT_MS, &reply, &rlen);
    uint64_t e = mono_ns();
    if (r != 0) {
        a->errors++;
        if (!a->first_error) a->first_error = r;
        if (reply) p_string_free(reply);
        return 0;
    }
    int right = reply && rlen == a->size && reply[rlen] == 0 && !memcmp(reply, buf, a->size);
    if (reply) p_string_free(reply);
    if (!right) {
        a->mismatched++;
        return 0;
    }
    return e - b ? e - b : 1;
}

static void *req_main(void *a_) {
    req_arg *a = a_;
    char *buf = make_payload(a->size);
    uint64_t base = (uint64_t)a->id * REQ_TAG_BASE;
    for (uint64_t i = 0; i < REQ_WARMUP; i++) round_trip(a, buf, base + REQ_TAG_BASE / 2 + i);
    a->errors = a->mismatched = 0;
    a->first_error = 0;
    pthread_barrier_wait(a->bar);
    double c0 = thread_cpu_s();
    a->t0 = mono_ns();
    for (uint64_t i = 0; i < a->n; i++) {
        uint64_t l = round_trip(a, buf, base + i);
        if (l) a->lat[a->ok++] = l;
    }
    a->t1 = mono_ns();
    a->cpu = thread_cpu_s() - c0;
    free(buf);
    return NULL;
}

static int w_request(int reqs, uint64_t n, size_t size) {
    if (reqs < 1 || reqs > 256 || n < 1) die("bad request arguments");
    if (!p_subscribe || !p_request || !p_reply || !p_string_free) {
        printf("{\"workload\":\"request\",\"requesters\":%d,\"na\":true}\n", reqs);
        return 0;
    }
    req_bus = p_default();
    int64_t id = p_subscribe(req_bus, REQ_TOPIC, cb_echo, NULL);
    if (id <= 0) {
        fprintf(stderr, "subscribe %s: %s\n", REQ_TOPIC, p_last_error ? p_last_error() : "?");
        die("subscribe failed");
    }
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)reqs + 1);
    pthread_t *th = calloc((size_t)reqs, sizeof *th);
    req_arg *args = calloc((size_t)reqs, sizeof *args);
    for (int i = 0; i < reqs; i++) {
        args[i] = (req_arg){.bar = &bar, .id = i + 1, .n = n, .size = size};
        args[i].lat = calloc(n, sizeof(uint64_t));
        pthread_create(&th[i], NULL, req_main, &args[i]);
    }
    pthread_barrier_wait(&bar); /* every requester has done its warm-up */
    double c0 = cpu_s();
    for (int i = 0; i < reqs; i++) pthread_join(th[i], NULL);
    double c1 = cpu_s();
    /* the responder counts before it replies, so every warm-up call has been counted */
    uint64_t calls = atomic_load(&resp_calls) - (uint64_t)reqs * REQ_WARMUP;

    uint64_t total = n * (uint64_t)reqs, ok = 0, errors = 0, mismatched = 0, t0 = UINT64_MAX,
             t1 = 0;
    int32_t first_error = 0;
    double req_cpu = 0;
    for (int i = 0; i < reqs; i++) {
        ok += args[i].ok;
        errors += args[i].errors;
        mismatched += args[i].mismatched;
        if (!first_error) first_error = args[i].first_error;
        if (args[i].t0 < t0) t0 = args[i].t0;
        if (args[i].t1 > t1) t1 = args[i].t1;
        req_cpu += args[i].cpu;
    }
    uint64_t *v = malloc(sizeof(uint64_t) * (ok ? ok : 1));
    uint64_t m = 0;
    double sum = 0;
    for (int i = 0; i < reqs; i++)
        for (uint64_t k = 0; k < args[i].ok; k++) {
            v[m++] = args[i].lat[k];
            sum += (double)args[i].lat[k];
        }
    qsort(v, m, sizeof(uint64_t), cmp_u64);
    double secs = (t1 - t0) / 1e9;
    int32_t rerr = atomic_load(&resp_first_error);
    int32_t shown = first_error ? first_error : rerr;
    printf("{\"workload\":\"request\",\"requesters\":%d,\"round_trips\":%llu,\"size\":%zu,"
           "\"timeout_ms\":%d,\"seconds\":%.6f,\"rt_per_s\":%.1f,\"p50_ns\":%llu,\"p90_ns\":%llu,"
           "\"p99_ns\":%llu,\"p999_ns\":%llu,\"max_ns\":%llu,\"mean_ns\":%.0f,"
           "\"cpu_ns_per_rt\":%.1f,\"requester_cpu_ns_per_rt\":%.1f,\"maxrss_kb\":%ld,"
           "\"completed\":%llu,\"errors\":%llu,\"mismatched\":%llu,\"responder_calls\":%llu,"
           "\"reply_errors\":%llu,\"first_error\":%d,\"first_error_name\":\"%s\",\"ok\":%s}\n",
           reqs, (unsigned long long)total, size, REQ_TIMEOUT_MS, secs, ok / secs,
           (unsigned long long)PCT(0.5), (unsigned long long)PCT(0.9),
           (unsigned long long)PCT(0.99), (unsigned long long)PCT(0.999),
           (unsigned long long)(m ? v[m - 1] : 0), m ? sum / (double)m : 0.0,
           (c1 - c0) * 1e9 / (double)total, req_cpu * 1e9 / (double)total, maxrss_kb(),
           (unsigned long long)ok, (unsigned long long)errors, (unsigned long long)mismatched,
           (unsigned long long)calls, (unsigned long long)atomic_load(&resp_errors), shown,
           shown && p_status_name ? p_status_name(shown) : "",
           (ok == total && errors == 0 && mismatched == 0 && atomic_load(&resp_errors) == 0)
               ? "true"
               : "false");
    return 0;
}

/* ---------- timers: `count` timers armed at `rate` per second ----------
 * Each jsonbus_publish_after gets a delay drawn uniformly from 1..max_delay_ms (default 50;
 * a fixed xorshift seed, so every run arms the same sequence, out of due order) and a
 * payload carrying its due time, jsonbus_now_ns() read just before the call + the delay.
 * The subscriber (a callback subscription on the timer topic) reads jsonbus_now_ns() on
 * entry: lateness = that - due.  Reading the clock before the call means a timer the
 * library fires at its own due time is never counted early. */
#define TIMER_TOPIC "bench.timer"

static int64_t *tim_late, *tim_fire; /* at the callback; at the publish (published_ns) */
static uint64_t tim_cap;
static _Atomic uint64_t tim_idx, tim_early;

static int32_t cb_timer(const jsonbus_message *m, void *ud) {
    (void)ud;
    uint64_t now = p_now_ns();
    uint64_t due = strtoull(m->json + TS_OFF, NULL, 10);
    if (now < due) atomic_fetch_add_explicit(&tim_early, 1, memory_order_relaxed);
    uint64_t i = atomic_fetch_add_explicit(&tim_idx, 1, memory_order_relaxed);
    if (i < tim_cap) {
        tim_late[i] = (int64_t)(now - due);
        tim_fire[i] = (int64_t)(m->published_ns - due);
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int w_timers(double rate, uint64_t n, int max_delay) {
    if (rate <= 0 || n < 1 || max_delay < 1) die("bad timers arguments");
    if (!p_subscribe || !p_publish_after) {
        printf("{\"workload\":\"timers\",\"rate\":%.0f,\"na\":true}\n", rate);
        return 0;
    }
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    const size_t size = 200;
    void *bus = p_default();
    tim_cap = n;
    tim_late = calloc(n, sizeof(int64_t));
    tim_fire = calloc(n, sizeof(int64_t));
    uint64_t *call_buf = calloc(n, sizeof(uint64_t));
    if (p_subscribe(bus, TIMER_TOPIC, cb_timer, NULL) <= 0) {
        fprintf(stderr, "subscribe %s: %s\n", TIMER_TOPIC, p_last_error ? p_last_error() : "?");
        die("subscribe failed");
    }
    char *buf = make_payload(size);
    /* warm-up: a few timers at once and after 1 ms (start the timer machinery) */
    for (int i = 0; i < 20; i++) {
        put_ts(buf, p_now_ns() + (uint64_t)(i & 1) * 1000000ull);
        p_publish_after(bus, TIMER_TOPIC, buf, size, i & 1);
    }
    uint64_t wend = mono_ns() + 1000000000ull;
    while (atomic_load(&tim_idx) < 20 && mono_ns() < wend) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&tim_idx, 0);
    atomic_store(&tim_early, 0);

    uint64_t period = (uint64_t)(1e9 / rate);
    uint64_t spin_below = getenv("DRIVER_SPIN_BELOW_NS") ? strtoull(getenv("DRIVER_SPIN_BELOW_NS"), NULL, 10)
                                                         : SPIN_BELOW_NS;
    uint64_t x = 0x9E3779B97F4A7C15ull, errors = 0, late_arms = 0;
    int32_t first_error = 0;
    double c0 = cpu_s();
    uint64_t start = mono_ns() + 1000000;
    /* Below 1 ms periods the timers are armed in batches, one batch per millisecond (100 at
     * 100,000/s), as a program arming that many would: pacing each one alone would keep this
     * thread spinning (or behind its sleeps) and take a core from the library on 2 cores. */
    uint64_t batch = period < 1000000 ? 1000000 / period : 1;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t target = start + (i / batch) * batch * period;
        uint64_t now = mono_ns();
        if (i % batch != 0) {
            /* the rest of a batch: no wait */
        } else if (now < target && period * batch >= spin_below) {
            struct timespec ts = {(time_t)(target / 1000000000ull), (long)(target % 1000000000ull)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
            }
        } else if (now < target) {
            while (mono_ns() < target) {
            }
        } else if (now > target + period * batch) {
            late_arms++;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t delay = 1 + (int64_t)(x % (uint64_t)max_delay);
        uint64_t b = mono_ns();
        put_ts(buf, p_now_ns() + (uint64_t)delay * 1000000ull);
        int64_t t = p_publish_after(bus, TIMER_TOPIC, buf, size, delay);
        call_buf[i] = mono_ns() - b;
        if (t <= 0) {
            errors++;
            if (!first_error) first_error = (int32_t)t;
        }
    }
    uint64_t end = mono_ns();
    /* wait for every timer: the last is due at most max_delay ms after `end` */
    uint64_t deadline = end + (uint64_t)max_delay * 1000000ull + 5000000000ull;
    while (atomic_load(&tim_idx) < n - errors && mono_ns() < deadline) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    uint64_t waited = mono_ns() - end;
    double c1 = cpu_s();
    uint64_t got = atomic_load(&tim_idx);
    if (got > n) got = n;
    qsort(tim_late, got, sizeof(int64_t), cmp_i64);
    qsort(tim_fire, got, sizeof(int64_t), cmp_i64);
    int64_t fire_p50 = got ? tim_fire[(got - 1) / 2] : 0;
    int64_t fire_p99 = got ? tim_fire[(uint64_t)((double)(got - 1) * 0.99)] : 0;
    qsort(call_buf, n, sizeof(uint64_t), cmp_u64);
    int64_t *v = tim_late;
    uint64_t m = got;
    double sum = 0;
    for (uint64_t i = 0; i < m; i++) sum += (double)v[i];
#define IPCT(p) (m ? v[(uint64_t)((double)(m - 1) * (p))] : 0)
    uint64_t early = atomic_load(&tim_early);
    printf("{\"workload\":\"timers\",\"rate\":%.0f,\"achieved_rate\":%.0f,\"count\":%llu,"
           "\"max_delay_ms\":%d,\"size\":%zu,\"received\":%llu,\"early\":%llu,"
           "\"min_late_ns\":%lld,\"p50_late_ns\":%lld,\"p90_late_ns\":%lld,\"p99_late_ns\":%lld,"
           "\"p999_late_ns\":%lld,\"max_late_ns\":%lld,\"mean_late_ns\":%.0f,"
           "\"p50_late_us\":%.1f,\"p99_late_us\":%.1f,\"max_late_us\":%.1f,"
           "\"p50_fire_late_us\":%.1f,\"p99_fire_late_us\":%.1f,"
           "\"call_p50_ns\":%llu,\"call_p99_ns\":%llu,\"call_max_ns\":%llu,\"late_arms\":%llu,"
           "\"wait_after_arming_ms\":%.1f,\"cpu_ns_per_timer\":%.1f,\"maxrss_kb\":%ld,"
           "\"errors\":%llu,\"first_error\":%d,\"ok\":%s}\n",
           rate, n / ((end - start) / 1e9), (unsigned long long)n, max_delay, size,
           (unsigned long long)got, (unsigned long long)early, (long long)(m ? v[0] : 0),
           (long long)IPCT(0.5), (long long)IPCT(0.9), (long long)IPCT(0.99),
           (long long)IPCT(0.999), (long long)(m ? v[m - 1] : 0), m ? sum / (double)m : 0.0,
           IPCT(0.5) / 1e3, IPCT(0.99) / 1e3, (m ? v[m - 1] : 0) / 1e3, fire_p50 / 1e3,
           fire_p99 / 1e3,
           (unsigned long long)call_buf[(n - 1) / 2], (unsigned long long)call_buf[(uint64_t)((n - 1) * 0.99)],
           (unsigned long long)call_buf[n - 1], (unsigned long long)late_arms, waited / 1e6,
           (c1 - c0) * 1e9 / (double)n, maxrss_kb(), (unsigned long long)errors, first_error,
           (got == n && early == 0 && errors == 0) ? "true" : "false");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s <lib.so> info | tput P SIZE S N | lat RATE SECONDS SIZE |"
                " burst N SIZE SPIN_NS | fanout OTHERS N SIZE | broadcast SUBS N SIZE |"
                " pull N SIZE wait|poll | limited N SIZE none|block|drop_new|drop_oldest [LIMIT] |"
                " request REQUESTERS ROUND_TRIPS SIZE | timers RATE COUNT [MAX_DELAY_MS]\n",
                argv[0]);
        return 2;
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "driver: dlopen: %s\n", dlerror());
        return 2;
    }
    const char *w = argv[2];
    /* the quick API and flush: every workload but info, request and timers */
    int quick = strcmp(w, "info") && strcmp(w, "request") && strcmp(w, "timers");
    p_register_callback = (int64_t(*)(jsonbus_callback, void *))sym(h, "register_callback", quick);
    p_push_json = (int32_t(*)(const char *))sym(h, "push_json", quick);
    p_default = (void *(*)(void))sym(h, "jsonbus_default", 1);
    p_flush = (int32_t(*)(void *, int32_t))sym(h, "jsonbus_flush", quick);
    p_now_ns = (uint64_t(*)(void))sym(h, "jsonbus_now_ns", 1);
    p_new = (void *(*)(const char *))sym(h, "jsonbus_new", 0);
    p_subscribe =
        (int64_t(*)(void *, const char *, jsonbus_callback, void *))sym(h, "jsonbus_subscribe", 0);
    p_publish = (int32_t(*)(void *, const char *, const char *, size_t))sym(h, "jsonbus_publish", 0);
    p_free = (void (*)(void *))sym(h, "jsonbus_free", 0);
    p_last_error = (const char *(*)(void))sym(h, "jsonbus_last_error", 0);
    p_stats = (char *(*)(void *))sym(h, "jsonbus_stats", 0);
    p_string_free = (void (*)(char *))sym(h, "jsonbus_string_free", 0);
    p_subscribe_with = (int64_t(*)(void *, const char *, const char *, jsonbus_callback,
                                   jsonbus_end_callback, void *))sym(h, "jsonbus_subscribe_with", 0);
    p_subscribe_pull =
        (int64_t(*)(void *, const char *, const char *))sym(h, "jsonbus_subscribe_pull", 0);
    p_next = (int32_t(*)(void *, int64_t, int32_t, jsonbus_message **))sym(h, "jsonbus_next", 0);
    p_release = (void (*)(jsonbus_message *))sym(h, "jsonbus_message_release", 0);
    p_pull_fd = (int32_t(*)(void *, int64_t))sym(h, "jsonbus_pull_fd", 0);
    p_sub_stats = (char *(*)(void *, int64_t))sym(h, "jsonbus_subscription_stats", 0);
    p_request = (int32_t(*)(void *, const char *, const char *, size_t, int32_t, char **,
                            size_t *))sym(h, "jsonbus_request", 0);
    p_reply = (int32_t(*)(void *, const jsonbus_message *, const char *, size_t))sym(
        h, "jsonbus_reply", 0);
    p_publish_after = (int64_t(*)(void *, const char *, const char *, size_t, int64_t))sym(
        h, "jsonbus_publish_after", 0);
    p_status_name = (const char *(*)(int32_t))sym(h, "jsonbus_status_name", 0);

    int rc = 2;
    if (!strcmp(w, "info")) {
        char *st = p_stats ? p_stats(p_default()) : NULL;
        printf("{\"workload\":\"info\",\"full_api\":%s,\"quick_api\":%s,\"request_api\":%s,"
               "\"timers_api\":%s,\"now_ns\":%llu,\"mono_ns\":%llu,\"stats\":%s}\n",
               (p_new && p_subscribe && p_publish) ? "true" : "false",
               (p_register_callback && p_push_json && p_flush) ? "true" : "false",
               (p_subscribe && p_request && p_reply && p_string_free) ? "true" : "false",
               (p_subscribe && p_publish_after) ? "true" : "false",
               (unsigned long long)p_now_ns(), (unsigned long long)mono_ns(), st ? st : "null");
        if (st && p_string_free) p_string_free(st);
        rc = 0;
    } else if (!strcmp(w, "tput") && argc == 7) {
        rc = w_tput(atoi(argv[3]), (size_t)atol(argv[4]), atoi(argv[5]),
                    strtoull(argv[6], NULL, 10));
    } else if (!strcmp(w, "lat") && argc == 6) {
        rc = w_lat(atof(argv[3]), atof(argv[4]), (size_t)atol(argv[5]));
    } else if (!strcmp(w, "burst") && argc == 6) {
        rc = w_burst(strtoull(argv[3], NULL, 10), (size_t)atol(argv[4]),
                     strtoull(argv[5], NULL, 10));
    } else if (!strcmp(w, "fanout") && argc == 6) {
        rc = w_fanout(atoi(argv[3]), strtoull(argv[4], NULL, 10), (size_t)atol(argv[5]));
    } else if (!strcmp(w, "broadcast") && argc == 6) {
        rc = w_broadcast(atoi(argv[3]), strtoull(argv[4], NULL, 10), (size_t)atol(argv[5]));
    } else if (!strcmp(w, "pull") && argc == 6) {
        rc = w_pull(strtoull(argv[3], NULL, 10), (size_t)atol(argv[4]), argv[5]);
    } else if (!strcmp(w, "limited") && (argc == 6 || argc == 7)) {
        rc = w_limited(strtoull(argv[3], NULL, 10), (size_t)atol(argv[4]), argv[5],
                       argc == 7 ? atol(argv[6]) : 1024);
    } else if (!strcmp(w, "request") && argc == 6) {
        rc = w_request(atoi(argv[3]), strtoull(argv[4], NULL, 10), (size_t)atol(argv[5]));
    } else if (!strcmp(w, "timers") && (argc == 5 || argc == 6)) {
        rc = w_timers(atof(argv[3]), strtoull(argv[4], NULL, 10), argc == 6 ? atoi(argv[5]) : 50);
    } else {
        fprintf(stderr, "driver: bad workload or arguments\n");
        return 2;
    }
    fflush(stdout);
    /* no library teardown: Go c-shared libraries cannot be unloaded, and a hang in a
       contender's shutdown must not cost a measurement */
    _exit(rc);
}
