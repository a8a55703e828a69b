// The `dispatch` handler, the router of the request path: decodes the envelope, applies the
// request's lineage and deadline, answers the system templates (brokers/system.hpp), finds a data
// template in the snapshot, checks the routing key, and runs the op (core/ops.hpp) through the
// NamasteCore adapter of the template's database, exactly once for a write. What happened is
// recorded by brokers/recording.hpp.
// One DispatchHandler per worker: it owns that worker's adapter session (its database
// connections), so it is used from one thread only.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "brokers/pool.hpp"
#include "brokers/recording.hpp"
#include "brokers/system.hpp"
#include "brokers/tickets.hpp"
#include "core/namaste.hpp"
#include "core/ops.hpp"
#include "core/request.hpp"

namespace beds::brokers {

class DispatchHandler : public Handler {
 public:
  // `factory` null: no data templates can run (each answers UNAVAILABLE).
  explicit DispatchHandler(std::shared_ptr<const NodeInfo> info,
                           std::shared_ptr<const CoreFactory> factory = nullptr);
  Outcome Handle(const amqp::Delivery& delivery, int retries) override;
  std::string ParkedReply(const amqp::Delivery& delivery, const std::string& reason) override;
  // sys/ping and sys/describe on a sys.* key: they read only what the node holds in memory.
  std::optional<std::string> Quick(const amqp::Delivery& delivery) override;
  // A REL point read (fetch by key): the reads of a cycle share one query (RunReads).
  bool Mergeable(const amqp::Delivery& delivery) override;
  // The end of a worker's cycle: its CALGON tickets, created in one transaction before their jobs
  // are published, its exactly-once REL writes, applied together (NamasteCore::ApplyWrites), and
  // then its REL point reads, one query per template (RunReads).
  void StoreStaged(const std::vector<Staged>& cycle) override;

 private:
  struct StagedWrite;  // an exactly-once REL write checked and waiting to be applied
  // A staged write, the delivery it came in, and where its reply goes.
  struct PendingWrite {
    StagedWrite* write;
    const amqp::Delivery* delivery;
    std::optional<std::string>* reply;
  };
  // A REL point read (fetch by key) waiting to run with the others of its worker's cycle, or of
  // its batch's consecutive ones: those of one template share one query (RunReads).
  struct PendingRead {
    Request request;  // what a fetch by key holds (PointReadOf): it outlives Handle's arena
    const Template* t;
    const OpSpec* spec;
    Lineage lineage;
    std::chrono::steady_clock::time_point started;
    const amqp::Delivery* delivery = nullptr;  // set when it is queued to run
    std::optional<std::string>* reply = nullptr;
  };
  // A batch envelope being run (docs/protocol.md "Batches").
  struct BatchRun {
    bool atomic = false;
    std::vector<PendingWrite> pending;  // consecutive writes, applied together before a read
    std::vector<PendingRead> reads;     // consecutive point reads of one template: one query
  };

  // One request (a message's, or an envelope of a batch): routed, checked and run, or staged.
  Outcome Serve(const Request& r, const amqp::Delivery& delivery, const Lineage& lineage,
                std::chrono::steady_clock::time_point started, int retries,
                std::string_view message_id);
  std::string RunBatch(const amqp::Delivery& delivery, boost::json::object body);
  // An atomic batch's staged writes, applied together: each envelope's reply, or the failure.
  std::expected<std::vector<std::string>, WriteFailure> RunAtomic(BatchRun& run,
                                                                  const amqp::Delivery& delivery);
  void CreateTickets(const std::vector<Staged>& cycle);
  void ApplyWrites(const std::vector<Staged>& cycle);
  // Applies staged writes (by database, in order) and sets their replies.
  void ApplyPending(std::vector<PendingWrite>& pending);
  // Runs waiting point reads, one query for those of each template, and sets their replies; each
  // read's adapter event carries its query's time.
  void RunReads(std::vector<PendingRead>& reads);
  // The reply to a staged write that ran, with its adapter event and counters.
  std::string Answered(NamasteCore& core, const StagedWrite& w, const Write& write,
                       const amqp::Delivery& delivery, Result<OpResult> result,
                       std::chrono::microseconds took);
  // The reply to a data op that ran (or failed), with its records: the audit record of a write
  // that applied, the request event and latency. A result over max_reply_bytes is TOO_LARGE.
  std::string ReplyTo(const Request& r, const amqp::Delivery& delivery, const Template& t,
                      Result<OpResult> result, const std::string& event_id,
                      std::chrono::steady_clock::time_point started);
  // This worker's adapter for the template's database, or UNAVAILABLE saying there is none.
  Result<NamasteCore*> CoreFor(const Template& t);
  // A data template's op, run on this worker's adapter.
  Result<OpResult> RunTemplate(const Template& t, const OpSpec& spec, const Request& request,
                               const OnceScope* once);

  std::shared_ptr<const NodeInfo> info_;
  std::optional<CoreFactory::Session> session_;  // empty: no factory, no adapters
  RequestRecorder recorder_;
  TicketStore tickets_;        // CALGON submits and calgon/* ops
  BatchRun* batch_ = nullptr;  // the batch RunBatch is running, if any
};

}  // namespace beds::brokers
