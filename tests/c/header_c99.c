/* header_c99: jsonbus.h compiles as strict C99 (-std=c99 -pedantic), included twice. */
#include "jsonbus.h"
#include "jsonbus.h"

#include <stdio.h>

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
    if (cb(&msg, NULL) != JSONBUS_OK) return 1;
    printf("jsonbus %s (C99)\n", jsonbus_version());
    return jsonbus_version() != NULL ? 0 : 1;
}
