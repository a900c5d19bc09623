/*
 * test_process_unload: an attached handle leaves nothing behind, so the library can still be
 * unloaded (contract guarantees 27 and 10).
 *
 * A child process (process_peer, path in argv[1]) serves a bus. 20 times: dlopen the library,
 * jsonbus_attach to that bus (2 dispatcher threads), subscribe a callback and a pull
 * subscription, publish 100 messages, take them from the pull subscription, flush, check the
 * callback had all 100, stats, unsubscribe, close, free, dlclose. After each cycle: the
 * library is really unmapped (no libjsonbus line in /proc/self/maps), no memfd is mapped, the
 * threads and descriptors are those of before the first dlopen, the hub counts no peer, and
 * from the third cycle on the number of mappings does not grow.
 *
 * Usage: test_process_unload PATH/TO/process_peer [--cycles N] [path/to/libjsonbus.so]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define CHECK_NO_JSONBUS
#include "check.h"
#include "proc_check.h"


#include "dl_shim.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef jsonbus *(*attach_fn)(const char *, const char *);
typedef void (*free_fn)(jsonbus *);
typedef int32_t (*close_fn)(jsonbus *, int32_t);
typedef int64_t (*subscribe_fn)(jsonbus *, const char *, jsonbus_callback, void *);
typedef int64_t (*subscribe_pull_fn)(jsonbus *, const char *, const char *);
typedef int32_t (*next_fn)(jsonbus *, int64_t, int32_t, jsonbus_message **);
typedef void (*release_fn)(jsonbus_message *);
typedef int32_t (*unsubscribe_fn)(jsonbus *, int64_t);
typedef int32_t (*publish_fn)(jsonbus *, const char *, const char *, size_t);
typedef int32_t (*flush_fn)(jsonbus *, int32_t);
typedef char *(*stats_fn)(jsonbus *);
typedef void (*string_free_fn)(char *);
typedef const char *(*last_error_fn)(void);
typedef const char *(*status_name_fn)(int32_t);
typedef int32_t (*last_status_fn)(void);
typedef const char *(*version_fn)(void);

struct api {
    attach_fn attach;
    free_fn free_bus;
    close_fn close;
    subscribe_fn subscribe;
    subscribe_pull_fn subscribe_pull;
    next_fn next;
    release_fn release;
    unsubscribe_fn unsubscribe;
    publish_fn publish;
    flush_fn flush;
    stats_fn stats;
    string_free_fn string_free;
    last_error_fn last_error;
    status_name_fn status_name;
    last_status_fn last_status;
    version_fn version;
};

static void *sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (p == NULL) FAIL("dlsym(%s): %s", name, dlerror());
    return p;
}
#define LOAD(field, name)                                                                  \
    do {                                                                                   \
        void *p_ = sym(lib, name);                                                         \
        memcpy(&api->field, &p_, sizeof p_);                                               \
    } while (0)

static void load_api(void *lib, struct api *api) {
    LOAD(attach, "jsonbus_attach");
    LOAD(free_bus, "jsonbus_free");
    LOAD(close, "jsonbus_close");
    LOAD(subscribe, "jsonbus_subscribe");
    LOAD(subscribe_pull, "jsonbus_subscribe_pull");
    LOAD(next, "jsonbus_next");
    LOAD(release, "jsonbus_message_release");
    LOAD(unsubscribe, "jsonbus_unsubscribe");
    LOAD(publish, "jsonbus_publish");
    LOAD(flush, "jsonbus_flush");
    LOAD(stats, "jsonbus_stats");
    LOAD(string_free, "jsonbus_string_free");
    LOAD(last_error, "jsonbus_last_error");
    LOAD(status_name, "jsonbus_status_name");
    LOAD(last_status, "jsonbus_last_status");
    LOAD(version, "jsonbus_version");
}

#define API_OK(api, expr)                                                                  \
    do {                                                                                   \
        int64_t rc_ = (expr);                                                              \
        if (rc_ < 0)                                                                       \
            FAIL("%s returned %s: %s", #expr, (api).status_name((int32_t)rc_),             \
                 (api).last_error());                                                      \
    } while (0)

static int32_t on_message(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    atomic_fetch_add((atomic_int *)user_data, 1);
    return JSONBUS_OK;
}



/* ---- the hub: process_peer NAME hub, driven through a pipe ---- */
static pid_t hub_pid;
static int hub_in = -1, hub_out = -1;
static char hub_buf[1 << 16];
static size_t hub_len;

static void hub_line(char *out, size_t n, int timeout_ms) {
    double end = now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(hub_buf, '\n', hub_len);
        if (nl) {
            size_t k = (size_t)(nl - hub_buf), c = k < n - 1 ? k : n - 1;
            memcpy(out, hub_buf, c);
            out[c] = '\0';
            memmove(hub_buf, nl + 1, hub_len - k - 1);
            hub_len -= k + 1;
            return;
        }
        double left = end - now_ms();
        if (left <= 0) FAIL("the hub said nothing in %d ms", timeout_ms);
        struct pollfd pf = {hub_out, POLLIN, 0};
        if (poll(&pf, 1, (int)left + 1) <= 0) continue;
        ssize_t got = read(hub_out, hub_buf + hub_len, sizeof hub_buf - hub_len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) FAIL("the hub (pid %d) ended", (int)hub_pid);
        hub_len += (size_t)got;
    }
}

static void start_hub(const char *peer, const char *name) {
    int in[2], out[2];
    CHECK(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0);
    pid_t parent = getpid();
    hub_pid = fork();
    CHECK(hub_pid >= 0);
    if (hub_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(99);
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl(peer, peer, name, "hub", (char *)NULL);
        _exit(98);
    }
    close(in[0]);
    close(out[1]);
    hub_in = in[1];
    hub_out = out[0];
    char l[256];
    hub_line(l, sizeof l, 10000);
    CHECK_MSG(strncmp(l, "ready", 5) == 0, "the hub said \"%s\"", l);
}

/* The hub's "peers" stat. */
static long long hub_peers(void) {
    CHECK(write(hub_in, "stats\n", 6) == 6);
    char l[8192];
    hub_line(l, sizeof l, 10000);
    const char *p = strstr(l, "\"peers\":");
    CHECK_MSG(p != NULL, "hub stats: %s", l);
    return strtoll(p + 8, NULL, 10);
}

static void stop_hub(void) {
    close(hub_in);
    int st = 0;
    double end = now_ms() + 10000;
    pid_t r;
    while ((r = waitpid(hub_pid, &st, WNOHANG)) == 0 && now_ms() < end) sleep_ms(1);
    if (r != hub_pid) {
        kill(hub_pid, SIGKILL);
        waitpid(hub_pid, &st, 0);
        FAIL("the hub did not exit within 10 s");
    }
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the hub ended with status 0x%x", (unsigned)st);
    close(hub_out);
}

static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) k++;
    closedir(d);
    return k;
}


int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_process_unload PATH/TO/process_peer [--cycles N] [lib]\n");
        return 2;
    }
    const char *peer = argv[1], *path = JSONBUS_LIBRARY_PATH;
    int cycles = 20;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--cycles") == 0 && i + 1 < argc) cycles = atoi(argv[++i]);
        else path = argv[i];
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    make_own_fds_cloexec();
    char rundir[256], namedir[300];
    snprintf(rundir, sizeof rundir, "/tmp/jsonbus-test-unload-XXXXXX");
    CHECK(mkdtemp(rundir) != NULL);
    CHECK(setenv("XDG_RUNTIME_DIR", rundir, 1) == 0);
    snprintf(namedir, sizeof namedir, "%s/jsonbus", rundir);
    const char *name = "unload";

    CHECK_MSG(library_mapped(path) == 0, "the library is mapped before the first dlopen");
    start_hub(peer, name);
    int threads0 = thread_count(), fds0 = fd_count(), memfd = 0, maps_base = -1;
    int maps0 = maps_count(&memfd);
    double t0 = now_ms();
    long delivered = 0;
    for (int cycle = 0; cycle < cycles; cycle++) {
        void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        CHECK_MSG(lib != NULL, "cycle %d: dlopen(%s): %s", cycle, path, dlerror());
        struct api api;
        load_api(lib, &api);
        if (cycle == 0) printf("jsonbus %s from %s\n", api.version(), path);

        jsonbus *h = api.attach(name, "{\"dispatcher_threads\":2,\"connect_timeout_ms\":2000}");
        CHECK_MSG(h != NULL, "cycle %d: jsonbus_attach: %s: %s", cycle,
                  api.status_name(api.last_status()), api.last_error());
        atomic_int n = 0;
        int64_t id = api.subscribe(h, "u.>", on_message, &n);
        API_OK(api, id);
        int64_t pull = api.subscribe_pull(h, "u.>", NULL);
        API_OK(api, pull);
        for (int i = 0; i < 100; i++) API_OK(api, api.publish(h, "u.x", "{\"u\":1}", 7));
        for (int i = 0; i < 100; i++) {
            jsonbus_message *m = NULL;
            API_OK(api, api.next(h, pull, 5000, &m));
            CHECK(m != NULL);
            api.release(m);
        }
        API_OK(api, api.flush(h, 5000));
        CHECK_MSG(atomic_load(&n) == 100, "cycle %d: %d of 100 callbacks after the flush", cycle,
                  atomic_load(&n));
        delivered += atomic_load(&n);
        char *s = api.stats(h);
        CHECK(s != NULL);
        api.string_free(s);
        API_OK(api, api.unsubscribe(h, pull));
        API_OK(api, api.unsubscribe(h, id));
        API_OK(api, api.close(h, 1000));
        api.free_bus(h);
        memset(&api, 0, sizeof api);
        CHECK_MSG(dlclose(lib) == 0, "cycle %d: dlclose: %s", cycle, dlerror());

        CHECK_MSG(library_mapped(path) == 0, "cycle %d: the library stayed mapped after dlclose",
                  cycle);
        int threads = wait_thread_count(threads0, 1000);
        if (threads != threads0) print_threads();
        CHECK_MSG(threads == threads0, "cycle %d: %d threads after dlclose, %d before", cycle,
                  threads, threads0);
        int fds = fd_count();
        CHECK_MSG(fds == fds0, "cycle %d: %d descriptors after dlclose, %d before", cycle, fds, fds0);
        int maps = maps_count(&memfd);
        CHECK_MSG(memfd == 0, "cycle %d: %d memfd mappings left", cycle, memfd);
        /* glibc keeps freed thread stacks and malloc arenas for reuse: the first cycles may add
         * mappings; from then on they must not grow */
        if (cycle == 1) maps_base = maps;
        if (cycle > 1 && MAPS_COUNTED_EXACTLY)
            CHECK_MSG(maps <= maps_base, "cycle %d: %d mappings, %d after cycle 2", cycle, maps,
                      maps_base);
        /* the hub no longer counts this process */
        double end = now_ms() + 1000;
        long long peers;
        while ((peers = hub_peers()) != 0 && now_ms() < end) sleep_ms(1);
        CHECK_MSG(peers == 0, "cycle %d: the hub still counts %lld peers after free", cycle, peers);
    }
    stop_hub();
    CHECK_MSG(dir_entries(namedir) == 0, "%s is not empty after the hub stopped", namedir);
    rmdir(namedir);
    CHECK_MSG(rmdir(rundir) == 0, "%s: %s", rundir, strerror(errno));
    printf("%d cycles in %.1f s, %ld messages delivered: library unmapped, threads %d, "
           "descriptors %d after each; mappings %d before, %d after cycle 2\n",
           cycles, (now_ms() - t0) / 1000, delivered, threads0, fds0, maps0, maps_base);
    printf("test_process_unload: ok\n");
    return 0;
}
