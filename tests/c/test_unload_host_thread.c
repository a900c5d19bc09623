/*
 * test_unload_host_thread: minimal reproducer. A host thread publishes into a bus, the bus is
 * closed and freed, the library is dlclose'd (and is unmapped), and only then the host thread
 * ends. The thread must end normally (contract, guarantee 10: unloadable "without ...
 * crashing"). Found by test_dlopen_cycles.
 *
 * What happens (jsonbus 0.1.0): publish -> crossbeam_channel's Sender::send -> SyncWaker::notify
 * -> crossbeam's current_thread_id() -> std::thread::current() on the host thread. std then
 * allocates the thread's `Thread` handle (48 bytes) and arms a pthread-key destructor (std's
 * thread-local guard) to free it at thread exit. After dlclose that destructor points into
 * unmapped memory: the host thread's exit jumps there -> SIGSEGV in __nptl_deallocate_tsd.
 * Threads that never exit (main) leak the 48 bytes instead, once per load cycle.
 *
 * Usage: test_unload_host_thread [path/to/libjsonbus.so]   exits 0 when fixed; crashes now.
 */
#define CHECK_NO_JSONBUS
#include "check.h"

#include "dl_shim.h"

typedef jsonbus *(*new_fn)(const char *);
typedef int64_t (*subscribe_fn)(jsonbus *, const char *, jsonbus_callback, void *);
typedef int32_t (*publish_fn)(jsonbus *, const char *, const char *, size_t);
typedef void (*free_fn)(jsonbus *);
typedef int32_t (*shutdown_fn)(int32_t);

static new_fn new_bus;
static subscribe_fn subscribe;
static publish_fn publish;
static free_fn free_bus;
static shutdown_fn shutdown;

static void *sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (p == NULL) FAIL("dlsym(%s): %s", name, dlerror());
    return p;
}

static int32_t on_message(const jsonbus_message *msg, void *ud) {
    (void)msg;
    (void)ud;
    return JSONBUS_OK;
}

static jsonbus *bus;
static atomic_int published, unloaded;

static void *host(void *arg) {
    (void)arg;
    for (int i = 0; i < 100; i++) {
        CHECK_EQ(publish(bus, "x", "1", 1), 0);
        sleep_us(200); /* let the dispatcher go to sleep, so publish wakes it */
    }
    atomic_store(&published, 1);
    while (!atomic_load(&unloaded)) sleep_us(100);
    return NULL; /* the thread ends after the library was unloaded */
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : JSONBUS_LIBRARY_PATH;
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(lib != NULL, "dlopen(%s): %s", path, dlerror());
    void *p;
    p = sym(lib, "jsonbus_new"); memcpy(&new_bus, &p, sizeof p);
    p = sym(lib, "jsonbus_subscribe"); memcpy(&subscribe, &p, sizeof p);
    p = sym(lib, "jsonbus_publish"); memcpy(&publish, &p, sizeof p);
    p = sym(lib, "jsonbus_free"); memcpy(&free_bus, &p, sizeof p);
    p = sym(lib, "jsonbus_shutdown"); memcpy(&shutdown, &p, sizeof p);
    bus = new_bus(NULL);
    CHECK(bus != NULL);
    CHECK(subscribe(bus, "x", on_message, NULL) > 0);
    pthread_t th;
    START_THREAD(th, host, NULL);
    while (!atomic_load(&published)) sleep_us(100);
    free_bus(bus);
    CHECK_EQ(shutdown(-1), 0);
    CHECK_EQ(dlclose(lib), 0);
    printf("dlclose done; the host thread that published now ends\n");
    fflush(stdout);
    atomic_store(&unloaded, 1);
    JOIN_THREAD(th); /* crashes before this returns while the bug is there */
    printf("ok\n");
    return 0;
}
