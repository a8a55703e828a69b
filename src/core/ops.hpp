// Running a request's op against a template: finding the op or call it names, validating the
// request into a Payload or Query (core/validate.hpp), and calling the adapter. The dispatcher
// does this for every data request; the REC engine tests drive an adapter the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/namaste.hpp"
#include "core/request.hpp"
#include "core/template.hpp"

namespace beds {

// True for create, update, delete and a call that is not `kind = "read"`.
bool IsWrite(const Template& t, const Request& request);

// The op (or named call) a request names, or UNKNOWN_OP / VALIDATION.
Result<const OpSpec*> FindOp(const Template& t, const Request& request);

// Who a write is, for exactly-once (docs/protocol.md "Exactly once"): its idempotency key scoped
// by template and sender, or its message id (with the request's digest, so a message id reused
// for another request is another write).
struct OnceScope {
  std::string identity;  // by key: OnceIdentityOfKey; else the message id
  bool by_key = false;
  int64_t ttl_s = 86400;
  bool maybe_seen = false;  // redelivered or retried: WriteOnce::maybe_seen
};

// Validates a request against its template and op without running it (a CALGON submit checks
// what it can before answering with a ticket).
Result<void> CheckOp(const Template& t, const OpSpec& spec, const Request& request);

// Validates a create, update, delete or call (a read call too) into the Write that runs it; a
// write with `once` gets the WriteOnce that applies it exactly once.
Result<Write> PrepareWrite(const Template& t, const OpSpec& spec, const Request& request,
                           const OnceScope* once = nullptr);

// Validates a request against its template and op, then runs it on `core`. Fetch by id with no
// result is NOT_FOUND. A write with `once` is applied exactly once.
Result<OpResult> RunOp(const Template& t, const OpSpec& spec, const Request& request,
                       NamasteCore& core, const OnceScope* once = nullptr);

// A fetch by key and nothing else (no where, order, limit or offset) on a template whose key is
// an int or a string: a point read that RunFetchesByKey can run with others.
bool IsFetchByKey(const Template& t, const Request& request);

// Point reads (IsFetchByKey) of one template, run as one query (`key IN (…)`) and answered each
// as RunOp would have answered it alone: its rows, NOT_FOUND (asked alone again, so that the
// database's own key matching decides), or its validation error. The query has the earliest of
// their deadlines. Whatever it cannot answer exactly as alone (it ran out of time while their
// deadlines differ, rows over the summed limit, a row whose key is spelled otherwise) runs each
// alone. A worker cycle's point reads, and a batch's consecutive ones, cost one database round
// trip instead of one each.
std::vector<Result<OpResult>> RunFetchesByKey(const Template& t, const OpSpec& spec,
                                              const std::vector<const Request*>& requests,
                                              NamasteCore& core);

}  // namespace beds
