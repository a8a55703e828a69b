// What a dispatch worker records of its requests (docs/protocol.md "Lineage" and "Log events";
// docs/operations.md "Metrics"): RecordedCore makes every database call an `adapter` event, and
// RequestRecorder writes the request's latency and counters, its `request` event and, for a write
// that was applied, its `audit` record. One of each per worker: not thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "amqp/connection.hpp"
#include "core/namaste.hpp"
#include "core/request.hpp"
#include "metrics/metrics.hpp"

namespace beds::brokers {

// Wraps a worker's adapter so that every database call is an `adapter` event: a child of the
// request, with its duration and outcome.
class RecordedCore final : public NamasteCore {
 public:
  // `record` false: the calls are only counted (their events are written by the caller).
  RecordedCore(NamasteCore& inner, const std::string& engine, bool record = true)
      : inner_(inner), engine_(engine), record_(record) {}

  Result<OpResult> Create(const Template& t, const OpSpec& op, const Payload& p) override;
  Result<OpResult> Fetch(const Template& t, const OpSpec& op, const Query& q) override;
  Result<OpResult> Count(const Template& t, const OpSpec& op, const Query& q) override;
  Result<OpResult> Update(const Template& t, const OpSpec& op, const Payload& p) override;
  Result<OpResult> Delete(const Template& t, const OpSpec& op, const Payload& p) override;
  Result<OpResult> Call(const Template& t, const OpSpec& op, const Payload& p) override;
  Result<OpResult> CreateMany(const Template& t, const OpSpec& op,
                              const std::vector<Payload>& p) override;
  Result<OpResult> CreateDocuments(const Template& t, const OpSpec& op,
                                   std::vector<boost::json::object> docs) override;
  Result<void> Prepare(const Template& t) override { return inner_.Prepare(t); }

  std::optional<Error> last_error;  // of the last call, for the adapter error counter
  int calls = 0;                    // database calls made through it

  // The `adapter` event of a call made without this wrapper (a cycle's writes, applied together
  // and each recorded with their shared time), a child of the current event scope.
  void Record(const Template& t, std::string op, const Result<OpResult>& r,
              std::chrono::microseconds took);

 private:
  template <typename F>
  Result<OpResult> Timed(const Template& t, std::string op, F&& call);

  NamasteCore& inner_;
  std::string engine_;
  bool record_;
};

class RequestRecorder {
 public:
  RequestRecorder(std::shared_ptr<metrics::Registry> metrics,
                  std::vector<std::string> trusted_users = {})
      : metrics_(std::move(metrics)), trusted_users_(std::move(trusted_users)) {}

  // The audit record of a write that changed something (not a replay): who, what, and what the
  // write answered. Called before the reply is encoded (it reads the result).
  void Audit(const Request& r, const amqp::Delivery& delivery, const Template& t,
             const OpResult& applied);
  // The request's latency (by template, op and outcome: `error`, or OK) and its `request` event.
  // `error` is what the client was answered, even for a write that was applied (TOO_LARGE).
  void Finish(const Request& r, const amqp::Delivery& delivery, const Template* t, bool replayed,
              const Error* error, std::chrono::steady_clock::time_point started);
  // A database call that failed on the server side (UNAVAILABLE, TIMEOUT, INTERNAL).
  void CountAdapterError(const Template& t, const Error& error);
  // The exactly-once outcome of a write: recorded, replayed or conflict.
  void CountOnce(const Result<OpResult>& result);
  // Point reads run together (DispatchHandler::RunReads), and the database queries they took.
  void CountPointReads(const Template& t, size_t reads, int queries);

 private:
  std::shared_ptr<metrics::Registry> metrics_;                       // null: no metrics
  std::vector<std::string> trusted_users_;                           // see SenderOf
  std::map<std::string, metrics::Histogram*, std::less<>> latency_;  // "template/op/outcome"
  std::map<std::string, metrics::Counter*, std::less<>> adapter_errors_;
  // "template": beds_point_reads_total, beds_point_read_queries_total.
  std::map<std::string, std::pair<metrics::Counter*, metrics::Counter*>, std::less<>> point_reads_;
  metrics::Counter* once_recorded_ = nullptr;
  metrics::Counter* once_replayed_ = nullptr;
  metrics::Counter* once_conflicts_ = nullptr;
};

}  // namespace beds::brokers
