/*
 * process_peer - the other processes of the multi-process tests (test_process,
 * test_process_unload, contract Part 2C): a hub, a bus about to be served, or an attached peer,
 * which the test drives by commands on stdin and which answers on stdout.
 *
 * Usage: process_peer NAME MODE [ARGS...]        ("-" as an options argument = NULL)
 *   peer [ATTACH_OPTIONS]              jsonbus_attach(NAME); prints "ready", then commands
 *   hub [SERVE_OPTIONS] [BUS_OPTIONS]  jsonbus_new + jsonbus_serve(NAME); "ready", then commands
 *   new [BUS_OPTIONS]                  jsonbus_new only ("serve-at" serves it); "ready", commands
 *   probe                              jsonbus_attach(NAME, connect_timeout_ms 0), then
 *                                      jsonbus_serve(new bus, NAME); prints
 *                                      "probe attach=STATUS serve=STATUS" and exits 0
 *   probe-as-nobody                    setgid/setuid(65534) (root only), then the attach only:
 *                                      "probe attach=STATUS"
 * When the set-up call fails it prints "attach STATUS" / "serve STATUS" / "new STATUS" and exits 3.
 * "ready" is followed by "inherited=N": how many descriptors other than 0-2 the process was
 * started with (the test marks all of its own close-on-exec, so any such descriptor leaked
 * out of the library of the parent).
 *
 * Commands, one a line (space-separated words; JSON arguments without spaces), each answered
 * by exactly one line. EOF on stdin is "quit".
 *   sub PATTERN [OPTIONS]       recording subscription (jsonbus_subscribe_with + end notice)
 *                               -> "sub ID"
 *   slowsub PATTERN US          recording subscription whose callback spins US microseconds
 *   republish PATTERN TOPIC     callback publishes each message's payload again on TOPIC
 *   echo PATTERN                responder: replies {"pid":P,"req":<request payload>}
 *   hold PATTERN                callback prints "holding SEQ" (an extra line) and never returns
 *   pullsub PATTERN             jsonbus_subscribe_pull -> "sub ID"
 *   take ID K                   K x jsonbus_next (10 s each), kept, never released
 *                               -> "pulled K STATUS"
 *   publish TOPIC N ID RATE     N messages {"t":ID,"n":i,"ts":now_ns} (RATE per second, 0 = as
 *                               fast as it goes) -> "published OK_COUNT STATUS_OF_FIRST_FAILURE"
 *   spam TOPIC ID               publishes {"t":ID,"n":i,...} for ever; "spamming" after 1,000
 *                               (to be killed; on a failure "spam-failed N STATUS")
 *   flush MS                    -> "flush STATUS ELAPSED_MS"
 *   request TOPIC JSON MS       -> "reply STATUS ELAPSED_MS PAYLOAD|-"
 *   requests TOPIC N ID         N requests {"t":ID,"n":i}, each reply must echo its own request
 *                               -> "requests MATCHED STATUS_OF_FIRST_FAILURE"
 *   until-disconnected TOPIC MS publishes until it fails (1 ms apart, at most MS), then tries
 *                               subscribe, flush and request -> "disconnected PUBLISH SUBSCRIBE
 *                               FLUSH REQUEST ELAPSED_MS OK_COUNT"
 *   count                       -> "count N" (deliveries recorded, all subscriptions)
 *   wait N MS                   waits until N are recorded or MS passed -> "count N"
 *   stats                       -> "stats {...}" (this handle's jsonbus_stats, on one line)
 *   ends                        -> "ends R1 R2 ..." end reasons of the recording subscriptions
 *                               in order ("-": not ended)
 *   dump FILE                   writes "SUB SEQ PUBLISHED_NS RECEIVED_NS TOPIC PAYLOAD" lines
 *                               -> "dumped N OVERLAPS THREADS" (OVERLAPS: a callback that began
 *                               while the same subscription's was running; THREADS: distinct
 *                               threads that ran recording callbacks)
 *   serve-at NS OPTIONS         waits until jsonbus_now_ns() >= NS, then jsonbus_serve(NAME)
 *                               -> "serve STATUS"
 *   quit                        jsonbus_free and exit 0
 * A failed check ends the process with status 1 (check.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "check.h"


#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static jsonbus *bus;
static const char *bus_name;

/* ---- output: whole lines, from any thread ---- */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...) {
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    line[n++] = '\n';
    pthread_mutex_lock(&out_lock);
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = write(1, line + off, (size_t)n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _Exit(5); /* the test is gone */
        off += (size_t)w;
    }
    pthread_mutex_unlock(&out_lock);
}

static const char *status(int32_t rc) { return jsonbus_status_name(rc); }
static const char *opt(const char *s) { return (s == NULL || strcmp(s, "-") == 0) ? NULL : s; }

/* ---- recording subscriptions ---- */
#define MAX_RECS 32
struct rec {
    int index;
    int64_t id;
    long spin_us;
    pthread_mutex_t lock;
    char **lines;
    size_t n, cap;
    atomic_int running;
    atomic_int overlaps;
    atomic_int end_reason; /* 0: not ended */
};
static struct rec recs[MAX_RECS];
static int nrecs;
static atomic_long recorded;

static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t seen_threads[64];
static int nseen;

static void note_thread(void) {
    pthread_t me = pthread_self();
    pthread_mutex_lock(&threads_lock);
    int known = 0;
    for (int i = 0; i < nseen; i++)
        if (pthread_equal(seen_threads[i], me)) known = 1;
    if (!known && nseen < 64) seen_threads[nseen++] = me;
    pthread_mutex_unlock(&threads_lock);
}

static int32_t on_record(const jsonbus_message *m, void *user_data) {
    struct rec *r = user_data;
    uint64_t now = jsonbus_now_ns();
    if (atomic_fetch_add(&r->running, 1) != 0) atomic_fetch_add(&r->overlaps, 1);
    note_thread();
    size_t size = m->topic_len + m->json_len + 100;
    char *line = malloc(size);
    CHECK(line != NULL);
    snprintf(line, size, "%d %llu %llu %llu %s %s", r->index, (unsigned long long)m->seq,
             (unsigned long long)m->published_ns, (unsigned long long)now, m->topic, m->json);
    pthread_mutex_lock(&r->lock);
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->lines = realloc(r->lines, r->cap * sizeof *r->lines);
        CHECK(r->lines != NULL);
    }
    r->lines[r->n++] = line;
    pthread_mutex_unlock(&r->lock);
    if (r->spin_us > 0) spin_us(r->spin_us);
    atomic_fetch_sub(&r->running, 1);
    atomic_fetch_add(&recorded, 1);
    return JSONBUS_OK;
}

static void on_record_end(int64_t id, int32_t reason, void *user_data) {
    struct rec *r = user_data;
    CHECK_EQ(id, r->id);
    CHECK_MSG(atomic_load(&r->end_reason) == 0, "end notice of subscription %lld ran twice",
              (long long)id);
    atomic_store(&r->end_reason, reason);
}

static void cmd_sub(const char *pattern, const char *options, long spin) {
    CHECK(nrecs < MAX_RECS);
    struct rec *r = &recs[nrecs];
    r->index = nrecs;
    r->spin_us = spin;
    pthread_mutex_init(&r->lock, NULL);
    /* the id is needed by the end notice: set before any callback can run (a message can only
     * arrive after the subscription is registered, which the call waits for) */
    int64_t id = jsonbus_subscribe_with(bus, pattern, opt(options), on_record, on_record_end, r);
    if (id <= 0) {
        say("sub %s %s", status((int32_t)id), jsonbus_last_error());
        return;
    }
    r->id = id;
    nrecs++;
    say("sub %lld", (long long)id);
}

/* ---- other kinds of callbacks ---- */
static int32_t on_republish(const jsonbus_message *m, void *user_data) {
    const char *topic = user_data;
    return jsonbus_publish(bus, topic, m->json, m->json_len);
}

static int32_t on_echo(const jsonbus_message *m, void *user_data) {
    (void)user_data;
    size_t size = m->json_len + 64;
    char *answer = malloc(size);
    CHECK(answer != NULL);
    int n = snprintf(answer, size, "{\"pid\":%ld,\"req\":%s}", (long)getpid(), m->json);
    int32_t rc = jsonbus_reply(bus, m, answer, (size_t)n);
    free(answer);
    return rc;
}

static int32_t on_hold(const jsonbus_message *m, void *user_data) {
    (void)user_data;
    say("holding %llu", (unsigned long long)m->seq);
    for (;;) sleep_ms(1000); /* until the test kills this process */
    return JSONBUS_OK;
}

static int32_t on_nothing(const jsonbus_message *m, void *user_data) {
    (void)m;
    (void)user_data;
    return JSONBUS_OK;
}

static void say_sub(int64_t id) {
    if (id <= 0) say("sub %s %s", status((int32_t)id), jsonbus_last_error());
    else say("sub %lld", (long long)id);
}

/* ---- commands ---- */
static jsonbus_message *taken[4096];
static int ntaken;

static void cmd_take(int64_t id, int k) {
    int got = 0;
    int32_t rc = JSONBUS_OK;
    while (got < k) {
        jsonbus_message *m = NULL;
        rc = jsonbus_next(bus, id, 10000, &m);
        if (rc != JSONBUS_OK) break;
        CHECK(ntaken < 4096);
        taken[ntaken++] = m; /* held until this process ends */
        got++;
    }
    say("pulled %d %s", got, status(rc));
}

static int make_payload(char *buf, size_t n, int id, long i) {
    return snprintf(buf, n, "{\"t\":%d,\"n\":%ld,\"ts\":%llu}", id, i,
                    (unsigned long long)jsonbus_now_ns());
}

static void cmd_publish(const char *topic, long count, int id, double rate) {
    char json[128];
    long ok = 0;
    int32_t first = JSONBUS_OK;
    double start = now_ms();
    for (long i = 0; i < count; i++) {
        if (rate > 0) { /* sleep, not spin: the other processes need the CPUs */
            double due = start + (double)i * 1000.0 / rate;
            double left = due - now_ms();
            if (left > 0) sleep_us((long)(left * 1000.0));
        }
        int n = make_payload(json, sizeof json, id, i);
        int32_t rc = jsonbus_publish(bus, topic, json, (size_t)n);
        if (rc != JSONBUS_OK) {
            first = rc;
            fprintf(stderr, "process_peer %ld: publish %ld on %s: %s: %s\n", (long)getpid(), i,
                    topic, status(rc), jsonbus_last_error());
            break;
        }
        ok++;
    }
    say("published %ld %s", ok, status(first));
}

static void cmd_spam(const char *topic, int id) {
    char json[128];
    for (long i = 0;; i++) {
        int n = make_payload(json, sizeof json, id, i);
        int32_t rc = jsonbus_publish(bus, topic, json, (size_t)n);
        if (rc != JSONBUS_OK) {
            say("spam-failed %ld %s", i, status(rc));
            return;
        }
        if (i == 999) say("spamming");
    }
}

static void cmd_request(const char *topic, const char *json, int ms) {
    char *reply = NULL;
    size_t len = 0;
    double t0 = now_ms();
    int32_t rc = jsonbus_request(bus, topic, json, strlen(json), ms, &reply, &len);
    double el = now_ms() - t0;
    if (rc == JSONBUS_OK) {
        CHECK(reply != NULL);
        CHECK_EQ(strlen(reply), len);
        say("reply %s %.1f %s", status(rc), el, reply);
        jsonbus_string_free(reply);
    } else {
        say("reply %s %.1f -", status(rc), el);
    }
}

static void cmd_requests(const char *topic, long count, int id) {
    long matched = 0;
    int32_t first = JSONBUS_OK;
    for (long i = 0; i < count; i++) {
        char req[64], want[96];
        int n = snprintf(req, sizeof req, "{\"t\":%d,\"n\":%ld}", id, i);
        snprintf(want, sizeof want, "\"req\":%s}", req);
        char *reply = NULL;
        int32_t rc = jsonbus_request(bus, topic, req, (size_t)n, 5000, &reply, NULL);
        if (rc != JSONBUS_OK) {
            if (first == JSONBUS_OK) first = rc;
            continue;
        }
        if (strstr(reply, want) != NULL) matched++;
        else fprintf(stderr, "process_peer: request %s got the reply %s\n", req, reply);
        jsonbus_string_free(reply);
    }
    say("requests %ld %s", matched, status(first));
}

static void cmd_until_disconnected(const char *topic, int ms) {
    double t0 = now_ms();
    long oks = 0;
    int32_t rc;
    for (;;) {
        rc = jsonbus_publish(bus, topic, "{\"u\":1}", 7);
        if (rc != JSONBUS_OK || now_ms() - t0 > ms) break;
        oks++;
        sleep_ms(1);
    }
    double el = now_ms() - t0;
    int64_t sub = jsonbus_subscribe(bus, "after.>", on_nothing, NULL);
    int32_t flush = jsonbus_flush(bus, 1000);
    char *reply = NULL;
    int32_t req = jsonbus_request(bus, "after.req", "1", 1, 1000, &reply, NULL);
    if (reply) jsonbus_string_free(reply);
    say("disconnected %s %s %s %s %.1f %ld", status(rc), sub > 0 ? "JSONBUS_OK" : status((int32_t)sub),
        status(flush), status(req), el, oks);
}

static void cmd_dump(const char *file) {
    FILE *f = fopen(file, "w");
    CHECK_MSG(f != NULL, "fopen(%s): %s", file, strerror(errno));
    long n = 0, overlaps = 0;
    for (int i = 0; i < nrecs; i++) {
        struct rec *r = &recs[i];
        pthread_mutex_lock(&r->lock);
        for (size_t k = 0; k < r->n; k++) {
            fprintf(f, "%s\n", r->lines[k]);
            n++;
        }
        pthread_mutex_unlock(&r->lock);
        overlaps += atomic_load(&r->overlaps);
    }
    CHECK(fclose(f) == 0);
    pthread_mutex_lock(&threads_lock);
    int threads = nseen;
    pthread_mutex_unlock(&threads_lock);
    say("dumped %ld %ld %d", n, overlaps, threads);
}

static void cmd_ends(void) {
    char line[2048] = "ends";
    for (int i = 0; i < nrecs; i++) {
        int r = atomic_load(&recs[i].end_reason);
        size_t len = strlen(line);
        snprintf(line + len, sizeof line - len, " %s", r ? jsonbus_end_reason_name(r) : "-");
    }
    say("%s", line);
}

static void cmd_stats(void) {
    char *s = jsonbus_stats(bus);
    if (s == NULL) {
        say("stats %s", status(jsonbus_last_status()));
        return;
    }
    say("stats %s", s);
    jsonbus_string_free(s);
}

static void cmd_serve_at(unsigned long long at, const char *options) {
    while (jsonbus_now_ns() < at) {
    }
    int32_t rc = jsonbus_serve(bus, bus_name, opt(options));
    say("serve %s", status(rc));
}

static void quit(void) {
    jsonbus_free(bus);
    for (int i = 0; i < ntaken; i++) jsonbus_message_release(taken[i]);
    exit(0);
}

static void free_user_data(int64_t id, int32_t reason, void *user_data) {
    (void)id;
    (void)reason;
    free(user_data);
}

static void command_loop(void) {
    char line[4096];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *save = NULL;
        char *w[8] = {0};
        int nw = 0;
        for (char *tok = strtok_r(line, " ", &save); tok && nw < 8; tok = strtok_r(NULL, " ", &save))
            w[nw++] = tok;
        if (nw == 0) continue;
        const char *c = w[0];
#define NEED(k)                                                                            \
    do {                                                                                   \
        if (nw < (k) + 1) FAIL("command %s needs %d arguments", c, k);                     \
    } while (0)
        if (strcmp(c, "sub") == 0) {
            NEED(1);
            cmd_sub(w[1], w[2], 0);
        } else if (strcmp(c, "slowsub") == 0) {
            NEED(2);
            cmd_sub(w[1], NULL, atol(w[2]));
        } else if (strcmp(c, "republish") == 0) {
            NEED(2);
            /* the topic to republish on is freed by the end notice */
            say_sub(jsonbus_subscribe_with(bus, w[1], NULL, on_republish, free_user_data,
                                           strdup(w[2])));
        } else if (strcmp(c, "echo") == 0) {
            NEED(1);
            say_sub(jsonbus_subscribe(bus, w[1], on_echo, NULL));
        } else if (strcmp(c, "hold") == 0) {
            NEED(1);
            say_sub(jsonbus_subscribe(bus, w[1], on_hold, NULL));
        } else if (strcmp(c, "pullsub") == 0) {
            NEED(1);
            say_sub(jsonbus_subscribe_pull(bus, w[1], NULL));
        } else if (strcmp(c, "take") == 0) {
            NEED(2);
            cmd_take(atoll(w[1]), atoi(w[2]));
        } else if (strcmp(c, "publish") == 0) {
            NEED(4);
            cmd_publish(w[1], atol(w[2]), atoi(w[3]), atof(w[4]));
        } else if (strcmp(c, "spam") == 0) {
            NEED(2);
            cmd_spam(w[1], atoi(w[2]));
        } else if (strcmp(c, "flush") == 0) {
            NEED(1);
            double t0 = now_ms();
            int32_t rc = jsonbus_flush(bus, atoi(w[1]));
            say("flush %s %.1f", status(rc), now_ms() - t0);
        } else if (strcmp(c, "request") == 0) {
            NEED(3);
            cmd_request(w[1], w[2], atoi(w[3]));
        } else if (strcmp(c, "requests") == 0) {
            NEED(3);
            cmd_requests(w[1], atol(w[2]), atoi(w[3]));
        } else if (strcmp(c, "until-disconnected") == 0) {
            NEED(2);
            cmd_until_disconnected(w[1], atoi(w[2]));
        } else if (strcmp(c, "count") == 0) {
            say("count %ld", atomic_load(&recorded));
        } else if (strcmp(c, "wait") == 0) {
            NEED(2);
            long want = atol(w[1]);
            double end = now_ms() + atoi(w[2]);
            while (atomic_load(&recorded) < want && now_ms() < end) sleep_us(200);
            say("count %ld", atomic_load(&recorded));
        } else if (strcmp(c, "stats") == 0) {
            cmd_stats();
        } else if (strcmp(c, "ends") == 0) {
            cmd_ends();
        } else if (strcmp(c, "dump") == 0) {
            NEED(1);
            cmd_dump(w[1]);
        } else if (strcmp(c, "serve-at") == 0) {
            NEED(1);
            cmd_serve_at(strtoull(w[1], NULL, 10), w[2]);
        } else if (strcmp(c, "quit") == 0) {
            quit();
        } else {
            FAIL("unknown command \"%s\"", c);
        }
#undef NEED
    }
    quit();
}

/* Descriptors other than 0, 1 and 2 this process was started with. */
static int inherited_descriptors(void) {
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    int n = 0, self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd <= 2 || fd == self) continue;
        char path[64], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(path, target, sizeof target - 1);
        target[len > 0 ? len : 0] = '\0';
        fprintf(stderr, "process_peer %ld: started with descriptor %d open: %s\n", (long)getpid(),
                fd, target);
        n++;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: process_peer NAME peer|hub|new|probe|probe-as-nobody [ARGS...]\n");
        return 2;
    }
    bus_name = argv[1];
    const char *mode = argv[2];
    const char *a1 = argc > 3 ? argv[3] : NULL, *a2 = argc > 4 ? argv[4] : NULL;
    int inherited = inherited_descriptors();
    prctl(PR_SET_TIMERSLACK, 1UL); /* paced publishing sleeps a few microseconds at a time */

    if (strcmp(mode, "probe") == 0 || strcmp(mode, "probe-as-nobody") == 0) {
        int nobody = strcmp(mode, "probe-as-nobody") == 0;
        if (nobody) {
            gid_t g = 65534;
            if (setgroups(1, &g) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
                say("probe cannot become nobody: %s", strerror(errno));
                return 3;
            }
        }
        jsonbus *h = jsonbus_attach(bus_name, "{\"connect_timeout_ms\":0}");
        int32_t attach_rc = h ? JSONBUS_OK : jsonbus_last_status();
        fprintf(stderr, "process_peer probe: attach: %s %s\n", status(attach_rc),
                h ? "" : jsonbus_last_error());
        if (h) jsonbus_free(h);
        if (nobody) {
            say("probe attach=%s", status(attach_rc));
            return 0;
        }
        jsonbus *b = jsonbus_new(NULL);
        CHECK(b != NULL);
        int32_t serve_rc = jsonbus_serve(b, bus_name, NULL);
        fprintf(stderr, "process_peer probe: serve: %s %s\n", status(serve_rc),
                serve_rc ? jsonbus_last_error() : "");
        jsonbus_free(b);
        say("probe attach=%s serve=%s", status(attach_rc), status(serve_rc));
        return 0;
    }

    if (strcmp(mode, "peer") == 0) {
        bus = jsonbus_attach(bus_name, opt(a1));
        if (bus == NULL) {
            say("attach %s %s", status(jsonbus_last_status()), jsonbus_last_error());
            return 3;
        }
    } else if (strcmp(mode, "hub") == 0 || strcmp(mode, "new") == 0) {
        int hub = strcmp(mode, "hub") == 0;
        bus = jsonbus_new(opt(hub ? a2 : a1));
        if (bus == NULL) {
            say("new %s %s", status(jsonbus_last_status()), jsonbus_last_error());
            return 3;
        }
        if (hub) {
            int32_t rc = jsonbus_serve(bus, bus_name, opt(a1));
            if (rc != JSONBUS_OK) {
                say("serve %s %s", status(rc), jsonbus_last_error());
                return 3;
            }
        }
    } else {
        fprintf(stderr, "process_peer: unknown mode %s\n", mode);
        return 2;
    }
    say("ready inherited=%d", inherited);
    command_loop();
    return 0;
}
