/*
 * test_errors: status codes, jsonbus_last_error / jsonbus_last_status, NULL arguments,
 * version, status names, the clock (contract: Conventions, Status codes, Functions).
 */
#include "check.h"

static int32_t noop_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    return JSONBUS_OK;
}

#define CODE(x) {x, #x}
static const struct {
    int32_t code;
    const char *name;
} codes[] = {
    CODE(JSONBUS_OK),
    CODE(JSONBUS_UNSUBSCRIBE),
    CODE(JSONBUS_ERR_NULL),
    CODE(JSONBUS_ERR_UTF8),
    CODE(JSONBUS_ERR_JSON),
    CODE(JSONBUS_ERR_TOPIC),
    CODE(JSONBUS_ERR_TOO_LARGE),
    CODE(JSONBUS_ERR_FULL),
    CODE(JSONBUS_ERR_TIMEOUT),
    CODE(JSONBUS_ERR_CLOSED),
    CODE(JSONBUS_ERR_NOT_FOUND),
    CODE(JSONBUS_ERR_DEADLOCK),
    CODE(JSONBUS_ERR_OPTIONS),
    CODE(JSONBUS_ERR_INTERNAL),
};
#define NCODES ((int)(sizeof codes / sizeof codes[0]))

/* ---- last error is per thread ---- */
static int32_t thread_status_before, thread_status_after;
static char thread_error[512];

static void *other_thread(void *arg) {
    jsonbus *bus = arg;
    thread_status_before = jsonbus_last_status(); /* nothing failed on this thread yet */
    jsonbus_publish(bus, "a..b", "1", 1);
    thread_status_after = jsonbus_last_status();
    snprintf(thread_error, sizeof thread_error, "%s", jsonbus_last_error());
    return NULL;
}

int main(void) {
    /* ---- status codes: signs, distinct values, names ---- */
    CHECK_EQ(JSONBUS_OK, 0);
    CHECK(JSONBUS_UNSUBSCRIBE > 0);
    for (int i = 2; i < NCODES; i++) {
        CHECK_MSG(codes[i].code < 0, "%s = %d is not negative", codes[i].name, (int)codes[i].code);
    }
    for (int i = 0; i < NCODES; i++) {
        for (int j = i + 1; j < NCODES; j++)
            CHECK_MSG(codes[i].code != codes[j].code, "%s == %s", codes[i].name, codes[j].name);
        CHECK_STREQ(jsonbus_status_name(codes[i].code), codes[i].name);
    }
    static const int32_t unknown[] = {12345, -12345, INT32_MIN, INT32_MAX, 99, -99};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *name = jsonbus_status_name(unknown[i]);
        CHECK_MSG(name != NULL && name[0] != '\0', "jsonbus_status_name(%d) is NULL or empty",
                  (int)unknown[i]);
        for (int j = 0; j < NCODES; j++)
            CHECK_MSG(strcmp(name, codes[j].name) != 0, "unknown code %d named %s",
                      (int)unknown[i], name);
    }

    /* ---- version ---- */
    char version[64];
    snprintf(version, sizeof version, "%d.%d.%d", (int)JSONBUS_VERSION_MAJOR,
             (int)JSONBUS_VERSION_MINOR, (int)JSONBUS_VERSION_PATCH);
    CHECK_STREQ(jsonbus_version(), version);

    /* ---- clock ---- */
    uint64_t t1 = jsonbus_now_ns();
    sleep_ms(20);
    uint64_t t2 = jsonbus_now_ns();
    CHECK_MSG(t2 >= t1 + 15000000ull && t2 < t1 + 5000000000ull,
              "jsonbus_now_ns advanced %llu ns over a 20 ms sleep", (unsigned long long)(t2 - t1));
    for (int i = 0; i < 1000; i++) {
        uint64_t a = jsonbus_now_ns(), b = jsonbus_now_ns();
        CHECK(b >= a);
    }

    /* ---- fresh thread state ---- */
    CHECK_CLEARED();

    jsonbus *bus = NEW_BUS(NULL);
    CHECK_CLEARED();

    /* ---- NULL arguments ---- */
    CHECK_ERR(jsonbus_subscribe(NULL, "x", noop_callback, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_subscribe(bus, NULL, noop_callback, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_subscribe(bus, "x", NULL, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_unsubscribe(NULL, 1), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_publish(NULL, "x", "1", 1), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_publish(bus, NULL, "1", 1), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_publish(bus, "x", NULL, 1), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_publish(bus, "x", NULL, 0), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_flush(NULL, 0), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_flush(NULL, -1), JSONBUS_ERR_NULL);
    CHECK_ERR(jsonbus_close(NULL, 0), JSONBUS_ERR_NULL);
    CHECK(jsonbus_stats(NULL) == NULL);
    CHECK_RC(jsonbus_last_status(), JSONBUS_ERR_NULL);
    CHECK(jsonbus_last_error()[0] != '\0');
    CHECK_ERR(register_callback(NULL, NULL), JSONBUS_ERR_NULL);
    CHECK_ERR(push_json(NULL), JSONBUS_ERR_NULL);
    jsonbus_free(NULL);        /* like free(NULL): nothing */
    jsonbus_string_free(NULL); /* likewise */

    /* ---- success clears; "cannot fail" functions leave the state alone ---- */
    CHECK_ERR(jsonbus_publish(bus, "x", "{", 1), JSONBUS_ERR_JSON);
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", jsonbus_last_error());
    (void)add(1, 2);
    (void)jsonbus_version();
    (void)jsonbus_status_name(JSONBUS_ERR_TOPIC);
    (void)jsonbus_now_ns();
    (void)jsonbus_default();
    jsonbus_string_free(NULL);
    (void)jsonbus_last_error();
    CHECK_RC(jsonbus_last_status(), JSONBUS_ERR_JSON);
    CHECK_STREQ(jsonbus_last_error(), saved);
    PUBLISH(bus, "x", "{}"); /* success: cleared (checked inside PUBLISH) */
    CHECK_CLEARED();

    /* every failing function clears on its next success */
    CHECK_ERR(jsonbus_subscribe(bus, "", noop_callback, NULL), JSONBUS_ERR_TOPIC);
    int64_t id = SUBSCRIBE(bus, "x", noop_callback, NULL);
    CHECK_ERR(jsonbus_unsubscribe(bus, id + 1000), JSONBUS_ERR_NOT_FOUND);
    CHECK_OK(jsonbus_unsubscribe(bus, id));
    CHECK_ERR(jsonbus_flush(NULL, 0), JSONBUS_ERR_NULL);
    CHECK_OK(jsonbus_flush(bus, 1000));
    CHECK_ERR(jsonbus_close(NULL, 0), JSONBUS_ERR_NULL);
    char *s = jsonbus_stats(bus);
    CHECK(s != NULL);
    CHECK_CLEARED();
    jsonbus_string_free(s);
    CHECK(jsonbus_new("{\"nope\":1}") == NULL);
    CHECK_RC(jsonbus_last_status(), JSONBUS_ERR_OPTIONS);
    jsonbus *b2 = NEW_BUS("{}");
    CHECK_CLEARED();
    CHECK_ERR(push_json("nope"), JSONBUS_ERR_JSON);
    CHECK_OK(push_json("\"yes\""));
    CHECK_ERR(register_callback(NULL, NULL), JSONBUS_ERR_NULL);
    int64_t rid = register_callback(noop_callback, NULL);
    CHECK(rid > 0);
    CHECK_CLEARED();
    CHECK_ERR(jsonbus_close(NULL, 0), JSONBUS_ERR_NULL);
    CHECK_OK(jsonbus_shutdown(-1));
    CHECK_ERR(jsonbus_close(NULL, 0), JSONBUS_ERR_NULL);
    CHECK_OK(jsonbus_close(b2, -1));

    /* ---- the last error belongs to the thread ---- */
    CHECK_ERR(jsonbus_publish(NULL, "x", "1", 1), JSONBUS_ERR_NULL);
    pthread_t th;
    START_THREAD(th, other_thread, bus);
    JOIN_THREAD(th);
    CHECK_RC(thread_status_before, JSONBUS_OK);
    CHECK_RC(thread_status_after, JSONBUS_ERR_TOPIC);
    CHECK(thread_error[0] != '\0');
    CHECK_RC(jsonbus_last_status(), JSONBUS_ERR_NULL); /* ours is unchanged */

    jsonbus_free(b2);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    CHECK_OK(jsonbus_shutdown(-1));
    printf("ok\n");
    return 0;
}
