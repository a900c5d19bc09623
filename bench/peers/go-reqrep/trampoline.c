// C side of go-reqrep: the trampoline through which the Go coordinator calls a responder's
// C callback (Go cannot call a C function pointer directly, and a jsonbus_message built in
// Go memory pointing at Go memory would break cgo's pointer rules), and the helpers the
// benchmark driver needs (jsonbus_default, jsonbus_now_ns, jsonbus_string_free).
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "reqrep.h"

static int dummy_bus;
static const char inbox[] = "_INBOX.coordinator";

uint64_t jsonbus_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void *jsonbus_default(void) { return &dummy_bus; }

void jsonbus_string_free(char *s) { free(s); }

int32_t reqrep_deliver(jsonbus_callback cb, void *ud, const char *topic, size_t topic_len,
                       const char *json, size_t len, uint64_t seq, uint64_t published_ns,
                       int64_t sub) {
    jsonbus_message m = {topic, topic_len, json, len, seq, published_ns, sub,
                         inbox, sizeof inbox - 1};
    return cb(&m, ud);
}
