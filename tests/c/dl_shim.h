/*
 * dl_shim.h - dlopen/dlsym/dlclose/dlerror for the tests that load the library at run time,
 * and whether a loaded library is still in the process after it was closed.
 *
 * POSIX: <dlfcn.h> itself; library_mapped() reads /proc/self/maps (Linux; -1 elsewhere).
 * Windows: a shim over LoadLibraryA/GetProcAddress/FreeLibrary; library_mapped() asks the
 * loader for the module by name (GetModuleHandleExA) and checks that the address where the
 * last closed one was loaded holds no image any more (VirtualQuery).
 * Include after check.h.
 */
#ifndef JSONBUS_TEST_DL_SHIM_H
#define JSONBUS_TEST_DL_SHIM_H

#ifdef _WIN32

#define RTLD_NOW 0
#define RTLD_LOCAL 0

static DWORD dl_shim_error;        /* GetLastError of the last failed call, 0 for none */
static void *dl_shim_last_closed;  /* base address of the module dlclose last unloaded */

static CHECK_UNUSED void *dlopen(const char *path, int flags) {
    (void)flags;
    /* the loader wants backslashes; a path like /work/... is on the current drive (Wine's Z:) */
    char native[MAX_PATH];
    snprintf(native, sizeof native, "%s", path);
    for (char *p = native; *p; p++)
        if (*p == '/') *p = '\\';
    HMODULE lib = LoadLibraryA(native);
    dl_shim_error = lib ? 0 : GetLastError();
    return (void *)lib;
}

static CHECK_UNUSED void *dlsym(void *lib, const char *name) {
    FARPROC proc = GetProcAddress((HMODULE)lib, name);
    dl_shim_error = proc ? 0 : GetLastError();
    void *sym;
    memcpy(&sym, &proc, sizeof sym); /* a function pointer, returned as dlsym's */
    return sym;
}

static CHECK_UNUSED int dlclose(void *lib) {
    if (!FreeLibrary((HMODULE)lib)) {
        dl_shim_error = GetLastError();
        return -1;
    }
    dl_shim_last_closed = lib; /* an HMODULE is the module's base address */
    dl_shim_error = 0;
    return 0;
}

static CHECK_UNUSED const char *dlerror(void) {
    static char text[300];
    if (dl_shim_error == 0) return NULL;
    int n = snprintf(text, sizeof text, "Windows error %lu: ", (unsigned long)dl_shim_error);
    if (n < 0) n = 0;
    if (!FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL,
                        dl_shim_error, 0, text + n, (DWORD)(sizeof text - (size_t)n), NULL))
        text[n] = '\0';
    text[strcspn(text, "\r\n")] = '\0';
    dl_shim_error = 0;
    return text;
}

/* 1 while a module of the file's name is loaded, or an image is still mapped where the last
 * closed module was; 0 when it is gone. */
static CHECK_UNUSED int library_mapped(const char *path) {
    const char *base = path;
    for (const char *p = path; *p; p++)
        if (*p == '/' || *p == '\\') base = p + 1;
    HMODULE h = NULL;
    if (GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, base, &h)) return 1;
    if (dl_shim_last_closed != NULL) {
        MEMORY_BASIC_INFORMATION mi;
        if (VirtualQuery(dl_shim_last_closed, &mi, sizeof mi) == sizeof mi &&
            mi.State != MEM_FREE && mi.Type == MEM_IMAGE && mi.AllocationBase == dl_shim_last_closed)
            return 1;
    }
    return 0;
}

#else /* POSIX */

#include <dlfcn.h>

/* 1 while /proc/self/maps lists the file's name, 0 when not, -1 without /proc. */
static CHECK_UNUSED int library_mapped(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL) return -1;
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, base)) found = 1;
    }
    fclose(f);
    return found;
}

#endif

#endif /* JSONBUS_TEST_DL_SHIM_H */
