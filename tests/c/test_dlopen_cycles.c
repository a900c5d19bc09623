/*
 * test_dlopen_cycles: load - use - unload, 50 times by default (contract guarantee 10).
 *
 * Each cycle dlopens the shared library, creates buses with dispatcher threads, publishes
 * through subscriptions (also from two host threads at once, while this one flushes), uses the
 * default bus, flushes, shuts everything down, closes and frees the buses and dlcloses the
 * library. Two kinds of host threads call every function of the API in each cycle and so hold
 * whatever thread-locals the library makes: one thread that lives through every cycle (it is
 * still running at each dlclose), and, with --host-threads-exit, one per cycle that ends only
 * after the dlclose (a thread-local destructor left behind would then run in unmapped code and
 * crash); with that option the resident one ends after the last dlclose too, else it is still
 * running when the process exits.
 * After every cycle the process's thread count (/proc/self/task; Windows: Toolhelp32) must be
 * back to what it was before the first one. It prints whether the library was still mapped
 * (/proc/self/maps; Windows: GetModuleHandleExA and VirtualQuery, see dl_shim.h) after
 * dlclose; with --require-unmap that is an error too, since the contract says the library is
 * "really unmapped". With --check-heap the heap in use (mallinfo2; Windows: HeapWalk) must not grow with the cycles
 * (at most 64 bytes a cycle on average after the first 5, to stay clear of glibc's own
 * bookkeeping; valgrind in tests/sanitizers.sh counts to the byte).
 *
 * Usage: test_dlopen_cycles [--require-unmap] [--check-heap] [--host-threads-exit] [--cycles N]
 *                           [path/to/libjsonbus.so]
 */
#define CHECK_NO_JSONBUS
#include "check.h"

#include "dl_shim.h"

#ifdef _WIN32
#define PSAPI_VERSION 2 /* K32GetProcessMemoryInfo, in kernel32 */
#include <psapi.h>
#else
#include <malloc.h>
#endif

typedef const char *(*version_fn)(void);
typedef const char *(*last_error_fn)(void);
typedef const char *(*status_name_fn)(int32_t);
typedef jsonbus *(*new_fn)(const char *);
typedef int64_t (*subscribe_fn)(jsonbus *, const char *, jsonbus_callback, void *);
typedef int32_t (*unsubscribe_fn)(jsonbus *, int64_t);
typedef int32_t (*publish_fn)(jsonbus *, const char *, const char *, size_t);
typedef int32_t (*flush_fn)(jsonbus *, int32_t);
typedef int32_t (*close_fn)(jsonbus *, int32_t);
typedef void (*free_fn)(jsonbus *);
typedef int32_t (*shutdown_fn)(int32_t);
typedef jsonbus *(*default_fn)(void);
typedef int64_t (*register_callback_fn)(jsonbus_callback, void *);
typedef int32_t (*push_json_fn)(const char *);
typedef char *(*stats_fn)(jsonbus *);
typedef void (*string_free_fn)(char *);
typedef int32_t (*add_fn)(int32_t, int32_t);
typedef int32_t (*last_status_fn)(void);
typedef uint64_t (*now_ns_fn)(void);

struct api {
    version_fn version;
    last_error_fn last_error;
    status_name_fn status_name;
    new_fn new_bus;
    subscribe_fn subscribe;
    unsubscribe_fn unsubscribe;
    publish_fn publish;
    flush_fn flush;
    close_fn close;
    free_fn free_bus;
    shutdown_fn shutdown;
    default_fn default_bus;
    register_callback_fn register_callback;
    push_json_fn push_json;
    stats_fn stats;
    string_free_fn string_free;
    add_fn add;
    last_status_fn last_status;
    now_ns_fn now_ns;
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

#define API_OK(api, expr)                                                                  \
    do {                                                                                   \
        int64_t rc_ = (expr);                                                              \
        if (rc_ < 0)                                                                       \
            FAIL("%s returned %s: %s", #expr, (api).status_name((int32_t)rc_),             \
                 (api).last_error());                                                      \
    } while (0)

static atomic_int received;

static int32_t on_message(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    atomic_fetch_add((atomic_int *)user_data, 1);
    return JSONBUS_OK;
}

static int32_t slow_message(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    sleep_us(500);
    atomic_fetch_add((atomic_int *)user_data, 1);
    return JSONBUS_OK;
}

static long rss_kb(void) {
#ifdef _WIN32
    PROCESS_MEMORY_COUNTERS pmc;
    if (!GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc)) return -1;
    return (long)(pmc.WorkingSetSize / 1024);
#else
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    return kb;
#endif
}

static void load_api(void *lib, struct api *api) {
    LOAD(version, "jsonbus_version");
    LOAD(last_error, "jsonbus_last_error");
    LOAD(status_name, "jsonbus_status_name");
    LOAD(new_bus, "jsonbus_new");
    LOAD(subscribe, "jsonbus_subscribe");
    LOAD(unsubscribe, "jsonbus_unsubscribe");
    LOAD(publish, "jsonbus_publish");
    LOAD(flush, "jsonbus_flush");
    LOAD(close, "jsonbus_close");
    LOAD(free_bus, "jsonbus_free");
    LOAD(shutdown, "jsonbus_shutdown");
    LOAD(default_bus, "jsonbus_default");
    LOAD(register_callback, "register_callback");
    LOAD(push_json, "push_json");
    LOAD(stats, "jsonbus_stats");
    LOAD(string_free, "jsonbus_string_free");
    LOAD(add, "add");
    LOAD(last_status, "jsonbus_last_status");
    LOAD(now_ns, "jsonbus_now_ns");
}

/* ---- host threads that touch every function, then live on past the dlclose ---- */

/* Calls every function of the API from this thread, failing ones too (so that the last-error
 * thread-locals are written): whatever thread-local state the library keeps, this thread
 * now has it. */
static void use_everything(const struct api *api, jsonbus *shared_bus) {
    CHECK(api->version()[0] != '\0');
    CHECK(api->status_name(-1) != NULL);
    CHECK_EQ(api->add(2, 3), 5);
    CHECK(api->now_ns() > 0);
    CHECK(api->publish(NULL, "x", "1", 1) < 0); /* sets the last error */
    CHECK(api->last_status() < 0);
    CHECK(api->last_error()[0] != '\0');
    CHECK(api->new_bus("{\"nope\":1}") == NULL);
    jsonbus *b = api->new_bus("{\"dispatcher_threads\":1}");
    CHECK(b != NULL);
    atomic_int n = 0;
    int64_t id = api->subscribe(b, ">", on_message, &n);
    API_OK(*api, id);
    for (int i = 0; i < 20; i++) API_OK(*api, api->publish(b, "host.t", "{\"h\":1}", 7));
    API_OK(*api, api->flush(b, 5000));
    CHECK_EQ(atomic_load(&n), 20);
    char *st = api->stats(b);
    CHECK(st != NULL);
    api->string_free(st);
    API_OK(*api, api->unsubscribe(b, id));
    CHECK(api->unsubscribe(b, id) < 0);
    API_OK(*api, api->close(b, -1));
    api->free_bus(b);
    /* the shared bus of this cycle, and the default bus (shut down by main later) */
    for (int i = 0; i < 20; i++) API_OK(*api, api->publish(shared_bus, "cycle.h", "[1]", 3));
    API_OK(*api, api->flush(shared_bus, 5000));
    CHECK(api->default_bus() != NULL);
    API_OK(*api, api->push_json("{\"from\":\"host\"}"));
    API_OK(*api, api->register_callback(on_message, &received));
    API_OK(*api, api->flush(api->default_bus(), 5000));
}

struct host {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    const struct api *api; /* set: work to do */
    jsonbus *bus;
    int done;   /* the work is done */
    int finish; /* end the thread */
};

static void host_wait_work(struct host *h) {
    pthread_mutex_lock(&h->lock);
    while (h->api == NULL && !h->finish) pthread_cond_wait(&h->cv, &h->lock);
    pthread_mutex_unlock(&h->lock);
}

static void *host_thread(void *arg) {
    struct host *h = arg;
    for (;;) {
        host_wait_work(h);
        pthread_mutex_lock(&h->lock);
        const struct api *api = h->api;
        jsonbus *bus = h->bus;
        int finish = h->finish && api == NULL;
        pthread_mutex_unlock(&h->lock);
        if (finish) break;
        use_everything(api, bus);
        pthread_mutex_lock(&h->lock);
        h->api = NULL;
        h->done = 1;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->lock);
    }
    return NULL;
}

/* Gives `h` one round of work and waits until it is done (the thread lives on). */
static void host_run(struct host *h, const struct api *api, jsonbus *bus) {
    pthread_mutex_lock(&h->lock);
    h->done = 0;
    h->api = api;
    h->bus = bus;
    pthread_cond_broadcast(&h->cv);
    while (!h->done) pthread_cond_wait(&h->cv, &h->lock);
    pthread_mutex_unlock(&h->lock);
}

static void host_finish(struct host *h) {
    pthread_mutex_lock(&h->lock);
    h->finish = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->lock);
}

/* ---- traffic from several host threads at once ---- */
struct traffic {
    const struct api *api;
    jsonbus *bus;
};
static void *publisher_thread(void *arg) {
    struct traffic *t = arg;
    for (int i = 0; i < 200; i++) API_OK(*t->api, t->api->publish(t->bus, "cycle.p", "{\"p\":1}", 7));
    return NULL;
}

static size_t heap_in_use(void) {
#ifdef _WIN32
    /* the busy blocks of every heap of the process (std's allocator and msvcrt's malloc) */
    HANDLE heaps[64];
    DWORD n = GetProcessHeaps(64, heaps);
    if (n > 64) FAIL("%lu heaps", (unsigned long)n);
    size_t total = 0;
    for (DWORD i = 0; i < n; i++) {
        if (!HeapLock(heaps[i])) continue;
        PROCESS_HEAP_ENTRY e;
        e.lpData = NULL;
        while (HeapWalk(heaps[i], &e))
            if (e.wFlags & PROCESS_HEAP_ENTRY_BUSY) total += e.cbData;
        HeapUnlock(heaps[i]);
    }
    return total;
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

int main(int argc, char **argv) {
    int require_unmap = 0, check_heap = 0, host_exit = 0, cycles = 50;
    const char *path = JSONBUS_LIBRARY_PATH;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--require-unmap") == 0) require_unmap = 1;
        else if (strcmp(argv[i], "--check-heap") == 0) check_heap = 1;
        else if (strcmp(argv[i], "--host-threads-exit") == 0) host_exit = 1;
        else if (strcmp(argv[i], "--cycles") == 0 && i + 1 < argc) cycles = atoi(argv[++i]);
        else path = argv[i];
    }
    CHECK(cycles >= 1);

    /* the host thread that lives through every cycle */
    static struct host resident = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL,
                                   NULL, 0, 0};
    pthread_t resident_th;
    START_THREAD(resident_th, host_thread, &resident);

    int threads0 = thread_count();
    CHECK(threads0 >= 2);
    long rss0 = -1, rss_after_first = -1;
    size_t heap_warm = 0;
    int warm_cycle = cycles >= 1000 ? cycles / 5 : 4;
    int still_mapped = 0;
    long long messages = 0;
    rss0 = rss_kb();
    double t0 = now_ms();
    for (int cycle = 0; cycle < cycles; cycle++) {
        CHECK_MSG(library_mapped(path) == 0 || cycle > 0,
                  "library mapped before the first dlopen");
        void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        CHECK_MSG(lib != NULL, "cycle %d: dlopen(%s): %s", cycle, path, dlerror());
        struct api api;
        load_api(lib, &api);
        if (cycle == 0) printf("jsonbus %s from %s\n", api.version(), path);

        /* a bus with 2 dispatcher threads, closed then freed */
        atomic_store(&received, 0);
        jsonbus *a = api.new_bus("{\"dispatcher_threads\":2}");
        CHECK_MSG(a != NULL, "jsonbus_new: %s", api.last_error());
        atomic_int received_a = 0;
        API_OK(api, api.subscribe(a, "cycle.>", on_message, &received_a));
        for (int i = 0; i < 10; i++) API_OK(api, api.publish(a, "cycle.a", "{\"i\":1}", 7));
        API_OK(api, api.flush(a, 5000));
        CHECK_EQ(atomic_load(&received_a), 10);
        char *s = api.stats(a);
        CHECK(s != NULL);
        api.string_free(s);

        /* two host threads publish into it at once while this one flushes */
        struct traffic tr = {&api, a};
        pthread_t pub[2];
        for (int i = 0; i < 2; i++) START_THREAD(pub[i], publisher_thread, &tr);
        for (int i = 0; i < 5; i++) API_OK(api, api.flush(a, 5000));
        for (int i = 0; i < 2; i++) JOIN_THREAD(pub[i]);
        API_OK(api, api.flush(a, 5000));
        CHECK_EQ(atomic_load(&received_a), 410);

        /* the resident host thread and a short-lived one use every function */
        host_run(&resident, &api, a);
        static struct host shortlived;
        pthread_t short_th;
        if (host_exit) {
            memset(&shortlived, 0, sizeof shortlived);
            pthread_mutex_init(&shortlived.lock, NULL);
            pthread_cond_init(&shortlived.cv, NULL);
            START_THREAD(short_th, host_thread, &shortlived);
            host_run(&shortlived, &api, a);
        } else {
            host_run(&resident, &api, a);
        }
        API_OK(api, api.flush(a, 5000));
        CHECK_EQ(atomic_load(&received_a), 450);

        /* a second bus, freed while still open (free closes it) */
        atomic_int received_b = 0;
        jsonbus *b = api.new_bus(NULL);
        CHECK_MSG(b != NULL, "jsonbus_new: %s", api.last_error());
        API_OK(api, api.subscribe(b, ">", on_message, &received_b));
        for (int i = 0; i < 10; i++) API_OK(api, api.publish(b, "x", "[]", 2));

        /* a full bus: this thread waits in publish, flush, unsubscribe and close */
        atomic_int received_c = 0;
        jsonbus *c = api.new_bus("{\"queue_capacity\":1}");
        CHECK_MSG(c != NULL, "jsonbus_new: %s", api.last_error());
        int64_t slow = api.subscribe(c, "slow", slow_message, &received_c);
        API_OK(api, slow);
        for (int i = 0; i < 5; i++) API_OK(api, api.publish(c, "slow", "1", 1));
        API_OK(api, api.flush(c, -1));
        API_OK(api, api.publish(c, "slow", "2", 1));
        API_OK(api, api.unsubscribe(c, slow));
        API_OK(api, api.subscribe(c, "slow", slow_message, &received_c));
        for (int i = 0; i < 3; i++) API_OK(api, api.publish(c, "slow", "3", 1));
        API_OK(api, api.close(c, -1));
        api.free_bus(c);
        CHECK(atomic_load(&received_c) >= 8);

        /* the default bus through the quick API */
        atomic_int received_default = 0;
        API_OK(api, api.register_callback(on_message, &received_default));
        for (int i = 0; i < 10; i++) API_OK(api, api.push_json("{\"quick\":true}"));
        API_OK(api, api.flush(api.default_bus(), 5000));
        CHECK_EQ(atomic_load(&received_default), 10);

        API_OK(api, api.shutdown(-1));
        API_OK(api, api.close(a, -1));
        api.free_bus(a);
        api.free_bus(b);
        CHECK_EQ(atomic_load(&received_b), 10);
        messages += 450 + 10 + atomic_load(&received_c) + 10 + 1;

        /* the short-lived host thread is still alive here: +1 */
        int extra = host_exit; /* the short-lived host thread is still alive here */
        int threads_before_unload = wait_thread_count(threads0 + extra, 1000);
        memset(&api, 0, sizeof api);
        CHECK_MSG(dlclose(lib) == 0, "cycle %d: dlclose: %s", cycle, dlerror());
        int mapped = library_mapped(path);
        /* now the short-lived thread ends, after the library is gone */
        if (host_exit) {
            host_finish(&shortlived);
            JOIN_THREAD(short_th);
            pthread_mutex_destroy(&shortlived.lock);
            pthread_cond_destroy(&shortlived.cv);
        }
        int threads = wait_thread_count(threads0, 1000);
        if (threads != threads0 || threads_before_unload != threads0 + extra) print_threads();
        CHECK_MSG(threads_before_unload == threads0 + extra,
                  "cycle %d: %d threads after shutdown/close/free, %d expected", cycle,
                  threads_before_unload, threads0 + extra);
        CHECK_MSG(threads == threads0, "cycle %d: %d threads after dlclose, %d before loading",
                  cycle, threads, threads0);
        if (mapped) still_mapped++;
        if (cycle == 0) {
            rss_after_first = rss_kb();
            printf("after dlclose: library %s\n",
                   mapped ? "STILL MAPPED (not unloaded)" : "unmapped");
        }
        /* glibc's own heap (loader and thread bookkeeping) keeps growing for the first few
         * hundred cycles, then slowly; the baseline is taken once it has settled */
        if (cycle == warm_cycle || (cycles <= warm_cycle && cycle == cycles - 1))
            heap_warm = heap_in_use();
        if (require_unmap && mapped)
            FAIL("cycle %d: the library stayed mapped after dlclose (contract: \"really "
                 "unmapped from the process\")", cycle);
    }
    size_t heap_end = heap_in_use();
    /* the resident thread, which used the library in every cycle, ends last */
    if (host_exit) {
        host_finish(&resident);
        JOIN_THREAD(resident_th);
    }
    long rss1 = rss_kb();
    printf("%d cycles in %.1f s, %lld messages delivered: thread count back to %d after each; "
           "library still mapped after dlclose in %d of %d cycles; VmRSS %ld kB at start, %ld kB "
           "after cycle 1, %ld kB at end; heap in use %zu bytes after cycle %d, %zu at the end\n",
           cycles, (now_ms() - t0) / 1000, messages, threads0, still_mapped, cycles, rss0,
           rss_after_first, rss1, heap_warm, warm_cycle + 1, heap_end);
    /* a leak of a few hundred kB per cycle shows up over 50 cycles; under ASan (quarantine)
     * and valgrind (debug info of every load kept) RSS grows by itself: they check leaks */
    int instrumented = getenv("JSONBUS_SKIP_RSS_CHECK") != NULL;
#if defined(__SANITIZE_ADDRESS__)
    instrumented = 1;
#endif
    CHECK_MSG(instrumented || rss1 < 0 || rss_after_first < 0 || rss1 - rss_after_first < 16 * 1024,
              "VmRSS grew by %ld kB over %d load/unload cycles", rss1 - rss_after_first,
              cycles - 1);
    if (check_heap && cycles > warm_cycle + 1) {
        long long grew = (long long)heap_end - (long long)heap_warm;
        int n = cycles - warm_cycle - 1;
        CHECK_MSG(grew <= 64LL * n,
                  "the heap grew by %lld bytes over %d load/use/unload cycles (%.1f bytes a "
                  "cycle): the library leaks on unload",
                  grew, n, (double)grew / n);
    }
    printf("ok\n");
    return 0;
}
