/* header_c99: jsonbus.h compiles as strict C99 (-std=c99 -pedantic), included twice, and
 * jsonbus_message has the layout CONTRACT.md gives: the Part 1 fields in order, then the
 * fields appended after `subscription` (reply_to, reply_to_len). */
#include "jsonbus.h"
#include "jsonbus.h"

#include <stddef.h>
#include <stdio.h>

/* The contract's struct, spelled out: a program compiled against it reads the same bytes. */
typedef struct {
    const char *topic;
    size_t topic_len;
    const char *json;
    size_t json_len;
    uint64_t seq;
    uint64_t published_ns;
    int64_t subscription;
    const char *reply_to;
    size_t reply_to_len;
} contract_message;

#define SAME_OFFSET(f) (offsetof(jsonbus_message, f) == offsetof(contract_message, f))
typedef char layout_matches[(sizeof(jsonbus_message) == sizeof(contract_message) &&
                             SAME_OFFSET(topic) && SAME_OFFSET(topic_len) && SAME_OFFSET(json) &&
                             SAME_OFFSET(json_len) && SAME_OFFSET(seq) &&
                             SAME_OFFSET(published_ns) && SAME_OFFSET(subscription) &&
                             SAME_OFFSET(reply_to) && SAME_OFFSET(reply_to_len))
                                ? 1
                                : -1];

static void on_reply(int32_t status, const jsonbus_message *reply, void *user_data) {
    (void)status;
    (void)reply;
    (void)user_data;
}

static int32_t callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    return JSONBUS_OK;
}

int main(void) {
    jsonbus_callback cb = callback;
    jsonbus_message msg;
    msg.topic = "t";
    msg.topic_len = 1;
    msg.json = "1";
    msg.json_len = 1;
    msg.seq = 1;
    msg.published_ns = 0;
    msg.subscription = 1;
    msg.reply_to = NULL;
    msg.reply_to_len = 0;
    if (cb(&msg, NULL) != JSONBUS_OK) return 1;
    {
        jsonbus_reply_callback rcb = on_reply;
        layout_matches ok;
        (void)ok;
        rcb(JSONBUS_ERR_NO_RESPONDERS, NULL, NULL);
    }
    printf("jsonbus %s (C99)\n", jsonbus_version());
    return jsonbus_version() != NULL ? 0 : 1;
}
