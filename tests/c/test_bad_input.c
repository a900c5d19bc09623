/*
 * test_bad_input: every kind of bad input the contract names, each with its status code and
 * its message text (contract: "No input from C can crash the library ... each gets its error
 * code and a message"). Each row checks the returned code, jsonbus_last_status() and that
 * jsonbus_last_error() contains the expected words. With --markdown it prints the table of
 * tests/c/BAD_INPUT.md with the library's real messages.
 */
#include "check.h"

static int markdown;

static void row_at(int line, const char *input, long long rc, int32_t code, const char *needle,
                   const char *needle2) {
    const char *err = jsonbus_last_error();
    if (rc != code)
        SOFT_RETURN(__FILE__, line, "%s: returned %s (%lld), expected %s", input,
                    jsonbus_status_name((int32_t)rc), rc, jsonbus_status_name(code));
    if (jsonbus_last_status() != code)
        SOFT_RETURN(__FILE__, line, "%s: jsonbus_last_status() is %s", input,
                    jsonbus_status_name(jsonbus_last_status()));
    if (err == NULL || err[0] == '\0') SOFT_RETURN(__FILE__, line, "%s: no message", input);
    if (needle && strstr(err, needle) == NULL)
        SOFT_RETURN(__FILE__, line, "%s: message does not contain \"%s\": %s", input, needle, err);
    if (needle2 && strstr(err, needle2) == NULL)
        SOFT_RETURN(__FILE__, line, "%s: message does not contain \"%s\": %s", input, needle2, err);
    if (markdown) {
        printf("| %s | `%s` | `", input, jsonbus_status_name(code));
        for (const char *c = err; *c; c++) {
            if (*c == '|') printf("\\|");
            else if (*c == '`') printf("'");
            else putchar(*c);
        }
        printf("` | test_bad_input.c:%d |\n", line);
    }
}
/* evaluates expr, then checks status code and message */
#define ROW(input, expr, code, needle) row_at(__LINE__, input, (long long)(expr), code, needle, NULL)
/* the same, with two words the message must contain (e.g. the key and what it allows) */
#define ROW2(input, expr, code, needle, needle2) \
    row_at(__LINE__, input, (long long)(expr), code, needle, needle2)
/* a row for a call that cannot fail: what it does instead */
static void row_value(int line, const char *input, int ok, const char *result) {
    if (!ok) {
        check_soft_fail(__FILE__, line, "%s: expected %s", input, result);
        return;
    }
    if (markdown) printf("| %s | %s | - | test_bad_input.c:%d |\n", input, result, line);
}

static int new_status(const char *options) {
    jsonbus *b = jsonbus_new(options);
    if (b) {
        jsonbus_free(b);
        return JSONBUS_OK;
    }
    return jsonbus_last_status();
}
static int stats_status(jsonbus *bus) {
    char *s = jsonbus_stats(bus);
    if (s) {
        jsonbus_string_free(s);
        return JSONBUS_OK;
    }
    return jsonbus_last_status();
}

static int32_t noop(const jsonbus_message *m, void *ud) {
    (void)m;
    (void)ud;
    return JSONBUS_OK;
}
static void end_noop(int64_t sub, int32_t reason, void *ud) {
    (void)sub;
    (void)reason;
    (void)ud;
}
/* jsonbus_subscribe_with with the given options (noop callback and end notice) */
static int64_t with_options(jsonbus *bus, const char *options) {
    return jsonbus_subscribe_with(bus, "a", options, noop, end_noop, NULL);
}
static int sub_stats_status(jsonbus *bus, int64_t sub) {
    char *s = jsonbus_subscription_stats(bus, sub);
    if (s) {
        jsonbus_string_free(s);
        return JSONBUS_OK;
    }
    return jsonbus_last_status();
}
/* jsonbus_next, which must leave *msg NULL when it fails */
static jsonbus_message not_set;
static int32_t next_status(jsonbus *bus, int64_t sub, int32_t timeout_ms) {
    jsonbus_message *m = &not_set;
    int32_t rc = jsonbus_next(bus, sub, timeout_ms, &m);
    if (rc != JSONBUS_OK && m != NULL) FAIL("jsonbus_next failed but did not set *msg to NULL");
    if (rc == JSONBUS_OK) FAIL("jsonbus_next handed out a message");
    return rc;
}

/* ---- calls from a callback that would wait for the callback itself ---- */
struct in_cb {
    int32_t rc;
    int32_t status;
    char text[512];
};
static struct in_cb cb_flush, cb_close, cb_free, cb_shutdown, cb_default_close;
static jsonbus *deadlock_bus;
static void keep(struct in_cb *r, int32_t rc) {
    r->rc = rc;
    r->status = jsonbus_last_status();
    snprintf(r->text, sizeof r->text, "%s", jsonbus_last_error());
}
static int32_t deadlocking(const jsonbus_message *m, void *ud) {
    (void)m;
    (void)ud;
    keep(&cb_flush, jsonbus_flush(deadlock_bus, -1));
    keep(&cb_close, jsonbus_close(deadlock_bus, -1));
    jsonbus_free(deadlock_bus);
    keep(&cb_free, jsonbus_last_status());
    return JSONBUS_OK;
}
static int32_t deadlocking_default(const jsonbus_message *m, void *ud) {
    (void)m;
    (void)ud;
    keep(&cb_shutdown, jsonbus_shutdown(-1));
    keep(&cb_default_close, jsonbus_close(jsonbus_default(), -1));
    return JSONBUS_OK;
}
static void row_in_cb(int line, const char *input, struct in_cb *r, int32_t code, const char *needle) {
    /* replay the callback's result as this thread's */
    if (r->rc != code || r->status != code || strstr(r->text, needle) == NULL) {
        check_soft_fail(__FILE__, line, "%s: %s / %s / \"%s\"", input, jsonbus_status_name(r->rc),
                        jsonbus_status_name(r->status), r->text);
        return;
    }
    if (markdown)
        printf("| %s | `%s` | `%s` | test_bad_input.c:%d |\n", input, jsonbus_status_name(code),
               r->text, line);
}

/* ---- Part 2B: requests and timers ---- */
static struct in_cb cb_request;
static jsonbus *request_bus;
static int32_t requesting(const jsonbus_message *m, void *ud) {
    (void)m;
    (void)ud;
    char *reply = NULL;
    keep(&cb_request, jsonbus_request(request_bus, "svc", "1", 1, 100, &reply, NULL));
    return JSONBUS_OK;
}
static int32_t silent(const jsonbus_message *m, void *ud) {
    (void)m;
    (void)ud;
    return JSONBUS_OK;
}
static void on_reply_noop(int32_t status, const jsonbus_message *reply, void *ud) {
    (void)status;
    (void)reply;
    (void)ud;
}
static int32_t request_status(jsonbus *b, const char *topic, const char *json, int32_t timeout) {
    char *reply = NULL;
    int32_t rc = jsonbus_request(b, topic, json, json ? strlen(json) : 0, timeout, &reply, NULL);
    if (reply != NULL) jsonbus_string_free(reply);
    return rc;
}
static int32_t after_status(jsonbus *b, const char *topic, const char *json) {
    int64_t id = jsonbus_publish_after(b, topic, json, json ? strlen(json) : 0, 10);
    return id > 0 ? JSONBUS_OK : (int32_t)id;
}

static char *repeat(char c, size_t n, const char *tail) {
    size_t t = strlen(tail);
    char *s = malloc(n + t + 1);
    CHECK(s != NULL);
    memset(s, c, n);
    memcpy(s + n, tail, t + 1);
    return s;
}

int main(int argc, char **argv) {
    markdown = argc > 1 && strcmp(argv[1], "--markdown") == 0;
    if (markdown)
        printf("| input | status | message (real text) | backed by |\n|---|---|---|---|\n");
    jsonbus *bus = NEW_BUS(NULL);
    int64_t sub = SUBSCRIBE(bus, "a.>", noop, NULL);

    /* ---- NULL arguments, each function ---- */
    ROW("`jsonbus_publish(NULL, ...)`", jsonbus_publish(NULL, "a", "1", 1), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_publish(bus, NULL, ...)` (topic)", jsonbus_publish(bus, NULL, "1", 1), JSONBUS_ERR_NULL, "topic is NULL");
    ROW("`jsonbus_publish(bus, t, NULL, n)` (json)", jsonbus_publish(bus, "a", NULL, 1), JSONBUS_ERR_NULL, "NULL");
    ROW("`jsonbus_subscribe(NULL, ...)`", jsonbus_subscribe(NULL, "a", noop, NULL), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_subscribe(bus, NULL, ...)` (pattern)", jsonbus_subscribe(bus, NULL, noop, NULL), JSONBUS_ERR_NULL, "NULL");
    ROW("`jsonbus_subscribe(bus, p, NULL, ud)` (callback)", jsonbus_subscribe(bus, "a", NULL, NULL), JSONBUS_ERR_NULL, "NULL");
    ROW("`jsonbus_unsubscribe(NULL, id)`", jsonbus_unsubscribe(NULL, sub), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_flush(NULL, t)`", jsonbus_flush(NULL, 0), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_close(NULL, t)`", jsonbus_close(NULL, 0), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_stats(NULL)` (returns NULL)", stats_status(NULL), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`register_callback(NULL, ud)`", register_callback(NULL, NULL), JSONBUS_ERR_NULL, "NULL");
    ROW("`push_json(NULL)`", push_json(NULL), JSONBUS_ERR_NULL, "NULL");
    jsonbus_free(NULL);
    jsonbus_string_free(NULL);

    /* ---- UTF-8 ---- */
    ROW("invalid UTF-8 byte `\"ab\\xff\"`", jsonbus_publish(bus, "a", "\"ab\xff\"", 5), JSONBUS_ERR_UTF8, "offset 3");
    ROW("overlong UTF-8 `\\xc0\\xaf`", jsonbus_publish(bus, "a", "\"\xc0\xaf\"", 4), JSONBUS_ERR_UTF8, "UTF-8");
    ROW("UTF-8-encoded surrogate `\\xed\\xa0\\x80`", jsonbus_publish(bus, "a", "\"\xed\xa0\x80\"", 5), JSONBUS_ERR_UTF8, "UTF-8");
    ROW("truncated UTF-8 sequence", jsonbus_publish(bus, "a", "\"\xe2\x82\"", 4), JSONBUS_ERR_UTF8, "UTF-8");

    /* ---- JSON ---- */
#define BADJSON(label, text, needle) ROW(label, jsonbus_publish(bus, "a", text, strlen(text)), JSONBUS_ERR_JSON, needle)
    BADJSON("empty payload", "", "line 1");
    BADJSON("truncated `{\"a\":`", "{\"a\":", "line 1");
    BADJSON("truncated string `\"abc`", "\"abc", "line 1");
    BADJSON("trailing garbage `{} x`", "{} x", "column 4");
    BADJSON("two values `1 2`", "1 2", "line 1");
    BADJSON("bad literal `tru`", "tru", "line 1");
    BADJSON("bad literal `nul`", "nul", "line 1");
    BADJSON("bad literal `True`", "True", "line 1");
    BADJSON("number `01`", "01", "line 1");
    BADJSON("number `1.`", "1.", "line 1");
    BADJSON("number `-`", "-", "line 1");
    BADJSON("number `.5`", ".5", "line 1");
    BADJSON("number `1e`", "1e", "line 1");
    BADJSON("number `+1`", "+1", "line 1");
    BADJSON("bad escape `\"\\q\"`", "\"\\q\"", "line 1");
    BADJSON("short `\\u` escape `\"\\u12\"`", "\"\\u12\"", "line 1");
    BADJSON("unescaped control char U+0001 in a string", "\"a\x01\"", "line 1");
    BADJSON("unescaped tab in a string", "\"a\tb\"", "line 1");
    BADJSON("trailing comma `[1,]`", "[1,]", "line 1");
    BADJSON("error on line 3", "{\n  \"a\": 1,\n  \"b\": x\n}", "line 3");
    ROW("NUL byte inside the payload (counted in json_len)", jsonbus_publish(bus, "a", "\"a\0b\"", 5), JSONBUS_ERR_JSON, "line 1");
    char *deep = repeat('[', 100000, "");
    ROW("nesting 100,000 deep (`[` x 100000)", jsonbus_publish(bus, "a", deep, strlen(deep)), JSONBUS_ERR_JSON, "128");
    free(deep);
    deep = repeat('[', 129, "");
    ROW("nesting 129 deep (max_depth 128)", jsonbus_publish(bus, "a", deep, strlen(deep)), JSONBUS_ERR_JSON, "max_depth");
    free(deep);
    /* accepted: lone surrogate escapes match the RFC 8259 grammar (section 8.2 lets them be) */
    CHECK_OK(jsonbus_publish(bus, "a", "\"\\ud800\"", 8));
    CHECK_OK(jsonbus_publish(bus, "a", "\"\\udc00x\\ud83d\"", 15));
    if (markdown)
        printf("| lone surrogate escapes `\"\\ud800\"`, `\"\\udc00x\\ud83d\"` | `JSONBUS_OK` (accepted: "
               "the RFC 8259 grammar allows them) | - | test_bad_input.c:%d |\n", __LINE__ - 4);

    /* ---- size ---- */
    jsonbus *small = NEW_BUS("{\"max_message_bytes\":64}");
    char *big = repeat('1', 65, "");
    ROW("payload of 65 bytes, `max_message_bytes` 64", jsonbus_publish(small, "a", big, 65), JSONBUS_ERR_TOO_LARGE, "max_message_bytes is 64");
    free(big);
    jsonbus_free(small);

    /* ---- topics and patterns ---- */
    ROW("empty topic", jsonbus_publish(bus, "", "1", 1), JSONBUS_ERR_TOPIC, "empty");
    ROW("topic `a..b`", jsonbus_publish(bus, "a..b", "1", 1), JSONBUS_ERR_TOPIC, "token 2 is empty");
    ROW("topic with a space `a b`", jsonbus_publish(bus, "a b", "1", 1), JSONBUS_ERR_TOPIC, "a b");
    ROW("non-ASCII topic `caf\\xc3\\xa9`", jsonbus_publish(bus, "caf\xc3\xa9", "1", 1), JSONBUS_ERR_TOPIC, "topic");
    ROW("wildcard in a publish topic `a.*`", jsonbus_publish(bus, "a.*", "1", 1), JSONBUS_ERR_TOPIC, "*");
    ROW("wildcard in a publish topic `a.>`", jsonbus_publish(bus, "a.>", "1", 1), JSONBUS_ERR_TOPIC, ">");
    char *longt = repeat('a', 257, "");
    ROW("topic of 257 bytes", jsonbus_publish(bus, longt, "1", 1), JSONBUS_ERR_TOPIC, "256");
    free(longt);
    ROW("pattern mixing `*` into a token `a*b`", jsonbus_subscribe(bus, "a*b", noop, NULL), JSONBUS_ERR_TOPIC, "a*b");
    ROW("pattern with `>` not last `a.>.b`", jsonbus_subscribe(bus, "a.>.b", noop, NULL), JSONBUS_ERR_TOPIC, ">");
    ROW("pattern `a.`", jsonbus_subscribe(bus, "a.", noop, NULL), JSONBUS_ERR_TOPIC, "empty");

    /* ---- options ---- */
#define BADOPT(label, text, needle) ROW(label, new_status(text), JSONBUS_ERR_OPTIONS, needle)
    BADOPT("unknown option `{\"threads\":1}`", "{\"threads\":1}", "threads");
    BADOPT("option out of range `{\"queue_capacity\":0}`", "{\"queue_capacity\":0}", "16777216");
    BADOPT("option out of range `{\"dispatcher_threads\":257}`", "{\"dispatcher_threads\":257}", "256");
    BADOPT("option out of range `{\"publish_timeout_ms\":-2}`", "{\"publish_timeout_ms\":-2}", "-1");
    BADOPT("option out of range `{\"max_depth\":65536}`", "{\"max_depth\":65536}", "65535");
    BADOPT("option out of range `{\"max_message_bytes\":0}`", "{\"max_message_bytes\":0}", "1073741824");
    BADOPT("option of the wrong type `{\"max_depth\":\"5\"}`", "{\"max_depth\":\"5\"}", "max_depth");
    BADOPT("option not an integer literal `{\"max_depth\":1.0}`", "{\"max_depth\":1.0}", "1.0");
    BADOPT("option given twice `{\"max_depth\":1,\"max_depth\":2}`", "{\"max_depth\":1,\"max_depth\":2}", "more than once");
    BADOPT("options not an object `[]`", "[]", NULL);
    BADOPT("options not JSON `{`", "{", NULL);

    /* ---- subscriptions with options, end notices, pull subscriptions (contract 2A) ---- */
    ROW("`jsonbus_subscribe_with(NULL, ...)`", jsonbus_subscribe_with(NULL, "a", NULL, noop, end_noop, NULL), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_subscribe_with(bus, NULL, ...)` (pattern)", jsonbus_subscribe_with(bus, NULL, NULL, noop, end_noop, NULL), JSONBUS_ERR_NULL, "pattern is NULL");
    ROW("`jsonbus_subscribe_with(bus, p, o, NULL, on_end, ud)` (callback)", jsonbus_subscribe_with(bus, "a", NULL, NULL, end_noop, NULL), JSONBUS_ERR_NULL, "callback is NULL");
#define BADSUB(label, text, needle, needle2) ROW2(label, with_options(bus, text), JSONBUS_ERR_OPTIONS, needle, needle2)
    BADSUB("subscription options not JSON `{\"queue_limit\":`", "{\"queue_limit\":", "not valid JSON", NULL);
    BADSUB("subscription options not an object `[1]`", "[1]", "must be a JSON object", NULL);
    BADSUB("unknown subscription option `{\"limit\":1}`", "{\"limit\":1}", "\"limit\"", "queue_limit, on_full, max_failures, group");
    BADSUB("subscription option of the wrong type `{\"queue_limit\":\"4\"}`", "{\"queue_limit\":\"4\"}", "queue_limit", "0 to 16777216");
    BADSUB("subscription option out of range `{\"queue_limit\":16777217}`", "{\"queue_limit\":16777217}", "queue_limit", "0 to 16777216");
    BADSUB("subscription option out of range `{\"queue_limit\":-1}`", "{\"queue_limit\":-1}", "queue_limit", "0 to 16777216");
    BADSUB("subscription option not an integer literal `{\"queue_limit\":1.0}`", "{\"queue_limit\":1.0}", "queue_limit", "1.0");
    BADSUB("subscription option out of range `{\"max_failures\":2147483648}`", "{\"max_failures\":2147483648}", "max_failures", "0 to 2147483647");
    BADSUB("subscription option of the wrong type `{\"max_failures\":true}`", "{\"max_failures\":true}", "max_failures", "0 to 2147483647");
    BADSUB("unknown `on_full` `{\"on_full\":\"drop\"}`", "{\"on_full\":\"drop\"}", "on_full", "\"block\", \"drop_oldest\", \"drop_new\", \"end\"");
    BADSUB("`on_full` is case-sensitive `{\"on_full\":\"Block\"}`", "{\"on_full\":\"Block\"}", "on_full", "\"block\", \"drop_oldest\", \"drop_new\", \"end\"");
    BADSUB("`on_full` of the wrong type `{\"on_full\":1}`", "{\"on_full\":1}", "on_full", "\"block\", \"drop_oldest\", \"drop_new\", \"end\"");
    BADSUB("`group` with a dot `{\"group\":\"a.b\"}`", "{\"group\":\"a.b\"}", "group", "one topic token");
    BADSUB("`group` a wildcard `{\"group\":\"*\"}`", "{\"group\":\"*\"}", "group", "one topic token");
    BADSUB("`group` a wildcard `{\"group\":\">\"}`", "{\"group\":\">\"}", "group", "one topic token");
    BADSUB("`group` mixing a wildcard `{\"group\":\"a*b\"}`", "{\"group\":\"a*b\"}", "group", "one topic token");
    BADSUB("`group` empty `{\"group\":\"\"}`", "{\"group\":\"\"}", "group", "one topic token");
    BADSUB("`group` with a space `{\"group\":\"a b\"}`", "{\"group\":\"a b\"}", "group", "one topic token");
    BADSUB("`group` not ASCII `{\"group\":\"caf\\u00e9\"}`", "{\"group\":\"caf\\u00e9\"}", "group", "one topic token");
    char *longg = repeat('g', 257, "\"}");
    char *longgo = malloc(strlen(longg) + 11);
    CHECK(longgo != NULL);
    sprintf(longgo, "{\"group\":\"%s", longg);
    BADSUB("`group` of 257 bytes", longgo, "group", "256");
    free(longgo);
    free(longg);
    BADSUB("`group` of the wrong type `{\"group\":null}`", "{\"group\":null}", "group", "not null");
    BADSUB("subscription option given twice `{\"group\":\"a\",\"group\":\"b\"}`", "{\"group\":\"a\",\"group\":\"b\"}", "group", "more than once");
    BADSUB("subscription options not UTF-8 `{\"group\":\"\\xff\"}`", "{\"group\":\"\xff\"}", "UTF-8", NULL);
    ROW("`jsonbus_subscribe_with`, good options, bad pattern `a.>.b`", jsonbus_subscribe_with(bus, "a.>.b", "{\"queue_limit\":1}", noop, NULL, NULL), JSONBUS_ERR_TOPIC, ">");
    ROW("`jsonbus_subscribe_pull(NULL, p, o)`", jsonbus_subscribe_pull(NULL, "a", NULL), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_subscribe_pull(bus, NULL, o)` (pattern)", jsonbus_subscribe_pull(bus, NULL, NULL), JSONBUS_ERR_NULL, "pattern is NULL");
    ROW2("`jsonbus_subscribe_pull`, unknown `on_full` `{\"on_full\":\"never\"}`", jsonbus_subscribe_pull(bus, "a", "{\"on_full\":\"never\"}"), JSONBUS_ERR_OPTIONS, "on_full", "\"drop_oldest\"");
    ROW2("`jsonbus_subscribe_pull`, `group` a wildcard `{\"group\":\">\"}`", jsonbus_subscribe_pull(bus, "a", "{\"group\":\">\"}"), JSONBUS_ERR_OPTIONS, "group", "one topic token");
    ROW("`jsonbus_subscribe_pull`, bad pattern `a..b`", jsonbus_subscribe_pull(bus, "a..b", NULL), JSONBUS_ERR_TOPIC, "token 2 is empty");

    jsonbus *pb = NEW_BUS("{\"publish_timeout_ms\":0}");
    jsonbus *other = NEW_BUS(NULL);
    int64_t pull = jsonbus_subscribe_pull(pb, "p", NULL);
    int64_t cbsub = jsonbus_subscribe_with(pb, "c", "{\"queue_limit\":4}", noop, end_noop, NULL);
    int64_t other_pull = jsonbus_subscribe_pull(other, "p", NULL);
    CHECK(pull > 0 && cbsub > 0 && other_pull > 0);
    jsonbus_message *msg = NULL;
    ROW("`jsonbus_next(bus, id, t, NULL)` (msg)", jsonbus_next(pb, pull, 0, NULL), JSONBUS_ERR_NULL, "msg is NULL");
    ROW("`jsonbus_next(NULL, id, t, &m)`", jsonbus_next(NULL, pull, 0, &msg), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_next`, unknown subscription id", next_status(pb, 987654321, 0), JSONBUS_ERR_NOT_FOUND, "987654321");
    ROW("`jsonbus_next` of a callback subscription", next_status(pb, cbsub, 0), JSONBUS_ERR_NOT_FOUND, "callback subscription");
    ROW("`jsonbus_next` of another bus's pull subscription", next_status(pb, other_pull, 0), JSONBUS_ERR_NOT_FOUND, "no pull subscription");
    ROW("`jsonbus_next`, nothing queued, timeout 0", next_status(pb, pull, 0), JSONBUS_ERR_TIMEOUT, "within 0 ms");
    ROW("`jsonbus_next`, nothing queued, timeout 20 ms", next_status(pb, pull, 20), JSONBUS_ERR_TIMEOUT, "within 20 ms");
    ROW("`jsonbus_pull_fd(NULL, id)`", jsonbus_pull_fd(NULL, pull), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_pull_fd` of a callback subscription", jsonbus_pull_fd(pb, cbsub), JSONBUS_ERR_NOT_FOUND, "callback subscription");
    ROW("`jsonbus_pull_fd`, unknown subscription id", jsonbus_pull_fd(pb, 987654321), JSONBUS_ERR_NOT_FOUND, "987654321");
    ROW("`jsonbus_subscription_stats(NULL, id)` (returns NULL)", sub_stats_status(NULL, pull), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_subscription_stats`, unknown id (returns NULL)", sub_stats_status(pb, 987654321), JSONBUS_ERR_NOT_FOUND, "987654321");
    /* a pull subscription that ends as slow: its queue (limit 1, "end") overflows */
    int64_t slow = jsonbus_subscribe_pull(pb, "s", "{\"queue_limit\":1,\"on_full\":\"end\"}");
    CHECK(slow > 0);
    PUBLISH(pb, "s", "1");
    PUBLISH(pb, "s", "2");
    ROW2("`jsonbus_next` of a pull subscription that ended (`on_full` \"end\")", next_status(pb, slow, 0), JSONBUS_ERR_ENDED, "JSONBUS_END_SLOW", "jsonbus_unsubscribe releases it");
    ROW("`jsonbus_next` of it, with a time limit (returns at once)", next_status(pb, slow, 60000), JSONBUS_ERR_ENDED, "JSONBUS_END_SLOW");
    CHECK_OK(sub_stats_status(pb, slow)); /* still known until released */
    CHECK_OK(jsonbus_unsubscribe(pb, slow)); /* releases it */
    ROW("`jsonbus_next` of a pull subscription after `jsonbus_unsubscribe`", next_status(pb, slow, 0), JSONBUS_ERR_NOT_FOUND, "no pull subscription");
    ROW("`jsonbus_pull_fd` of a pull subscription after `jsonbus_unsubscribe`", jsonbus_pull_fd(pb, slow), JSONBUS_ERR_NOT_FOUND, "no pull subscription");
    ROW("`jsonbus_subscription_stats` of a released pull subscription", sub_stats_status(pb, slow), JSONBUS_ERR_NOT_FOUND, "no subscription");
    ROW("`jsonbus_unsubscribe` of a released pull subscription", jsonbus_unsubscribe(pb, slow), JSONBUS_ERR_NOT_FOUND, "no subscription");
    /* "block" at its limit, publish_timeout_ms 0 */
    int64_t blocking = jsonbus_subscribe_pull(pb, "b", "{\"queue_limit\":1}");
    CHECK(blocking > 0);
    PUBLISH(pb, "b", "1");
    ROW("publish to a pull subscription at its `queue_limit` (\"block\", `publish_timeout_ms` 0)", jsonbus_publish(pb, "b", "2", 1), JSONBUS_ERR_FULL, "queue_limit");
    CHECK_OK(jsonbus_unsubscribe(pb, cbsub));
    ROW("`jsonbus_subscription_stats` of a callback subscription after `jsonbus_unsubscribe`", sub_stats_status(pb, cbsub), JSONBUS_ERR_NOT_FOUND, "no subscription");
    ROW("`jsonbus_next` of a callback subscription after `jsonbus_unsubscribe`", next_status(pb, cbsub, 0), JSONBUS_ERR_NOT_FOUND, "no pull subscription");
    /* after close: pull subscriptions stay known and answer ENDED until the bus is freed */
    CHECK_RC(jsonbus_close(pb, 0), JSONBUS_ERR_TIMEOUT); /* the "b" message was never pulled */
    ROW2("`jsonbus_next` of a pull subscription after `jsonbus_close`", next_status(pb, pull, 0), JSONBUS_ERR_ENDED, "JSONBUS_END_CLOSED", "has ended");
    ROW("`jsonbus_unsubscribe` of a pull subscription after `jsonbus_close`", jsonbus_unsubscribe(pb, pull), JSONBUS_ERR_NOT_FOUND, "no subscription");
    ROW("`jsonbus_subscribe_with` after close", jsonbus_subscribe_with(pb, "a", NULL, noop, end_noop, NULL), JSONBUS_ERR_CLOSED, "closed");
    ROW("`jsonbus_subscribe_with` after close, bad options too", with_options(pb, "{\"limit\":1}"), JSONBUS_ERR_CLOSED, "closed");
    ROW("`jsonbus_subscribe_pull` after close", jsonbus_subscribe_pull(pb, "a", NULL), JSONBUS_ERR_CLOSED, "closed");
    jsonbus_free(pb);
    jsonbus_free(other);
    jsonbus_message_release(NULL);
    row_value(__LINE__, "`jsonbus_message_release(NULL)`", 1, "does nothing (like `free(NULL)`)");
    row_value(__LINE__, "`jsonbus_end_reason_name(999)`, `(0)`, `(-1)`",
              strcmp(jsonbus_end_reason_name(999), "JSONBUS_END_UNKNOWN") == 0 &&
                  strcmp(jsonbus_end_reason_name(0), "JSONBUS_END_UNKNOWN") == 0 &&
                  strcmp(jsonbus_end_reason_name(-1), "JSONBUS_END_UNKNOWN") == 0,
              "`\"JSONBUS_END_UNKNOWN\"` (never NULL)");

    /* ---- unknown subscription, double unsubscribe ---- */
    ROW("unknown subscription id", jsonbus_unsubscribe(bus, 987654321), JSONBUS_ERR_NOT_FOUND, "987654321");
    CHECK_OK(jsonbus_unsubscribe(bus, sub));
    ROW("double unsubscribe", jsonbus_unsubscribe(bus, sub), JSONBUS_ERR_NOT_FOUND, "no subscription");

    /* ---- calls from a callback that would deadlock ---- */
    deadlock_bus = NEW_BUS(NULL);
    SUBSCRIBE(deadlock_bus, "d", deadlocking, NULL);
    PUBLISH(deadlock_bus, "d", "1");
    CHECK_OK(jsonbus_flush(deadlock_bus, 5000));
    row_in_cb(__LINE__, "`jsonbus_flush` of its own bus from a callback", &cb_flush, JSONBUS_ERR_DEADLOCK, "jsonbus_flush");
    row_in_cb(__LINE__, "`jsonbus_close` of its own bus from a callback", &cb_close, JSONBUS_ERR_DEADLOCK, "close");
    row_in_cb(__LINE__, "`jsonbus_free` of its own bus from a callback (does nothing)", &cb_free, JSONBUS_ERR_DEADLOCK, "");
    CHECK_OK(register_callback(deadlocking_default, NULL) > 0 ? JSONBUS_OK : -1);
    CHECK_OK(push_json("1"));
    CHECK_OK(jsonbus_flush(jsonbus_default(), 5000));
    row_in_cb(__LINE__, "`jsonbus_shutdown` from a callback of the default bus", &cb_shutdown, JSONBUS_ERR_DEADLOCK, "");
    row_in_cb(__LINE__, "`jsonbus_close(jsonbus_default())` from its callback", &cb_default_close, JSONBUS_ERR_DEADLOCK, "");
    CHECK_OK(jsonbus_shutdown(-1));

    /* ---- use after close ---- */
    CHECK_OK(jsonbus_close(deadlock_bus, -1));
    ROW("publish after close", jsonbus_publish(deadlock_bus, "d", "1", 1), JSONBUS_ERR_CLOSED, "closed");
    ROW("subscribe after close", jsonbus_subscribe(deadlock_bus, "d", noop, NULL), JSONBUS_ERR_CLOSED, "closed");
    ROW("unsubscribe after close", jsonbus_unsubscribe(deadlock_bus, 1), JSONBUS_ERR_NOT_FOUND, "no subscription");
    CHECK_OK(jsonbus_flush(deadlock_bus, 0));   /* contract: OK after close */
    CHECK_OK(jsonbus_close(deadlock_bus, 0));   /* second close: OK */
    CHECK_OK(stats_status(deadlock_bus));       /* stats still work */
    jsonbus_free(deadlock_bus);

    /* ---- full, timeout ---- */
    jsonbus *full = NEW_BUS("{\"queue_capacity\":1,\"publish_timeout_ms\":0}");
    PUBLISH(full, "f", "1"); /* unrouted: released at once */
    jsonbus_free(full);

    /* ---- Part 2B: requests and timers ---- */
    request_bus = NEW_BUS("{\"queue_capacity\":2,\"publish_timeout_ms\":0}");
    jsonbus *rb = request_bus;
    char *reply = NULL;
    ROW("`jsonbus_request(NULL, ...)`", jsonbus_request(NULL, "svc", "1", 1, 0, &reply, NULL), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_request(bus, t, j, n, ms, NULL, len)` (reply)", jsonbus_request(rb, "svc", "1", 1, 0, NULL, NULL), JSONBUS_ERR_NULL, "reply is NULL");
    ROW("`jsonbus_request(bus, NULL, ...)` (topic)", request_status(rb, NULL, "1", 0), JSONBUS_ERR_NULL, "topic is NULL");
    ROW("`jsonbus_request` on a wildcard topic `svc.*`", request_status(rb, "svc.*", "1", 0), JSONBUS_ERR_TOPIC, "only subscription patterns");
    ROW("`jsonbus_request` with invalid JSON `{`", request_status(rb, "svc", "{", 0), JSONBUS_ERR_JSON, "not valid JSON");
    ROW("`jsonbus_request` that no subscription matches", request_status(rb, "svc", "1", 1000), JSONBUS_ERR_NO_RESPONDERS, "no subscription matches \"svc\"");
    ROW("`jsonbus_request_async(..., NULL, ud)` (cb)", jsonbus_request_async(rb, "svc", "1", 1, 0, NULL, NULL), JSONBUS_ERR_NULL, "cb is NULL");
    ROW("`jsonbus_request_async` that no subscription matches (cb never called)", jsonbus_request_async(rb, "svc", "1", 1, 0, on_reply_noop, NULL), JSONBUS_ERR_NO_RESPONDERS, "no responder");
    int64_t quiet = jsonbus_subscribe(rb, "svc", silent, NULL);
    CHECK(quiet > 0);
    ROW("`jsonbus_request` whose responder never answers (10 ms)", request_status(rb, "svc", "1", 10), JSONBUS_ERR_TIMEOUT, "no reply to the request on \"svc\" within 10 ms");
    CHECK_OK(jsonbus_unsubscribe(rb, quiet));
    SUBSCRIBE(rb, "ask", requesting, NULL);
    PUBLISH(rb, "ask", "1");
    CHECK_OK(jsonbus_flush(rb, 5000));
    row_in_cb(__LINE__, "`jsonbus_request` on its own bus from a callback", &cb_request, JSONBUS_ERR_DEADLOCK, "use jsonbus_request_async there");
    jsonbus_message plain = {"t", 1, "1", 1, 1, 0, 1, NULL, 0};
    ROW("`jsonbus_reply(bus, NULL, ...)` (request)", jsonbus_reply(rb, NULL, "1", 1), JSONBUS_ERR_NULL, "request is NULL");
    ROW("`jsonbus_reply` to a message without `reply_to`", jsonbus_reply(rb, &plain, "1", 1), JSONBUS_ERR_NOT_FOUND, "no reply_to");
    jsonbus_message asked = {"t", 1, "1", 1, 1, 0, 1, "_INBOX.x.1", 10};
    ROW("`jsonbus_reply` with invalid JSON `[1,`", jsonbus_reply(rb, &asked, "[1,", 3), JSONBUS_ERR_JSON, "not valid JSON");
    ROW("`jsonbus_publish_after(NULL, ...)`", after_status(NULL, "t", "1"), JSONBUS_ERR_NULL, "bus is NULL");
    ROW("`jsonbus_publish_after(bus, NULL, ...)` (topic)", after_status(rb, NULL, "1"), JSONBUS_ERR_NULL, "topic is NULL");
    ROW("`jsonbus_publish_after` on topic `a..b`", after_status(rb, "a..b", "1"), JSONBUS_ERR_TOPIC, "token 2 is empty");
    ROW("`jsonbus_publish_after` with invalid UTF-8", after_status(rb, "t", "\"\xff\""), JSONBUS_ERR_UTF8, "UTF-8");
    int64_t t1 = jsonbus_publish_after(rb, "t", "1", 1, 60000);
    int64_t t2 = jsonbus_publish_after(rb, "t", "2", 1, 60000);
    CHECK(t1 > 0 && t2 > 0);
    ROW("`jsonbus_publish_after` while pending timers fill `queue_capacity` 2", after_status(rb, "t", "3"), JSONBUS_ERR_FULL, "the bus is full (2 messages held");
    ROW("`jsonbus_cancel(NULL, id)`", jsonbus_cancel(NULL, t1), JSONBUS_ERR_NULL, "bus is NULL");
    CHECK_OK(jsonbus_cancel(rb, t1));
    ROW("`jsonbus_cancel` of a timer already cancelled", jsonbus_cancel(rb, t1), JSONBUS_ERR_NOT_FOUND, "no pending timer");
    ROW("`jsonbus_cancel` of an id no timer has (-5)", jsonbus_cancel(rb, -5), JSONBUS_ERR_NOT_FOUND, "no pending timer -5");
    CHECK_OK(jsonbus_close(rb, -1));
    ROW("`jsonbus_cancel` of a timer discarded by `jsonbus_close`", jsonbus_cancel(rb, t2), JSONBUS_ERR_NOT_FOUND, "discarded by close");
    ROW("`jsonbus_request` after close", request_status(rb, "svc", "1", 0), JSONBUS_ERR_CLOSED, "cannot make a request");
    ROW("`jsonbus_publish_after` after close", after_status(rb, "t", "1"), JSONBUS_ERR_CLOSED, "cannot set a timer");
    jsonbus_free(rb);
    jsonbus *now = NEW_BUS(NULL);
    row_value(__LINE__, "`jsonbus_publish_after` with `delay_ms` -5 or `INT64_MAX`", jsonbus_publish_after(now, "t", "1", 1, -5) > 0 && jsonbus_publish_after(now, "t", "1", 1, INT64_MAX) > 0, "a timer id: negative fires at once, more than 2^40 ms is taken as 2^40");
    jsonbus_free(now);

    jsonbus_free(bus);
    CHECK_SOFT_DONE();
    if (!markdown) printf("ok\n");
    return 0;
}
