/*
 * test_topics: topic and pattern syntax and wildcard matching (contract: Topics).
 */
#include "check.h"

static int32_t noop_callback(const jsonbus_message *msg, void *user_data) {
    (void)msg;
    (void)user_data;
    return JSONBUS_OK;
}

static jsonbus *bus;

static void bad_topic_at(const char *file, int line, const char *topic) {
    int32_t rc = jsonbus_publish(bus, topic, "1", 1);
    if (rc != JSONBUS_ERR_TOPIC)
        SOFT_RETURN(file, line, "publish on topic \"%s\" returned %s, expected JSONBUS_ERR_TOPIC",
                   topic, jsonbus_status_name(rc));
    if (jsonbus_last_status() != JSONBUS_ERR_TOPIC || jsonbus_last_error()[0] == '\0')
        SOFT_RETURN(file, line, "bad topic \"%s\": last status/error not set", topic);
}
static void bad_pattern_at(const char *file, int line, const char *pattern) {
    int64_t id = jsonbus_subscribe(bus, pattern, noop_callback, NULL);
    if (id != JSONBUS_ERR_TOPIC)
        SOFT_RETURN(file, line, "subscribe to pattern \"%s\" returned %lld (%s), expected "
                   "JSONBUS_ERR_TOPIC", pattern, (long long)id,
                   jsonbus_status_name((int32_t)id));
    if (jsonbus_last_status() != JSONBUS_ERR_TOPIC || jsonbus_last_error()[0] == '\0')
        SOFT_RETURN(file, line, "bad pattern \"%s\": last status/error not set", pattern);
}
static void good_topic_at(const char *file, int line, const char *topic) {
    int32_t rc = jsonbus_publish(bus, topic, "1", 1);
    if (rc != JSONBUS_OK)
        SOFT_RETURN(file, line, "publish on valid topic \"%s\" returned %s", topic,
                   jsonbus_status_name(rc));
}
static int64_t good_pattern_at(const char *file, int line, const char *pattern) {
    int64_t id = jsonbus_subscribe(bus, pattern, noop_callback, NULL);
    if (id <= 0)
        check_soft_fail(file, line, "subscribe to valid pattern \"%s\" returned %s", pattern,
                        jsonbus_status_name((int32_t)id));
    return id;
}
#define BAD_TOPIC(t) bad_topic_at(__FILE__, __LINE__, t)
#define BAD_PATTERN(p) bad_pattern_at(__FILE__, __LINE__, p)
#define BAD_BOTH(t)                                                                        \
    do {                                                                                   \
        BAD_TOPIC(t);                                                                      \
        BAD_PATTERN(t);                                                                    \
    } while (0)
#define GOOD_TOPIC(t) good_topic_at(__FILE__, __LINE__, t)
#define GOOD_PATTERN(p) good_pattern_at(__FILE__, __LINE__, p)

/* ---- matching ---- */
struct matcher {
    const char *pattern;
    char got[2048]; /* topics received, each followed by '|' */
    uint64_t last_seq;
};

static int32_t record_callback(const jsonbus_message *msg, void *user_data) {
    struct matcher *m = user_data;
    strncat(m->got, msg->topic, sizeof m->got - strlen(m->got) - 2);
    strcat(m->got, "|");
    m->last_seq = msg->seq;
    return JSONBUS_OK;
}

int main(void) {
    bus = NEW_BUS(NULL);

    /* ---- malformed everywhere ---- */
    BAD_BOTH("");
    BAD_BOTH(".");
    BAD_BOTH("a..b");
    BAD_BOTH(".a");
    BAD_BOTH("a.");
    BAD_BOTH("a b");
    BAD_BOTH(" a");
    BAD_BOTH("a\tb");
    BAD_BOTH("a\nb");
    BAD_BOTH("a\x7f");             /* DEL */
    BAD_BOTH("a\x01");             /* control */
    BAD_BOTH("caf\xc3\xa9");       /* non-ASCII (valid UTF-8) */
    BAD_BOTH("\xff");              /* not UTF-8 at all */
    BAD_BOTH("a*b");               /* wildcard mixed into a token */
    BAD_BOTH("a.b*");
    BAD_BOTH("*a");
    BAD_BOTH("a>");
    BAD_BOTH("a.>b");
    BAD_BOTH("**");
    BAD_BOTH(">>");
    char long_topic[300];
    memset(long_topic, 'a', 257);
    long_topic[257] = '\0';
    BAD_BOTH(long_topic); /* 257 bytes */
    for (int i = 1; i < 257; i += 2) long_topic[i] = '.';
    BAD_BOTH(long_topic); /* 257 bytes of a.a.a... */

    /* ---- wildcards are not allowed in a topic to publish on ---- */
    BAD_TOPIC("*");
    BAD_TOPIC(">");
    BAD_TOPIC("a.*");
    BAD_TOPIC("*.a");
    BAD_TOPIC("a.>");
    BAD_TOPIC("a.*.b");

    /* ---- '>' only as the last token of a pattern ---- */
    BAD_PATTERN(">.a");
    BAD_PATTERN("a.>.b");
    BAD_PATTERN("a.>.>");
    BAD_PATTERN(">.*");

    /* (only meaningful when every input above got its expected answer) */
    if (!check_soft_failures) CHECK_EQ(REJECTED(bus, "topic"), 28); /* 22 + 6 publishes */
    CHECK_EQ(STAT(bus, "subscriptions"), 0);

    /* ---- valid ---- */
    memset(long_topic, 'a', 256);
    long_topic[256] = '\0';
    GOOD_TOPIC(long_topic);  /* 256 bytes */
    GOOD_PATTERN(long_topic);
    for (int i = 1; i < 256; i += 2) long_topic[i] = '.';
    long_topic[255] = 'z';
    GOOD_TOPIC(long_topic);  /* 128 tokens, 256 bytes */
    GOOD_PATTERN(long_topic);
    long_topic[254] = '>';   /* ... .> as the last token (255 bytes) */
    long_topic[255] = '\0';
    GOOD_PATTERN(long_topic);
    static const char *const topics[] = {
        "a", "a.b", "orders.eu.new", "A-Z_0-9", "$SYS.x", "a!\"#$%&'()+,-/:;<=?@[\\]^_`{|}~",
        "x.y.z.w.v.u", "1.2.3",
    };
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        GOOD_TOPIC(topics[i]);
        GOOD_PATTERN(topics[i]);
    }
    static const char *const patterns[] = {"*", ">", "a.*", "*.b", "a.*.c", "*.*", "a.>",
                                           "*.>", "*.*.>", "a.*.>"};
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) GOOD_PATTERN(patterns[i]);
    CHECK_OK(jsonbus_flush(bus, 5000));
    if (!check_soft_failures) CHECK_EQ(REJECTED(bus, "topic"), 28);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);

    /* ---- matching ---- */
    bus = NEW_BUS(NULL);
    static struct matcher m[] = {
        {"a", "", 0},   {"a.b", "", 0}, {"*", "", 0},     {">", "", 0},
        {"a.*", "", 0}, {"a.>", "", 0}, {"*.b", "", 0},   {"a.*.c", "", 0},
        {"*.>", "", 0}, {"a.b.>", "", 0}, {"*.*", "", 0}, {"b.>", "", 0},
    };
    int nm = (int)(sizeof m / sizeof m[0]);
    for (int i = 0; i < nm; i++) SUBSCRIBE(bus, m[i].pattern, record_callback, &m[i]);
    static const char *const published[] = {"a", "a.b", "a.b.c", "a.x.c", "b", "b.b", "ab",
                                            "a.b.c.d"};
    for (size_t i = 0; i < sizeof published / sizeof published[0]; i++)
        PUBLISH(bus, published[i], "{}");
    CHECK_OK(jsonbus_flush(bus, 5000));
    static const char *const expected[] = {
        /* a     */ "a|",
        /* a.b   */ "a.b|",
        /* *     */ "a|b|ab|",
        /* >     */ "a|a.b|a.b.c|a.x.c|b|b.b|ab|a.b.c.d|",
        /* a.*   */ "a.b|",
        /* a.>   */ "a.b|a.b.c|a.x.c|a.b.c.d|",
        /* *.b   */ "a.b|b.b|",
        /* a.*.c */ "a.b.c|a.x.c|",
        /* *.>   */ "a.b|a.b.c|a.x.c|b.b|a.b.c.d|",
        /* a.b.> */ "a.b.c|a.b.c.d|",
        /* *.*   */ "a.b|b.b|",
        /* b.>   */ "b.b|",
    };
    for (int i = 0; i < nm; i++) {
        CHECK_MSG(strcmp(m[i].got, expected[i]) == 0,
                  "pattern \"%s\" received \"%s\", expected \"%s\"", m[i].pattern, m[i].got,
                  expected[i]);
    }
    CHECK_EQ(STAT(bus, "unrouted"), 0);
    PUBLISH(bus, "c", "1"); /* matches "*" and ">" */
    PUBLISH(bus, "c.d", "1"); /* matches ">", "*.>", "*.*" */
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_EQ(STAT(bus, "unrouted"), 0);
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);

    bus = NEW_BUS(NULL);
    struct matcher only = {"x.y", "", 0};
    SUBSCRIBE(bus, "x.y", record_callback, &only);
    PUBLISH(bus, "x", "1");
    PUBLISH(bus, "x.y.z", "1");
    PUBLISH(bus, "X.Y", "1"); /* case matters */
    PUBLISH(bus, "x.y", "1");
    CHECK_OK(jsonbus_flush(bus, 5000));
    CHECK_STREQ(only.got, "x.y|");
    CHECK_EQ(STAT(bus, "unrouted"), 3);
    CHECK_EQ(only.last_seq, 4); /* unrouted messages take a seq too */
    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    CHECK_SOFT_DONE();
    printf("ok\n");
    return 0;
}
