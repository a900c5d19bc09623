/*
 * test_tls_slots (Windows only): how many TLS slots one load/use/unload cycle of jsonbus.dll
 * leaves taken, and so how many cycles a process can do.
 *
 * On x86_64-pc-windows-gnu Rust's thread_local! has no native TLS: each thread-local of the
 * DLL (std's own, those of its dependencies and jsonbus's) takes an OS TLS index (TlsAlloc)
 * the first time it is used, and std never calls TlsFree, also not when the DLL is unloaded.
 * A process has 1088 indexes (64 + 1024 expansion slots), so after enough cycles the next
 * load cannot get one and std aborts the process ("out of TLS indexes").
 *
 * The free indexes are counted by probing: TlsAlloc until it fails, then TlsFree them all.
 * Each cycle loads the DLL, uses every kind of function from this thread and from a host
 * thread (a bus with dispatcher threads, callbacks, a pull subscription, a request and its
 * reply, a timer, the default bus and the quick API, failures that set the last error),
 * shuts everything down and unloads it. The test checks that every cycle leaks the same
 * number of indexes and no more than --max-leak (the documented limit, see README), and
 * prints how many cycles would fit.
 *
 * Usage: test_tls_slots [--cycles N] [--max-leak K] [--until-out] [path/to/jsonbus.dll]
 *   --until-out  cycles until fewer indexes are free than one cycle takes (then stops,
 *                before std would abort) and prints the count.
 */
#define CHECK_NO_JSONBUS
#include "../c/check.h"

#include "../c/dl_shim.h"

typedef jsonbus *(*new_fn)(const char *);
typedef int64_t (*subscribe_fn)(jsonbus *, const char *, jsonbus_callback, void *);
typedef int64_t (*subscribe_pull_fn)(jsonbus *, const char *, const char *);
typedef int32_t (*next_fn)(jsonbus *, int64_t, int32_t, jsonbus_message **);
typedef void (*message_release_fn)(jsonbus_message *);
typedef int32_t (*pull_fd_fn)(jsonbus *, int64_t);
typedef int32_t (*unsubscribe_fn)(jsonbus *, int64_t);
typedef int32_t (*publish_fn)(jsonbus *, const char *, const char *, size_t);
typedef int64_t (*publish_after_fn)(jsonbus *, const char *, const char *, size_t, int64_t);
typedef int32_t (*request_fn)(jsonbus *, const char *, const char *, size_t, int32_t, char **,
                              size_t *);
typedef int32_t (*reply_fn)(jsonbus *, const jsonbus_message *, const char *, size_t);
typedef int32_t (*flush_fn)(jsonbus *, int32_t);
typedef int32_t (*close_fn)(jsonbus *, int32_t);
typedef void (*free_fn)(jsonbus *);
typedef int32_t (*shutdown_fn)(int32_t);
typedef int32_t (*push_json_fn)(const char *);
typedef int64_t (*register_callback_fn)(jsonbus_callback, void *);
typedef char *(*stats_fn)(jsonbus *);
typedef void (*string_free_fn)(char *);
typedef const char *(*last_error_fn)(void);
typedef int32_t (*last_status_fn)(void);
typedef jsonbus *(*default_fn)(void);

static struct {
    new_fn new_bus;
    subscribe_fn subscribe;
    subscribe_pull_fn subscribe_pull;
    next_fn next;
    message_release_fn message_release;
    pull_fd_fn pull_fd;
    unsubscribe_fn unsubscribe;
    publish_fn publish;
    publish_after_fn publish_after;
    request_fn request;
    reply_fn reply;
    flush_fn flush;
    close_fn close;
    free_fn free_bus;
    shutdown_fn shutdown;
    push_json_fn push_json;
    register_callback_fn register_callback;
    stats_fn stats;
    string_free_fn string_free;
    last_error_fn last_error;
    last_status_fn last_status;
    default_fn default_bus;
} api;

#define LOAD(field, name)                                                                  \
    do {                                                                                   \
        void *p_ = dlsym(lib, name);                                                       \
        CHECK_MSG(p_ != NULL, "symbol %s: %s", name, dlerror());                           \
        memcpy(&api.field, &p_, sizeof p_);                                                \
    } while (0)

#define API_OK(expr)                                                                       \
    do {                                                                                   \
        long long rc_ = (long long)(expr);                                                 \
        CHECK_MSG(rc_ >= 0, "%s returned %lld: %s", #expr, rc_, api.last_error());         \
    } while (0)

/* Free TLS indexes of the process, by taking them all and giving them back. */
static int free_tls_slots(void) {
    static DWORD taken[4096];
    int n = 0;
    for (;;) {
        DWORD k = TlsAlloc();
        if (k == TLS_OUT_OF_INDEXES) break;
        CHECK_MSG(n < 4096, "more than 4096 TLS indexes");
        taken[n++] = k;
    }
    for (int i = 0; i < n; i++) CHECK(TlsFree(taken[i]));
    return n;
}

static jsonbus *g_bus;
static atomic_int received;

static int32_t on_message(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    atomic_fetch_add(&received, 1);
    return JSONBUS_OK;
}

static int32_t on_request(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    return api.reply(g_bus, msg, "\"pong\"", 6);
}

/* Every kind of call, failures too (the last-error thread-locals). */
static void use_everything(void) {
    CHECK(api.publish(NULL, "x", "1", 1) < 0);
    CHECK(api.last_status() < 0);
    CHECK(api.last_error()[0] != '\0');
    CHECK(api.new_bus("{\"nope\":1}") == NULL);
    for (int i = 0; i < 50; i++) API_OK(api.publish(g_bus, "t.x", "{\"i\":1}", 7));
    API_OK(api.flush(g_bus, 5000));
    char *reply = NULL;
    size_t len = 0;
    API_OK(api.request(g_bus, "ping", "1", 1, 5000, &reply, &len));
    CHECK(reply != NULL && len == 6);
    api.string_free(reply);
    int64_t pull = api.subscribe_pull(g_bus, "p", NULL);
    API_OK(pull);
    API_OK(api.publish(g_bus, "p", "2", 1));
    jsonbus_message *m = NULL;
    API_OK(api.next(g_bus, pull, 1000, &m));
    api.message_release(m);
    CHECK(api.pull_fd(g_bus, pull) < 0); /* UNSUPPORTED on Windows */
    API_OK(api.unsubscribe(g_bus, pull));
    API_OK(api.publish_after(g_bus, "t.later", "3", 1, 1));
    char *st = api.stats(g_bus);
    CHECK(st != NULL);
    api.string_free(st);
    CHECK(api.default_bus() != NULL);
    API_OK(api.push_json("{\"q\":1}"));
}

static atomic_int host_go, host_done, host_exit;
static void *host_thread(void *arg) {
    (void)arg;
    while (!atomic_load(&host_go)) sleep_us(100);
    use_everything();
    atomic_store(&host_done, 1);
    while (!atomic_load(&host_exit)) sleep_us(100); /* ends after the unload */
    return NULL;
}

static void *warm_thread(void *arg) {
    sleep_us(100);
    return arg;
}

static void cycle(const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(lib != NULL, "LoadLibrary(%s): %s", path, dlerror());
    LOAD(new_bus, "jsonbus_new");
    LOAD(subscribe, "jsonbus_subscribe");
    LOAD(subscribe_pull, "jsonbus_subscribe_pull");
    LOAD(next, "jsonbus_next");
    LOAD(message_release, "jsonbus_message_release");
    LOAD(pull_fd, "jsonbus_pull_fd");
    LOAD(unsubscribe, "jsonbus_unsubscribe");
    LOAD(publish, "jsonbus_publish");
    LOAD(publish_after, "jsonbus_publish_after");
    LOAD(request, "jsonbus_request");
    LOAD(reply, "jsonbus_reply");
    LOAD(flush, "jsonbus_flush");
    LOAD(close, "jsonbus_close");
    LOAD(free_bus, "jsonbus_free");
    LOAD(shutdown, "jsonbus_shutdown");
    LOAD(push_json, "push_json");
    LOAD(register_callback, "register_callback");
    LOAD(stats, "jsonbus_stats");
    LOAD(string_free, "jsonbus_string_free");
    LOAD(last_error, "jsonbus_last_error");
    LOAD(last_status, "jsonbus_last_status");
    LOAD(default_bus, "jsonbus_default");

    g_bus = api.new_bus("{\"dispatcher_threads\":2}");
    CHECK_MSG(g_bus != NULL, "jsonbus_new: %s", api.last_error());
    API_OK(api.subscribe(g_bus, "t.>", on_message, NULL));
    API_OK(api.subscribe(g_bus, "ping", on_request, NULL));
    API_OK(api.register_callback(on_message, NULL));

    pthread_t th;
    atomic_store(&host_go, 0);
    atomic_store(&host_done, 0);
    atomic_store(&host_exit, 0);
    START_THREAD(th, host_thread, NULL);
    use_everything();
    atomic_store(&host_go, 1);
    while (!atomic_load(&host_done)) sleep_us(100);
    sleep_ms(5); /* the timers are due */
    API_OK(api.flush(g_bus, 5000));
    API_OK(api.flush(api.default_bus(), 5000));

    API_OK(api.shutdown(-1));
    API_OK(api.close(g_bus, -1));
    api.free_bus(g_bus);
    g_bus = NULL;
    memset(&api, 0, sizeof api);
    CHECK_MSG(dlclose(lib) == 0, "FreeLibrary: %s", dlerror());
    CHECK_MSG(!library_mapped(path), "jsonbus.dll still loaded after FreeLibrary");
    atomic_store(&host_exit, 1);
    JOIN_THREAD(th);
}

int main(int argc, char **argv) {
    int cycles = 5, max_leak = -1, until_out = 0;
    const char *path = JSONBUS_LIBRARY_PATH;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cycles") == 0 && i + 1 < argc) cycles = atoi(argv[++i]);
        else if (strcmp(argv[i], "--max-leak") == 0 && i + 1 < argc) max_leak = atoi(argv[++i]);
        else if (strcmp(argv[i], "--until-out") == 0) until_out = 1;
        else path = argv[i];
    }
    CHECK(cycles >= 2);
    /* winpthreads and msvcrt take their own indexes at their first use: before counting */
    pthread_t warm;
    START_THREAD(warm, warm_thread, NULL);
    JOIN_THREAD(warm);

    int free0 = free_tls_slots();
    printf("%d TLS indexes free before the first load\n", free0);
    int prev = free0, per_cycle = -1, done = 0;
    for (int c = 0; until_out || c < cycles; c++) {
        if (until_out && per_cycle > 0 && prev < per_cycle) break;
        cycle(path);
        int now = free_tls_slots();
        int leaked = prev - now;
        done = c + 1;
        if (!until_out || c < 3 || done % 25 == 0)
            printf("cycle %d: %d indexes taken and not given back (%d free)\n", done, leaked, now);
        if (per_cycle < 0) per_cycle = leaked;
        CHECK_MSG(leaked == per_cycle, "cycle %d took %d indexes, the first %d", done, leaked,
                  per_cycle);
        prev = now;
    }
    printf("%d load/use/unload cycles: %d TLS indexes a cycle; %d cycles fit in the %d free "
           "indexes\n", done, per_cycle, per_cycle > 0 ? free0 / per_cycle : -1, free0);
    if (max_leak >= 0)
        CHECK_MSG(per_cycle <= max_leak, "a cycle leaks %d TLS indexes, more than %d", per_cycle,
                  max_leak);
    printf("ok\n");
    return 0;
}
