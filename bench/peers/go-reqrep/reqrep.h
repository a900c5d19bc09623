// Declarations shared by reqrep.go (cgo preamble) and trampoline.c: the jsonbus_message
// layout of CONTRACT.md (Part 1 fields + reply_to, reply_to_len) and the trampoline.
#ifndef GO_REQREP_H
#define GO_REQREP_H
#include <stddef.h>
#include <stdint.h>

typedef struct jsonbus_message {
    const char *topic;
    size_t topic_len;
    const char *json;
    size_t json_len;
    uint64_t seq;
    uint64_t published_ns;
    int64_t subscription;
    const char *reply_to;
    size_t reply_to_len;
} jsonbus_message;

typedef int32_t (*jsonbus_callback)(const jsonbus_message *msg, void *user_data);

uint64_t jsonbus_now_ns(void);
int32_t reqrep_deliver(jsonbus_callback cb, void *ud, const char *topic, size_t topic_len,
                       const char *json, size_t len, uint64_t seq, uint64_t published_ns,
                       int64_t sub);
#endif
