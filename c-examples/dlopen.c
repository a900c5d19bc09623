/*
 * dlopen.c - load jsonbus at run time instead of linking it.
 *
 * Plugins, language runtimes and programs that must start without the library use
 * dlopen/dlsym (LoadLibrary/GetProcAddress on Windows). jsonbus.h is still included, but
 * only for its types (jsonbus, jsonbus_message, jsonbus_callback) and status codes: every
 * function is reached through a pointer that we look up by name.
 *
 * jsonbus can be unloaded again: once every bus is closed or freed and jsonbus_shutdown()
 * has returned, no thread of the library is left and dlclose() may unmap it.
 *
 * Usage: dlopen_example [path/to/libjsonbus.so]
 *   Without an argument the path that CMake passed as JSONBUS_LIBRARY_PATH is used.
 * Build by hand:
 *   cc -std=c11 -Wall -Wextra -I include dlopen.c -ldl -o dlopen_example
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonbus.h" /* types and constants only */

#ifndef JSONBUS_LIBRARY_PATH
#if defined(_WIN32)
#define JSONBUS_LIBRARY_PATH "jsonbus.dll"
#elif defined(__APPLE__)
#define JSONBUS_LIBRARY_PATH "libjsonbus.dylib"
#else
#define JSONBUS_LIBRARY_PATH "libjsonbus.so"
#endif
#endif

/* ------------------------------------------------------------------------------------------
 * A three-function portability layer over the platform's loader.
 * ------------------------------------------------------------------------------------------ */
#ifdef _WIN32
#include <windows.h>
typedef HMODULE library;
static library library_open(const char *path) { return LoadLibraryA(path); }
static void *library_symbol(library lib, const char *name) {
    FARPROC proc = GetProcAddress(lib, name);
    void *sym;
    memcpy(&sym, &proc, sizeof sym); /* a function pointer, returned like dlsym's */
    return sym;
}
static int library_close(library lib) { return FreeLibrary(lib) ? 0 : -1; }
static const char *library_error(void) {
    static char text[64];
    snprintf(text, sizeof text, "Windows error %lu", (unsigned long)GetLastError());
    return text;
}
#else
#include <dlfcn.h>
typedef void *library;
/* RTLD_LOCAL keeps the library's symbols out of the global namespace: nothing but our
 * function pointers refers to it, so dlclose can really unload it. */
static library library_open(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }
static void *library_symbol(library lib, const char *name) { return dlsym(lib, name); }
static int library_close(library lib) { return dlclose(lib); }
static const char *library_error(void) {
    const char *e = dlerror();
    return e ? e : "unknown error";
}
#endif

/* ------------------------------------------------------------------------------------------
 * The functions we use, as pointer types written out from the signatures in jsonbus.h.
 * ------------------------------------------------------------------------------------------ */
typedef const char *(*version_fn)(void);
typedef const char *(*status_name_fn)(int32_t code);
typedef const char *(*last_error_fn)(void);
typedef jsonbus *(*new_fn)(const char *options_json);
typedef int64_t (*subscribe_fn)(jsonbus *bus, const char *pattern, jsonbus_callback cb,
                                void *user_data);
typedef int32_t (*publish_fn)(jsonbus *bus, const char *topic, const char *json,
                              size_t json_len);
typedef int32_t (*flush_fn)(jsonbus *bus, int32_t timeout_ms);
typedef int32_t (*close_fn)(jsonbus *bus, int32_t timeout_ms);
typedef void (*free_fn)(jsonbus *bus);
typedef int32_t (*shutdown_fn)(int32_t timeout_ms);

static struct {
    version_fn version;
    status_name_fn status_name;
    last_error_fn last_error;
    new_fn new_bus;
    subscribe_fn subscribe;
    publish_fn publish;
    flush_fn flush;
    close_fn close;
    free_fn free_bus;
    shutdown_fn shutdown;
} api;

/* Look up one symbol; a missing one means a wrong or too old library. */
#define LOAD(field, name)                                                               \
    do {                                                                                \
        void *sym_ = library_symbol(lib, name);                                         \
        if (sym_ == NULL) {                                                             \
            fprintf(stderr, "dlopen_example: symbol %s not found: %s\n", name,          \
                    library_error());                                                   \
            return 1;                                                                   \
        }                                                                               \
        /* POSIX guarantees that a data pointer from dlsym converts to a function one. */ \
        memcpy(&api.field, &sym_, sizeof sym_);                                         \
    } while (0)

#define CHECK_RC(what, rc)                                                              \
    do {                                                                                \
        if ((rc) < 0) {                                                                 \
            fprintf(stderr, "dlopen_example: %s failed: %s: %s\n", what,                \
                    api.status_name((int32_t)(rc)), api.last_error());                  \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

/* The callback lives in this program; the library calls it on its dispatcher thread. */
static int32_t print_message(const jsonbus_message *msg, void *user_data) {
    int *count = user_data;
    ++*count; /* calls of one subscription never overlap: no lock needed */
    printf("  [seq %" PRIu64 "] %s: %s\n", msg->seq, msg->topic, msg->json);
    return JSONBUS_OK;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : JSONBUS_LIBRARY_PATH;

    /* 1. Load the library and look up what we need. */
    library lib = library_open(path);
    if (lib == NULL) {
        fprintf(stderr, "dlopen_example: cannot load %s: %s\n", path, library_error());
        return 1;
    }
    LOAD(version, "jsonbus_version");
    LOAD(status_name, "jsonbus_status_name");
    LOAD(last_error, "jsonbus_last_error");
    LOAD(new_bus, "jsonbus_new");
    LOAD(subscribe, "jsonbus_subscribe");
    LOAD(publish, "jsonbus_publish");
    LOAD(flush, "jsonbus_flush");
    LOAD(close, "jsonbus_close");
    LOAD(free_bus, "jsonbus_free");
    LOAD(shutdown, "jsonbus_shutdown");
    printf("loaded jsonbus %s from %s\n", api.version(), path);

    /* 2. Use it exactly as if it were linked. */
    jsonbus *bus = api.new_bus(NULL); /* NULL options = defaults */
    if (bus == NULL) {
        fprintf(stderr, "dlopen_example: jsonbus_new failed: %s\n", api.last_error());
        return 1;
    }
    int count = 0;
    int64_t sub = api.subscribe(bus, "greetings.>", print_message, &count);
    CHECK_RC("jsonbus_subscribe", sub);

    static const char *const messages[][2] = {
        {"greetings.en", "{\"text\":\"hello\"}"},
        {"greetings.fr", "{\"text\":\"bonjour\"}"},
        {"greetings.ja", "{\"text\":\"\\u3053\\u3093\\u306b\\u3061\\u306f\"}"},
    };
    for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++) {
        int32_t rc = api.publish(bus, messages[i][0], messages[i][1], strlen(messages[i][1]));
        CHECK_RC("jsonbus_publish", rc);
    }
    CHECK_RC("jsonbus_flush", api.flush(bus, -1)); /* wait for the three callbacks */
    printf("%d messages received\n", count);

    /* 3. Before unloading: close every bus (its threads are joined), free it, and shut the
     *    default bus down too, even if only another part of the program used it. */
    CHECK_RC("jsonbus_close", api.close(bus, 1000));
    api.free_bus(bus);
    CHECK_RC("jsonbus_shutdown", api.shutdown(-1));

    /* 4. Unload. The function pointers in `api` are dangling from here on. */
    memset(&api, 0, sizeof api);
    if (library_close(lib) != 0) {
        fprintf(stderr, "dlopen_example: unloading failed: %s\n", library_error());
        return 1;
    }
    printf("unloaded\n");
    return count == 3 ? 0 : 1;
}
