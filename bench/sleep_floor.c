/*
 * sleep_floor.c - how late this machine wakes a thread that sleeps until a deadline: the
 * floor under any timer's lateness (jsonbus's timer thread sleeps the same way).
 *
 * Sleeps N times (default 1000) with clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) until a
 * deadline 1..50 ms ahead (as the `timers` workload's delays), and prints how far past the
 * deadline it woke: p50, p90, p99, max. `slack1` as a second argument first sets the thread's
 * timer slack to 1 ns (PR_SET_TIMERSLACK), as jsonbus's timer thread does.
 *
 *   gcc -O2 bench/sleep_floor.c -o /tmp/sleep_floor && /tmp/sleep_floor 1000 slack1
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

static uint64_t now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n < 1) return 2;
    if (argc > 2 && strcmp(argv[2], "slack1") == 0) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    uint64_t *late = malloc(sizeof(uint64_t) * (size_t)n);
    if (late == NULL) return 2;
    srand(1);
    for (int i = 0; i < n; i++) {
        uint64_t due = now() + (uint64_t)(rand() % 49000 + 1000) * 1000u;
        struct timespec ts = {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        late[i] = now() - due;
    }
    qsort(late, (size_t)n, sizeof late[0], cmp);
    printf("{\"sleeps\":%d,\"slack1\":%s,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
           "\"max_us\":%.1f}\n",
           n, argc > 2 ? "true" : "false", late[n / 2] / 1e3, late[n * 9 / 10] / 1e3,
           late[(n - 1) * 99 / 100] / 1e3, late[n - 1] / 1e3);
    free(late);
    return 0;
}
