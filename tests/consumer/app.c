/* tests/consumer/app.c: a program outside the jsonbus tree, built against an installed prefix
 * (find_package, or pkg-config; shared and static). It exits 0 only if the bus works and the
 * header and the library it found are of the same version. */
#include <stdio.h>
#include <string.h>

#include <jsonbus.h>

static int32_t count(const jsonbus_message *msg, void *user_data) {
    if (strcmp(msg->json, "{\"installed\":true}") == 0) ++*(int *)user_data;
    return JSONBUS_OK;
}

int main(void) {
    char header_version[32];
    snprintf(header_version, sizeof header_version, "%d.%d.%d", JSONBUS_VERSION_MAJOR,
             JSONBUS_VERSION_MINOR, JSONBUS_VERSION_PATCH);
    if (strcmp(jsonbus_version(), header_version) != 0) {
        fprintf(stderr, "header %s, library %s\n", header_version, jsonbus_version());
        return 1;
    }
    jsonbus *bus = jsonbus_new(NULL);
    int got = 0;
    if (bus == NULL || jsonbus_subscribe(bus, "consumer.>", count, &got) <= 0) {
        fprintf(stderr, "%s\n", jsonbus_last_error());
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        const char json[] = "{\"installed\":true}";
        if (jsonbus_publish(bus, "consumer.test", json, sizeof json - 1) != JSONBUS_OK) {
            fprintf(stderr, "%s\n", jsonbus_last_error());
            return 1;
        }
    }
    int32_t rc = jsonbus_flush(bus, 10000);
    jsonbus_free(bus);
    printf("jsonbus %s: %d of 3 messages\n", jsonbus_version(), got);
    return rc == JSONBUS_OK && got == 3 ? 0 : 1;
}
