/*
 * sanitizer_canary: proves that a sanitizer build of the C tests catches what it is there for,
 * and stops at it (-fno-sanitize-recover=all). Only built and run in sanitizer builds; ctest
 * expects the sanitizer's report in the output.
 *
 *   sanitizer_canary use-after-free    a callback whose user_data was freed too early
 *   sanitizer_canary signed-overflow   undefined behaviour in C code
 */
#include "check.h"

static int32_t read_user_data(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    return ((volatile int *)user_data)[0] == 42 ? JSONBUS_OK : -1;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "use-after-free") == 0) {
        jsonbus *bus = NEW_BUS(NULL);
        int *ud = malloc(sizeof *ud);
        CHECK(ud != NULL);
        *ud = 42;
        SUBSCRIBE(bus, "x", read_user_data, ud);
        fprintf(stderr, "user_data freed while still subscribed (a bug in this program)\n");
        free(ud); /* the bug: still subscribed */
        PUBLISH(bus, "x", "1");
        jsonbus_flush(bus, 5000); /* the callback reads freed memory: ASan stops here */
        jsonbus_free(bus);
        printf("no report: AddressSanitizer is not active\n");
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "signed-overflow") == 0) {
        volatile int x = INT32_MAX;
        int y = x + (argc > 0); /* UBSan stops here */
        printf("no report (%d): UndefinedBehaviorSanitizer is not active\n", y);
        return 1;
    }
    fprintf(stderr, "usage: sanitizer_canary use-after-free|signed-overflow\n");
    return 2;
}
