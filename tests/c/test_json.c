/*
 * test_json: payload validation on the caller's thread (contract: JSON, guarantee 1).
 *
 * Invalid UTF-8 -> JSONBUS_ERR_UTF8 (message names the byte offset), invalid JSON of many
 * kinds -> JSONBUS_ERR_JSON (message names line and column), nesting deeper than max_depth
 * -> JSONBUS_ERR_JSON (exactly max_depth accepted), payload over max_message_bytes ->
 * JSONBUS_ERR_TOO_LARGE; valid JSON accepted; json_len respected; the payload is copied;
 * rejections counted by reason; nothing invalid is ever delivered.
 */
#include "check.h"

static atomic_int delivered;
static atomic_int delivered_bad;

static int32_t record_callback(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    if (msg->json[msg->json_len] != '\0') atomic_fetch_add(&delivered_bad, 1);
    atomic_fetch_add(&delivered, 1);
    return JSONBUS_OK;
}

/* publish must fail with `code`; the message must contain each of the `needles` (up to 2). */
static void reject_at(const char *file, int line, jsonbus *bus, const char *json, size_t len,
                      int32_t code, const char *needle1, const char *needle2) {
    int32_t rc = jsonbus_publish(bus, "t", json, len);
    const char *err = jsonbus_last_error();
    char shown[80];
    size_t n = len < 40 ? len : 40;
    for (size_t i = 0; i < n; i++)
        shown[i] = (json[i] >= 0x20 && json[i] < 0x7f) ? json[i] : '?';
    shown[n] = '\0';
    if (rc != code)
        SOFT_RETURN(file, line, "publish of \"%s\"%s (%zu bytes) returned %s, expected %s", shown,
                   len > 40 ? "..." : "", len, jsonbus_status_name(rc), jsonbus_status_name(code));
    if (jsonbus_last_status() != code)
        SOFT_RETURN(file, line, "jsonbus_last_status() is %s after %s",
                   jsonbus_status_name(jsonbus_last_status()), jsonbus_status_name(code));
    if (err == NULL || err[0] == '\0')
        SOFT_RETURN(file, line, "no jsonbus_last_error() for \"%s\"", shown);
    if (needle1 && !strstr(err, needle1))
        SOFT_RETURN(file, line, "error for \"%s\" does not mention \"%s\": %s", shown, needle1, err);
    if (needle2 && !strstr(err, needle2))
        SOFT_RETURN(file, line, "error for \"%s\" does not mention \"%s\": %s", shown, needle2, err);
}
#define REJECT_LEN(bus, json, len, code, n1, n2) reject_at(__FILE__, __LINE__, bus, json, len, code, n1, n2)
#define REJECT(bus, json, code, n1, n2) REJECT_LEN(bus, json, strlen(json), code, n1, n2)
#define REJECT_JSON(bus, json) REJECT(bus, json, JSONBUS_ERR_JSON, "line", "column")

static void accept_at(const char *file, int line, jsonbus *bus, const char *json, size_t len) {
    int32_t rc = jsonbus_publish(bus, "t", json, len);
    if (rc != JSONBUS_OK)
        SOFT_RETURN(file, line, "valid payload \"%.60s\" (%zu bytes) rejected with %s", json, len,
                   jsonbus_status_name(rc));
    if (jsonbus_last_status() != JSONBUS_OK || jsonbus_last_error()[0] != '\0')
        SOFT_RETURN(file, line, "success did not clear the last error");
}
#define ACCEPT_LEN(bus, json, len) accept_at(__FILE__, __LINE__, bus, json, len)
#define ACCEPT(bus, json) ACCEPT_LEN(bus, json, strlen(json))

static char *nested(int depth, char open, char close, const char *inner) {
    size_t in = strlen(inner);
    char *s = malloc((size_t)depth * 2 + in + 1);
    CHECK(s != NULL);
    memset(s, open, (size_t)depth);
    memcpy(s + depth, inner, in);
    memset(s + depth + in, close, (size_t)depth);
    s[2 * (size_t)depth + in] = '\0';
    return s;
}

/* {"a":{"a":...1...}} with `depth` objects */
static char *nested_objects(int depth) {
    char *s = malloc((size_t)depth * 6 + 2);
    CHECK(s != NULL);
    char *p = s;
    for (int i = 0; i < depth; i++) p += sprintf(p, "{\"a\":");
    *p++ = '1';
    for (int i = 0; i < depth; i++) *p++ = '}';
    *p = '\0';
    return s;
}

/* ---- the caller may reuse its buffer at once ---- */
static char copied_seen[64];
static int32_t copy_callback(const jsonbus_message *msg, void *user_data) {
    (void)user_data;
    snprintf(copied_seen, sizeof copied_seen, "%s", msg->json);
    return JSONBUS_OK;
}

int main(void) {
    jsonbus *bus = NEW_BUS(NULL);
    SUBSCRIBE(bus, "t", record_callback, NULL);

    /* ---- valid payloads ---- */
    static const char *const valid[] = {
        "1", "-0", "0", "-0.5e+10", "1E-3", "3.14159", "123456789012345678901234567890",
        "\"\"", "\"s\"", "true", "false", "null", "[]", "{}", "[[]]", "{\"\":{}}",
        " \t\r\n {\"a\":[1,{\"b\":null}],\"c\":\"d\"} \n\t\r ",
        "\"\\u00e9\\ud83d\\ude00 \\\" \\\\ \\/ \\b \\f \\n \\r \\t\"",
        "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e\"", /* UTF-8 text */
        "{\"a\":1,\"a\":2}",                             /* duplicate names: valid RFC 8259 */
        "[1,\"two\",3.0,true,false,null,{},[]]",
    };
    int nvalid = (int)(sizeof valid / sizeof valid[0]);
    for (int i = 0; i < nvalid; i++) ACCEPT(bus, valid[i]);
    /* RFC 8259 lets implementations limit number range: only report */
    if (jsonbus_publish(bus, "t", "1e400", 5) != JSONBUS_OK)
        printf("note: 1e400 rejected: %s\n", jsonbus_last_error());
    else
        nvalid++;

    /* json_len is respected: bytes after it are not part of the payload */
    static const char longer[] = "[1,2]garbage";
    ACCEPT_LEN(bus, longer, 5);
    nvalid++;

    /* ---- invalid UTF-8 (checked before the JSON) ---- */
    char buf[256];
    buf[0] = '"';
    memset(buf + 1, 'x', 123);
    buf[124] = (char)0xff; /* byte offset 124 */
    buf[125] = '"';
    buf[126] = '\0';
    int32_t rc = jsonbus_publish(bus, "t", buf, 126);
    CHECK_RC(rc, JSONBUS_ERR_UTF8);
    CHECK_MSG(strstr(jsonbus_last_error(), "124") != NULL,
              "UTF-8 error does not name byte offset 124: %s", jsonbus_last_error());
    REJECT(bus, "\"\xc0\xaf\"", JSONBUS_ERR_UTF8, NULL, NULL);         /* overlong */
    REJECT(bus, "\"\xed\xa0\x80\"", JSONBUS_ERR_UTF8, NULL, NULL);     /* surrogate */
    REJECT(bus, "\"\xe2\x82\"", JSONBUS_ERR_UTF8, NULL, NULL);         /* truncated */
    REJECT(bus, "\"\xf4\x90\x80\x80\"", JSONBUS_ERR_UTF8, NULL, NULL); /* > U+10FFFF */
    REJECT(bus, "\"\x80\"", JSONBUS_ERR_UTF8, NULL, NULL);             /* lone continuation */
    REJECT(bus, "[1]\xff", JSONBUS_ERR_UTF8, NULL, NULL);              /* outside a string */
    REJECT(bus, "{\xff", JSONBUS_ERR_UTF8, NULL, NULL);                /* bad JSON too */
    REJECT_LEN(bus, "\"ab\xe2\x82\xac", 5, JSONBUS_ERR_UTF8, NULL, NULL); /* cut by json_len */
    int nutf8 = 8;

    /* ---- invalid JSON ---- */
    static const char *const invalid[] = {
        "{\"a\":1} x",          /* trailing garbage */
        "1 2",                  /* two values */
        "{} {}",                /* two values */
        "",                     /* empty */
        "   \n ",               /* only white space */
        "}",                    /* bare } */
        "]",                    /* bare ] */
        "\"abc",                /* unterminated string */
        "\"a\x01" "b\"",        /* control character in a string */
        "\"a\tb\"",             /* raw tab in a string */
        "\"a\nb\"",             /* raw newline in a string */
        "\"\\q\"",              /* bad escape */
        "\"\\u12\"",            /* short \u escape */
        "\"\\x41\"",            /* not a JSON escape */
        "01",                   /* leading zero */
        "[00]",                 /* leading zeros */
        "-",                    /* lone minus */
        "1.",                   /* no fraction digits */
        ".5",                   /* no integer part */
        "1e",                   /* no exponent digits */
        "+1",                   /* plus sign */
        "0x10",                 /* hex */
        "NaN",                  /* not JSON */
        "Infinity",             /* not JSON */
        "-Infinity",            /* not JSON */
        "[1,2,]",               /* trailing comma */
        "{\"a\":1,}",           /* trailing comma */
        "[1 2]",                /* missing comma */
        "{\"a\" 1}",            /* missing colon */
        "{a:1}",                /* unquoted name */
        "{1:1}",                /* number as name */
        "'a'",                  /* single quotes */
        "tru",                  /* truncated literal */
        "nul",                  /* truncated literal */
        "True",                 /* wrong case */
        "[",                    /* unterminated array */
        "{\"a\":",              /* unterminated object */
        "[1]]",                 /* extra bracket */
        "/* c */ 1",            /* comments */
    };
    int ninvalid = (int)(sizeof invalid / sizeof invalid[0]);
    for (int i = 0; i < ninvalid; i++) REJECT_JSON(bus, invalid[i]);
    /* a NUL inside the payload (json_len counts it) */
    REJECT_LEN(bus, "\"a\0b\"", 5, JSONBUS_ERR_JSON, "line", "column");
    REJECT_LEN(bus, "1\0", 2, JSONBUS_ERR_JSON, "line", "column");
    ninvalid += 2;
    /* where: line 3 */
    REJECT(bus, "{\n  \"a\": 1,\n  \"b\": x\n}", JSONBUS_ERR_JSON, "line 3", "column");
    ninvalid++;

    /* ---- nesting depth: default max_depth 128 ---- */
    char *s = nested(128, '[', ']', "1");
    ACCEPT(bus, s);
    free(s);
    s = nested(129, '[', ']', "1");
    REJECT_JSON(bus, s);
    free(s);
    s = nested(100000, '[', ']', "");
    REJECT_JSON(bus, s); /* must not overflow a stack */
    free(s);
    s = nested(100000, '[', '[', ""); /* 200,000 '[' unclosed */
    REJECT_JSON(bus, s);
    free(s);
    s = nested_objects(128);
    ACCEPT(bus, s);
    free(s);
    s = nested_objects(129);
    REJECT_JSON(bus, s);
    free(s);
    nvalid += 2;
    ninvalid += 4;

    /* ---- counters: before the other buses ---- */
    CHECK_OK(jsonbus_flush(bus, 10000));
    CHECK_EQ(atomic_load(&delivered_bad), 0);
    if (!check_soft_failures) { /* only meaningful when every input got its answer */
        CHECK_EQ(atomic_load(&delivered), nvalid);
        CHECK_EQ(STAT(bus, "published"), nvalid);
        CHECK_EQ(REJECTED(bus, "utf8"), nutf8 + 1);
        CHECK_EQ(REJECTED(bus, "json"), ninvalid);
        CHECK_EQ(REJECTED(bus, "topic"), 0);
        CHECK_EQ(REJECTED(bus, "too_large"), 0);
    }

    /* ---- small max_depth ---- */
    jsonbus *shallow = NEW_BUS("{\"max_depth\":1}");
    ACCEPT(shallow, "[1,2,3]");
    ACCEPT(shallow, "{\"a\":1}");
    ACCEPT(shallow, "\"scalar\"");
    REJECT_JSON(shallow, "[[1]]");
    REJECT_JSON(shallow, "[1,2,{}]");
    REJECT_JSON(shallow, "[{}]");
    REJECT_JSON(shallow, "{\"a\":[]}");
    jsonbus_free(shallow);
    jsonbus *five = NEW_BUS("{\"max_depth\":5}");
    ACCEPT(five, "[[[[[1]]]]]");
    ACCEPT(five, "{\"a\":[{\"b\":[{}]}]}");
    REJECT_JSON(five, "[[[[[[1]]]]]]");
    REJECT_JSON(five, "{\"a\":[{\"b\":[{\"c\":[]}]}]}");
    jsonbus_free(five);

    /* the deepest allowed option value, on the caller's (main) thread */
    jsonbus *deep = NEW_BUS("{\"max_depth\":65535}");
    s = nested(65535, '[', ']', "");
    ACCEPT(deep, s);
    free(s);
    s = nested(65536, '[', ']', "");
    REJECT_JSON(deep, s);
    free(s);
    jsonbus_free(deep);

    /* ---- max_message_bytes ---- */
    jsonbus *small = NEW_BUS("{\"max_message_bytes\":10}");
    ACCEPT(small, "\"12345678\"");                              /* 10 bytes */
    REJECT(small, "\"123456789\"", JSONBUS_ERR_TOO_LARGE, NULL, NULL); /* 11 */
    REJECT(small, "xxxxxxxxxxx", JSONBUS_ERR_TOO_LARGE, NULL, NULL);  /* size before JSON */
    REJECT(small, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", JSONBUS_ERR_TOO_LARGE, NULL,
           NULL); /* size before UTF-8 */
    if (!check_soft_failures) {
        CHECK_EQ(REJECTED(small, "too_large"), 3);
        CHECK_EQ(REJECTED(small, "json"), 0);
        CHECK_EQ(REJECTED(small, "utf8"), 0);
    }
    jsonbus_free(small);

    /* default limit 16 MiB: exactly 16777216 bytes accepted, one more refused */
    size_t big_len = 16777216;
    char *big = malloc(big_len + 2);
    CHECK(big != NULL);
    big[0] = '"';
    memset(big + 1, 'a', big_len - 2);
    big[big_len - 1] = '"';
    big[big_len] = '\0';
    ACCEPT_LEN(bus, big, big_len);
    big[big_len - 1] = 'a';
    big[big_len] = '"';
    big[big_len + 1] = '\0';
    REJECT_LEN(bus, big, big_len + 1, JSONBUS_ERR_TOO_LARGE, NULL, NULL);
    free(big);

    /* ---- the payload is copied: the caller's buffer is reused at once ---- */
    jsonbus *copy = NEW_BUS(NULL);
    SUBSCRIBE(copy, "t", copy_callback, NULL);
    char reuse[32] = "{\"v\":\"original\"}";
    CHECK_OK(jsonbus_publish(copy, "t", reuse, strlen(reuse)));
    memset(reuse, 'X', sizeof reuse - 1);
    CHECK_OK(jsonbus_flush(copy, 5000));
    CHECK_STREQ(copied_seen, "{\"v\":\"original\"}");
    jsonbus_free(copy);

    CHECK_OK(jsonbus_close(bus, -1));
    jsonbus_free(bus);
    CHECK_SOFT_DONE();
    printf("ok\n");
    return 0;
}
