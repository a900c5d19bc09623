/*
 * process_compat.h - the contract's Part 2C declarations (jsonbus_serve, jsonbus_attach and their
 * status codes), for compiling the multi-process tests against a jsonbus.h that does not have
 * them yet. Include it after jsonbus.h (check.h): once the generated header declares them it
 * does nothing.
 */
#ifndef JSONBUS_TEST_PROCESS_COMPAT_H
#define JSONBUS_TEST_PROCESS_COMPAT_H

#include "jsonbus.h"

#ifndef JSONBUS_ERR_NO_BUS
#define JSONBUS_ERR_NO_BUS -16
#define JSONBUS_ERR_NAME_IN_USE -17
#define JSONBUS_ERR_PERMISSION -18
#define JSONBUS_ERR_DISCONNECTED -19
#define JSONBUS_ERR_PEER -20
#define JSONBUS_ERR_LIMIT -21

#ifdef __cplusplus
extern "C" {
#endif
int32_t jsonbus_serve(struct jsonbus *bus, const char *name, const char *options_json);
struct jsonbus *jsonbus_attach(const char *name, const char *options_json);
#ifdef __cplusplus
}
#endif
#endif /* JSONBUS_ERR_NO_BUS */

#endif /* JSONBUS_TEST_PROCESS_COMPAT_H */
