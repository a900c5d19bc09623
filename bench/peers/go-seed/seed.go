// go-seed: the Go pattern that jsonbus replaces, built with -buildmode=c-shared.
//
// push_json copies the C string (C.GoString), starts a goroutine per message that does
// the seed's "heavy work" (encoding/json into map[string]any) and then calls the
// registered C callbacks through a small C trampoline (seed_deliver in trampoline.c);
// a sync.WaitGroup tracks the goroutines and jsonbus_flush is wg.Wait().
// No order, no bound: that is the seed.
package main

/*
#include <stdint.h>
#include <stdlib.h>
extern uint64_t jsonbus_now_ns(void);
extern void seed_deliver(const char *json, size_t len, uint64_t seq, uint64_t published_ns);
*/
import "C"

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"unsafe"
)

var (
	wg       sync.WaitGroup
	seq      atomic.Uint64
	failures atomic.Uint64
)

func process(s string, n uint64, published uint64) {
	defer wg.Done()
	// the seed does json.Unmarshal([]byte(s), ...); the extra NUL byte lets C read the
	// buffer as a C string, at no extra cost over the plain conversion
	buf := make([]byte, len(s)+1)
	copy(buf, s)
	var m map[string]any
	if err := json.Unmarshal(buf[:len(s)], &m); err != nil {
		failures.Add(1)
		return
	}
	C.seed_deliver((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(s)), C.uint64_t(n), C.uint64_t(published))
}

//export push_json
func push_json(cs *C.char) C.int32_t {
	if cs == nil {
		return -1
	}
	published := uint64(C.jsonbus_now_ns())
	s := C.GoString(cs)
	n := seq.Add(1)
	wg.Add(1)
	go process(s, n, published)
	return 0
}

//export jsonbus_flush
func jsonbus_flush(bus unsafe.Pointer, timeoutMs C.int32_t) C.int32_t {
	wg.Wait()
	return 0
}

//export add
func add(a, b C.int32_t) C.int32_t { return a + b }

func main() {}
