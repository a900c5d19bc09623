// header_cxx: jsonbus.h compiles as C++ (-Wall -Wextra -Werror -pedantic), included
// twice, and its functions link with C linkage (extern "C").
#include "jsonbus.h"
#include "jsonbus.h"

#include <cstdio>
#include <cstring>

namespace {
int32_t callback(const jsonbus_message *msg, void *user_data) {
    int *count = static_cast<int *>(user_data);
    if (std::strcmp(msg->json, "[\"c++\"]") == 0) ++*count;
    return JSONBUS_OK;
}

int32_t responder(const jsonbus_message *msg, void *user_data) {
    jsonbus *bus = static_cast<jsonbus *>(user_data);
    return msg->reply_to != nullptr ? jsonbus_reply(bus, msg, msg->json, msg->json_len) : -1;
}
}  // namespace

int main() {
    jsonbus *bus = jsonbus_new(nullptr);
    if (bus == nullptr) return 1;
    int count = 0;
    jsonbus_callback cb = callback;
    int64_t id = jsonbus_subscribe(bus, "cxx", cb, &count);
    if (id <= 0) return 2;
    const char json[] = "[\"c++\"]";
    if (jsonbus_publish(bus, "cxx", json, sizeof json - 1) != JSONBUS_OK) return 3;
    if (jsonbus_flush(bus, 5000) != JSONBUS_OK) return 4;
    if (jsonbus_subscribe(bus, "cxx.echo", responder, bus) <= 0) return 7;
    char *reply = nullptr;
    size_t reply_len = 0;
    if (jsonbus_request(bus, "cxx.echo", json, sizeof json - 1, 5000, &reply, &reply_len) !=
            JSONBUS_OK ||
        reply_len != sizeof json - 1 || std::strcmp(reply, json) != 0)
        return 8;
    jsonbus_string_free(reply);
    if (jsonbus_close(bus, -1) != JSONBUS_OK) return 5;
    jsonbus_free(bus);
    std::printf("jsonbus %s (C++): %d message\n", jsonbus_version(), count);
    return count == 1 ? 0 : 6;
}
