/*
 * test_options: jsonbus_new options (contract: Options).
 *
 * Valid options at their bounds are accepted; unknown keys, wrong types, out-of-range
 * values, non-objects and invalid JSON make jsonbus_new return NULL with
 * JSONBUS_ERR_OPTIONS, naming the key (and for ranges the allowed range) in the message.
 */
#include "check.h"

static void bad_options_at(const char *file, int line, const char *options, const char *needle1,
                           const char *needle2) {
    jsonbus *bus = jsonbus_new(options);
    if (bus != NULL) {
        jsonbus_free(bus);
        SOFT_RETURN(file, line, "jsonbus_new(%s) accepted invalid options", options);
    }
    if (jsonbus_last_status() != JSONBUS_ERR_OPTIONS)
        SOFT_RETURN(file, line, "jsonbus_new(%s): last status %s, expected JSONBUS_ERR_OPTIONS",
                   options, jsonbus_status_name(jsonbus_last_status()));
    const char *err = jsonbus_last_error();
    if (err[0] == '\0') SOFT_RETURN(file, line, "jsonbus_new(%s): no error message", options);
    if (needle1 && !strstr(err, needle1))
        SOFT_RETURN(file, line, "jsonbus_new(%s): message does not mention \"%s\": %s", options,
                   needle1, err);
    if (needle2 && !strstr(err, needle2))
        SOFT_RETURN(file, line, "jsonbus_new(%s): message does not mention \"%s\": %s", options,
                   needle2, err);
}
#define BAD(options, n1, n2) bad_options_at(__FILE__, __LINE__, options, n1, n2)

static void good_options_at(const char *file, int line, const char *options) {
    jsonbus *bus = jsonbus_new(options);
    if (bus == NULL)
        SOFT_RETURN(file, line, "jsonbus_new(%s) returned NULL", options ? options : "NULL");
    if (jsonbus_last_status() != JSONBUS_OK || jsonbus_last_error()[0] != '\0')
        SOFT_RETURN(file, line, "jsonbus_new(%s) succeeded but did not clear the last error",
                   options ? options : "NULL");
    if (jsonbus_publish(bus, "x", "1", 1) != JSONBUS_OK)
        SOFT_RETURN(file, line, "publish on a bus made with %s failed", options ? options : "NULL");
    jsonbus_free(bus);
}
#define GOOD(options) good_options_at(__FILE__, __LINE__, options)

int main(void) {
    int threads0 = thread_count();

    /* ---- accepted ---- */
    GOOD(NULL);
    GOOD("{}");
    GOOD(" { } ");
    GOOD("{\"dispatcher_threads\":0}");
    GOOD("{\"dispatcher_threads\":1}");
    GOOD("{\"dispatcher_threads\":16}");
    GOOD("{\"queue_capacity\":1}");
    GOOD("{\"queue_capacity\":16777216}");
    GOOD("{\"publish_timeout_ms\":-1}");
    GOOD("{\"publish_timeout_ms\":0}");
    GOOD("{\"publish_timeout_ms\":2147483647}");
    GOOD("{\"max_message_bytes\":1}");
    GOOD("{\"max_message_bytes\":1073741824}");
    GOOD("{\"max_depth\":1}");
    GOOD("{\"max_depth\":65535}");
    GOOD("{\"dispatcher_threads\":2,\"queue_capacity\":100,\"publish_timeout_ms\":5,"
         "\"max_message_bytes\":1000,\"max_depth\":10}");

    /* defaults and configured values show in the stats */
    jsonbus *bus = NEW_BUS(NULL);
    CHECK_EQ(STAT(bus, "dispatcher_threads"), 1);
    jsonbus_free(bus);
    bus = NEW_BUS("{\"dispatcher_threads\":4}");
    CHECK_EQ(STAT(bus, "dispatcher_threads"), 4);
    jsonbus_free(bus);

    /* ---- unknown keys ---- */
    BAD("{\"threads\":1}", "threads", NULL);
    BAD("{\"dispatcher_threads\":1,\"bogus_key\":true}", "bogus_key", NULL);
    BAD("{\"Max_Depth\":5}", "Max_Depth", NULL);

    /* ---- wrong types ---- */
    BAD("{\"dispatcher_threads\":\"4\"}", "dispatcher_threads", NULL);
    BAD("{\"dispatcher_threads\":1.5}", "dispatcher_threads", NULL);
    BAD("{\"queue_capacity\":1.5}", "queue_capacity", NULL);
    BAD("{\"queue_capacity\":[1]}", "queue_capacity", NULL);
    BAD("{\"publish_timeout_ms\":true}", "publish_timeout_ms", NULL);
    BAD("{\"publish_timeout_ms\":\"-1\"}", "publish_timeout_ms", NULL);
    BAD("{\"max_message_bytes\":{}}", "max_message_bytes", NULL);
    BAD("{\"max_depth\":null}", "max_depth", NULL);

    /* ---- out of range: the key and the range are named ---- */
    BAD("{\"dispatcher_threads\":-1}", "dispatcher_threads", "256");
    BAD("{\"dispatcher_threads\":257}", "dispatcher_threads", "256");
    BAD("{\"queue_capacity\":0}", "queue_capacity", "16777216");
    BAD("{\"queue_capacity\":16777217}", "queue_capacity", "16777216");
    BAD("{\"queue_capacity\":-5}", "queue_capacity", "16777216");
    BAD("{\"publish_timeout_ms\":-2}", "publish_timeout_ms", "-1");
    BAD("{\"publish_timeout_ms\":-2147483648}", "publish_timeout_ms", "-1");
    BAD("{\"max_message_bytes\":0}", "max_message_bytes", "1073741824");
    BAD("{\"max_message_bytes\":1073741825}", "max_message_bytes", "1073741824");
    BAD("{\"max_depth\":0}", "max_depth", "65535");
    BAD("{\"max_depth\":65536}", "max_depth", "65535");
    BAD("{\"max_depth\":99999999999999999999999}", "max_depth", NULL);
    BAD("{\"dispatcher_threads\":18446744073709551617}", "dispatcher_threads", NULL);

    /* ---- not an object / not JSON ---- */
    BAD("[]", NULL, NULL);
    BAD("1", NULL, NULL);
    BAD("null", NULL, NULL);
    BAD("\"x\"", NULL, NULL);
    BAD("[{\"max_depth\":5}]", NULL, NULL);
    BAD("", NULL, NULL);
    BAD("{", NULL, NULL);
    BAD("{\"dispatcher_threads\":}", NULL, NULL);
    BAD("{\"dispatcher_threads\":1,}", NULL, NULL);
    BAD("{\"dispatcher_threads\":1} x", NULL, NULL);
    BAD("{dispatcher_threads:1}", NULL, NULL);
    BAD("{\"max_depth\":5\xff}", NULL, NULL);

    /* a later success clears the error */
    bus = NEW_BUS("{}");
    CHECK_CLEARED();
    jsonbus_free(bus);

    /* no bus created by the failures left a thread behind */
    int threads1 = wait_thread_count(threads0, 1000);
    if (threads1 != threads0) print_threads();
    CHECK_MSG(threads1 == threads0, "%d threads at the end, %d at start", threads1, threads0);
    CHECK_SOFT_DONE();
    printf("ok\n");
    return 0;
}
