// go-reqrep: the request/response pattern of seed 002 ("one shared channel for all requests,
// one shared channel for all responses, a coordinator goroutine"), built with
// -buildmode=c-shared and exporting the symbols of jsonbus's request/reply API that the
// benchmark driver's `request` workload resolves:
//
//	jsonbus_subscribe, jsonbus_request, jsonbus_reply (here), jsonbus_default,
//	jsonbus_now_ns, jsonbus_string_free (trampoline.c)
//
// As in the seed's demo program, both channels are unbuffered and there is exactly one
// coordinator goroutine.  A requester sends its request on `requests` and then reads
// `responses`; the coordinator reads one request, does the work (here: calls the
// responder's C callback through the C trampoline; the callback answers with
// jsonbus_reply) and writes the response.  Nothing else pairs a response with its requester:
// while the coordinator holds one request no other request is taken, so the only goroutine
// that can be receiving on `responses` is the one whose request it holds.  That is what the
// seed's demo relies on, and it serialises every request through the coordinator; the
// benchmark driver checks that each reply reaches its own requester.
//
// Fair work, as jsonbus does: the request and the reply are validated with json.Valid and
// copied.  Not honoured: timeout_ms.  A requester that stopped waiting for `responses`
// would leave its response to the next requester (the pattern has no way to abandon a
// request), so, like the seed, a requester waits for as long as it takes.
package main

/*
#include <stdlib.h>
#include <string.h>
#include "reqrep.h"
*/
import "C"

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"unsafe"
)

const (
	errNull         = -1
	errJSON         = -3
	errTopic        = -4
	errNotFound     = -9
	errNoResponders = -15 // JSONBUS_ERR_NO_RESPONDERS
)

type responder struct {
	topic    *C.char // C copy, lives for the process
	topicLen int
	name     string
	cb       C.jsonbus_callback
	ud       unsafe.Pointer
	id       int64
}

type request struct {
	to        *responder
	data      []byte // the payload + a NUL, so that C may also read it as a C string
	seq       uint64
	published uint64
}

var (
	requests  = make(chan request) // unbuffered, as in the seed
	responses = make(chan []byte)  // unbuffered, as in the seed

	regMu      sync.Mutex
	responders atomic.Pointer[[]*responder] // copy on write
	seq        atomic.Uint64

	// the coordinator's state: the reply to the request it is serving.  Touched only on
	// the coordinator goroutine (jsonbus_reply runs on it, called from the responder's
	// callback, which the coordinator called).
	current []byte
	replied bool
)

func init() {
	empty := []*responder{}
	responders.Store(&empty)
	go coordinator()
}

func coordinator() {
	for {
		req := <-requests
		current, replied = nil, false
		// "in here, you can do whatever modifications to shared state you need": the
		// responder's callback, which answers with jsonbus_reply
		C.reqrep_deliver(req.to.cb, req.to.ud, req.to.topic, C.size_t(req.to.topicLen),
			(*C.char)(unsafe.Pointer(&req.data[0])), C.size_t(len(req.data)-1),
			C.uint64_t(req.seq), C.uint64_t(req.published), C.int64_t(req.to.id))
		resp := current
		current = nil
		responses <- resp // nil: the responder did not reply
	}
}

func goBytes(p *C.char, n C.size_t) []byte {
	b := make([]byte, int(n)+1)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	return b
}

//export jsonbus_subscribe
func jsonbus_subscribe(bus unsafe.Pointer, pattern *C.char, cb C.jsonbus_callback, ud unsafe.Pointer) C.int64_t {
	if pattern == nil || cb == nil {
		return errNull
	}
	name := C.GoString(pattern)
	if len(name) == 0 || len(name) > 256 {
		return errTopic
	}
	regMu.Lock()
	defer regMu.Unlock()
	old := *responders.Load()
	r := &responder{topic: C.CString(name), topicLen: len(name), name: name, cb: cb, ud: ud,
		id: int64(len(old) + 1)}
	next := append(append([]*responder{}, old...), r)
	responders.Store(&next)
	return C.int64_t(r.id)
}

//export jsonbus_request
func jsonbus_request(bus unsafe.Pointer, topic *C.char, js *C.char, jsLen C.size_t, timeoutMs C.int32_t,
	reply **C.char, replyLen *C.size_t) C.int32_t {
	if topic == nil || js == nil || reply == nil || replyLen == nil {
		return errNull
	}
	*reply, *replyLen = nil, 0
	name := C.GoString(topic)
	var to *responder
	for _, r := range *responders.Load() {
		if r.name == name {
			to = r
			break
		}
	}
	if to == nil {
		return errNoResponders
	}
	data := goBytes(js, jsLen)
	if !json.Valid(data[:len(data)-1]) {
		return errJSON
	}
	requests <- request{to: to, data: data, seq: seq.Add(1), published: uint64(C.jsonbus_now_ns())}
	resp := <-responses
	if resp == nil {
		return errNotFound // the responder did not reply
	}
	n := len(resp) - 1
	out := (*C.char)(C.malloc(C.size_t(n + 1)))
	C.memcpy(unsafe.Pointer(out), unsafe.Pointer(&resp[0]), C.size_t(n+1))
	*reply, *replyLen = out, C.size_t(n)
	return 0
}

//export jsonbus_reply
func jsonbus_reply(bus unsafe.Pointer, req *C.jsonbus_message, js *C.char, jsLen C.size_t) C.int32_t {
	if req == nil || js == nil {
		return errNull
	}
	if req.reply_to == nil {
		return errNotFound
	}
	data := goBytes(js, jsLen)
	if !json.Valid(data[:len(data)-1]) {
		return errJSON
	}
	if !replied { // the first reply wins
		current, replied = data, true
	}
	return 0
}

func main() {}
