/*
 * proc_check.h - what a process holds (Linux, /proc): descriptors, mappings (and of them the
 * shared memory of jsonbus: memfds, /dev/shm), for the tests of buses shared across
 * processes. Include after check.h.
 */
#ifndef JSONBUS_TEST_PROC_CHECK_H
#define JSONBUS_TEST_PROC_CHECK_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The sanitizers' allocators and ThreadSanitizer's thread contexts map memory of their own as
 * threads come and go: under them only the shared memory itself (memfd mappings) is counted. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define MAPS_COUNTED_EXACTLY 0
#else
#define MAPS_COUNTED_EXACTLY 1
#endif

/* Open descriptors, not counting the one that reads the directory. */
static CHECK_UNUSED int fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1;
}

/* Lines of /proc/self/maps; *memfd (if not NULL): of them, mappings of memfds or /dev/shm
 * files (the first five are printed, to say what is left). */
static CHECK_UNUSED int maps_count(int *memfd) {
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char l[4096];
    int n = 0, m = 0;
    while (fgets(l, sizeof l, f)) {
        n++;
        if (strstr(l, "memfd:") || strstr(l, "/dev/shm/")) {
            if (m < 5) fprintf(stderr, "mapping: %s", l);
            m++;
        }
    }
    fclose(f);
    if (memfd) *memfd = m;
    return n;
}

/* Marks every descriptor above stderr close-on-exec, so that the helper processes a test
 * starts inherit none of whoever started the test. */
static CHECK_UNUSED void make_own_fds_cloexec(void) {
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != self) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    closedir(d);
}

#endif
