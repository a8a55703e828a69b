#include "brokers/dispatch.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <any>
#include <chrono>
#include <map>
#include <thread>

#include "amqp/topology.hpp"
#include "brokers/access.hpp"
#include "brokers/tickets.hpp"
#include "core/lineage.hpp"
#include "core/once.hpp"
#include "core/ops.hpp"
#include "logs/logs.hpp"
#include "protocol/envelope.hpp"

namespace beds::brokers {
namespace {

namespace json = boost::json;
using Action = Outcome::Action;

Outcome Answer(std::string reply) { return Outcome::Ack(std::move(reply)); }

// A CALGON submit answered but not yet ticketed: what StoreStaged needs to create its ticket and
// record the request.
struct StagedSubmit {
  NewTicket ticket;
  Request request;  // the names only
  const Template* t;
  Lineage lineage;
  std::chrono::steady_clock::time_point started;
};

// What a staged request's records name; the request itself lives in Handle's arena.
Request BriefOf(const Request& r) {
  Request brief;
  brief.template_name = r.template_name;
  brief.op = r.op;
  brief.call = r.call;
  brief.id = r.id;
  brief.idempotency_key = r.idempotency_key;
  return brief;
}

// What a waiting point read needs of its request (IsFetchByKey: the names, the key and the
// deadline), owned: the request itself lives in Handle's arena.
Request PointReadOf(const Request& r) {
  Request read = BriefOf(r);
  read.deadline_ms = r.deadline_ms;
  return read;
}

// The exactly-once scope of a write; none for a message with neither key nor message id (it
// cannot be told from its redelivery, so it is applied at least once). A key is scoped by its
// sender (SenderOf): a retried copy keeps its original sender's scope.
std::optional<OnceScope> ScopeOf(const Template& t, const Request& r,
                                 const amqp::Delivery& delivery, std::string_view message_id,
                                 const NodeInfo& info) {
  if (!info.idempotency.enabled || !IsWrite(t, r)) return std::nullopt;
  const bool maybe_seen = delivery.redelivered || delivery.exchange != amqp::kEventsExchange;
  if (!r.idempotency_key.empty()) {
    return OnceScope{OnceIdentityOfKey(t.name, SenderOf(delivery, info.access.trusted_users).user,
                                       r.idempotency_key),
                     true, info.idempotency.ttl_s, maybe_seen};
  }
  if (message_id.empty()) return std::nullopt;
  return OnceScope{std::string(message_id), false, info.idempotency.ttl_s, maybe_seen};
}

// A request must come on its template's own routing keys: `{route}.write` for a write, and
// `{route}.read` or `{route}.write` for a read (a read sent as a write is served by the write pool,
// still against the read connections). Anything else would run on a pool the operator did not
// size for it, so it is refused with the key to use. Only requests published to beds.events are
// checked: a retried message comes back from the retry queue under the queue's own name.
std::optional<Error> CheckRoute(const Template& t, const Request& r,
                                const amqp::Delivery& delivery) {
  if (delivery.exchange != amqp::kEventsExchange) return std::nullopt;
  const std::string_view key = delivery.routing_key;
  const size_t dot = key.rfind('.');
  const std::string_view route = dot == std::string_view::npos ? key : key.substr(0, dot);
  const std::string_view kind = dot == std::string_view::npos ? "" : key.substr(dot + 1);
  const bool write = IsWrite(t, r);
  const bool right_route = route == t.route;
  const bool known_kind = kind == "read" || kind == "write";
  if (right_route && known_kind && (!write || kind == "write")) return std::nullopt;
  // Refused: the messages are built only now, off the path every request takes.
  const std::string right = t.route + (write ? ".write" : ".read");
  const std::string what = OpOf(r) == Op::kCall ? "call '" + protocol::Excerpt(r.call) + "'" : r.op;
  if (!right_route) {
    return Error{Code::kBadRequest, "template '" + t.name + "' is served on " + t.route +
                                        ".read and " + t.route + ".write, not " +
                                        protocol::Excerpt(key) + ": send this " + what + " on " +
                                        right};
  }
  if (!known_kind) {
    return Error{Code::kBadRequest, "routing key " + protocol::Excerpt(key) +
                                        ": requests go on {route}.read or {route}.write; send "
                                        "this " +
                                        what + " on " + right};
  }
  return Error{Code::kBadRequest, what + " on '" + t.name + "' is a write: send it on " + right +
                                      ", not " + protocol::Excerpt(key) +
                                      " (reads and writes are served by separate pools)"};
}

}  // namespace

// An exactly-once REL write answered at the end of the worker's cycle (or of its batch), applied
// there with the others (ApplyPending).
struct DispatchHandler::StagedWrite {
  Write write;
  Request request;  // the names, id and key only (recording)
  Lineage lineage;
  std::chrono::steady_clock::time_point started;
};

DispatchHandler::DispatchHandler(std::shared_ptr<const NodeInfo> info,
                                 std::shared_ptr<const CoreFactory> factory)
    : info_(std::move(info)),
      recorder_(info_->metrics, info_->access.trusted_users),
      tickets_(info_, factory) {
  if (factory) session_.emplace(std::move(factory));
}

Result<NamasteCore*> DispatchHandler::CoreFor(const Template& t) {
  NamasteCore* core = session_ ? session_->For(t) : nullptr;
  if (!core) {
    return std::unexpected(Error{
        Code::kUnavailable,
        "template '" + t.name + "': database '" + t.database + "' has no adapter on this node"});
  }
  return core;
}

Result<OpResult> DispatchHandler::RunTemplate(const Template& t, const OpSpec& spec,
                                              const Request& r, const OnceScope* once) {
  // A batch runs in order: its writes waiting to share a transaction go first.
  if (batch_) ApplyPending(batch_->pending);
  auto core = CoreFor(t);
  if (!core) return std::unexpected(core.error());
  RecordedCore recorded(**core, t.template_class == TemplateClass::kRel ? "mariadb" : "docstore");
  auto result = RunOp(t, spec, r, recorded, once);
  if (recorded.last_error) recorder_.CountAdapterError(t, *recorded.last_error);
  return result;
}

std::string DispatchHandler::ParkedReply(const amqp::Delivery& delivery,
                                         const std::string& reason) {
  const std::string event_id =
      protocol::EventIdFor(delivery.message.message_id, info_->node, info_->env);
  (void)reason;  // the reason may hold internals; the client gets a safe summary
  return protocol::EncodeError(
      event_id,
      Error{Code::kInternal, "the request failed repeatedly and was set aside for an operator"});
}

std::optional<std::string> DispatchHandler::Quick(const amqp::Delivery& delivery) {
  // Data templates' requests always go to a worker: only the system template's keys are looked
  // into here, so a REL or REC request is parsed once, by its worker.
  if (!delivery.routing_key.starts_with("sys.")) return std::nullopt;
  unsigned char arena[4096];
  boost::json::monotonic_resource parse_memory(arena, sizeof(arena));
  auto body = protocol::ParseBody(delivery.message.body, info_->max_body_bytes, &parse_memory);
  // Anything unusual (a malformed body to park, a batch, a retried copy) is a worker's.
  if (!body || protocol::IsBatch(*body) || delivery.message.headers.contains(kRetriesHeader)) {
    return std::nullopt;
  }
  auto request = protocol::DecodeFields(std::move(*body));
  if (!request || request->template_name != "sys" || request->async) return std::nullopt;
  const Op op = OpOf(*request);
  if (op != Op::kPing && op != Op::kDescribe) return std::nullopt;
  const Lineage lineage =
      protocol::RequestLineage(*request, delivery.message.message_id, info_->node, info_->env);
  logs::EventScope scope(lineage);
  Outcome outcome = Serve(*request, delivery, lineage, std::chrono::steady_clock::now(), 0,
                          delivery.message.message_id);
  return std::move(outcome.reply);
}

bool DispatchHandler::Mergeable(const amqp::Delivery& delivery) {
  // Only what comes on a read key is looked into (a read sent as a write merely runs alone), so
  // a write is parsed once, by its worker.
  if (!delivery.routing_key.ends_with(".read") || delivery.routing_key.starts_with("sys.") ||
      !info_->templates) {
    return false;
  }
  unsigned char arena[4096];
  boost::json::monotonic_resource parse_memory(arena, sizeof(arena));
  auto body = protocol::ParseBody(delivery.message.body, info_->max_body_bytes, &parse_memory);
  if (!body || protocol::IsBatch(*body)) return false;
  auto request = protocol::DecodeFields(std::move(*body));
  if (!request || request->async) return false;
  const Template* t = info_->templates->Find(request->template_name);
  return t && t->template_class == TemplateClass::kRel && IsFetchByKey(*t, *request);
}

Outcome DispatchHandler::Handle(const amqp::Delivery& delivery, int retries) {
  const amqp::Message& in = delivery.message;
  const NodeInfo& info = *info_;

  // Parsing allocates a node per key and value; a per-request arena on the stack turns that into
  // a pointer bump (larger bodies spill to the heap). Declared first, so it outlives the request.
  unsigned char arena[4096];
  boost::json::monotonic_resource parse_memory(arena, sizeof(arena));
  auto body = protocol::ParseBody(in.body, info.max_body_bytes, &parse_memory);
  if (!body) {
    // Nothing in it can be trusted, not even its lineage: answer, then park it for an operator.
    const std::string event_id = protocol::EventIdFor(in.message_id, info.node, info.env);
    logs::EventScope scope(event_id);
    spdlog::warn("rejected message on {}: {}", delivery.routing_key, body.error().message);
    return Outcome::Park(std::string(CodeName(body.error().code)) + ": " + body.error().message,
                         protocol::EncodeError(event_id, body.error()));
  }
  if (protocol::IsBatch(*body)) return Answer(RunBatch(delivery, std::move(*body)));
  auto request = protocol::DecodeFields(std::move(*body));
  if (!request) {
    const std::string event_id = protocol::EventIdFor(in.message_id, info.node, info.env);
    return Answer(protocol::EncodeError(event_id, request.error()));
  }
  const Lineage lineage = protocol::RequestLineage(*request, in.message_id, info.node, info.env);
  logs::EventScope scope(lineage);
  return Serve(*request, delivery, lineage, std::chrono::steady_clock::now(), retries,
               in.message_id);
}

Outcome DispatchHandler::Serve(const Request& r, const amqp::Delivery& delivery,
                               const Lineage& lineage,
                               std::chrono::steady_clock::time_point started, int retries,
                               std::string_view message_id) {
  const NodeInfo& info = *info_;
  const std::string& event_id = lineage.event_id;

  // Every answer below goes through one of these, so the request is recorded exactly once.
  const Template* t = nullptr;
  auto refuse = [&](Error error) {
    recorder_.Finish(r, delivery, t, false, &error, started);
    return Answer(protocol::EncodeError(event_id, error));
  };
  auto answer = [&](json::value data) {
    recorder_.Finish(r, delivery, t, false, nullptr, started);
    return Answer(protocol::EncodeOk(event_id, std::move(data)));
  };

  if (r.deadline_ms != 0 && NowUnixMs() > r.deadline_ms) {
    return refuse(Error{Code::kTimeout, "the request's deadline passed before it could run"});
  }
  if (auto denied = Denied(info.access, delivery, r)) return refuse(std::move(*denied));

  const bool system =
      r.template_name == "sys" || r.template_name == "lineage" || r.template_name == "calgon";
  if (r.async && system) {
    return refuse(Error{Code::kValidation, "async applies to data templates' ops; " +
                                               Excerpt(r.template_name) + " answers at once"});
  }
  if (r.template_name == "calgon") {
    auto ticket = TicketOp(info, tickets_, r);
    if (!ticket) return refuse(ticket.error());
    return answer(std::move(*ticket));
  }
  if (r.template_name == "sys") {
    const Op op = OpOf(r);
    if (op == Op::kPing) return answer(PingData(info));
    if (op == Op::kDescribe) return answer(DescribeData(info));
    if (op == Op::kCall && r.call == "fault" && info.fault_injection) {
      if (batch_) {
        return refuse(Error{Code::kValidation, "sys/call fault is not taken inside a batch"});
      }
      return Fault(r, delivery, retries, event_id);
    }
    if (op == Op::kCall) {
      return refuse(Error{Code::kUnknownOp,
                          "template 'sys' has no call '" + protocol::Excerpt(r.call) + "'"});
    }
    return refuse(
        Error{Code::kUnknownOp, "template 'sys' has no op '" + protocol::Excerpt(r.op) + "'"});
  }
  if (r.template_name == "lineage") {
    auto tree = LineageTree(info, session_ ? &*session_ : nullptr, r);
    if (!tree) return refuse(tree.error());
    return answer(std::move(*tree));
  }
  t = info.templates ? info.templates->Find(r.template_name) : nullptr;
  if (!t) {
    return refuse(Error{Code::kUnknownTemplate,
                        "no template named '" + protocol::Excerpt(r.template_name) + "'"});
  }
  if (auto wrong = CheckRoute(*t, r, delivery)) return refuse(std::move(*wrong));
  if ((t->name == info.log_store || t->name == info.calgon.ticket_template) && IsWrite(*t, r)) {
    // The record of what happened is written only by the admin node's logs handler, and tickets
    // only by the dispatchers and the calgon pool: a client able to write them could forge or
    // erase audit records, or a job's result.
    return refuse(
        Error{Code::kForbidden, "template '" + t->name +
                                    "' is written only by BEDS itself; read it (lineage/fetch and "
                                    "calgon/poll give the trees and tickets)"});
  }
  auto spec = FindOp(*t, r);
  if (!spec) return refuse(spec.error());
  if (info.templates->unavailable.contains(t->name)) {
    return refuse(Error{Code::kUnavailable, "template '" + t->name +
                                                "' is not bound to its database objects; an "
                                                "operator has been told why"});
  }
  if ((r.async || (*spec)->job) && !IsJob(delivery)) {
    // CALGON: checked and answered now, run by the calgon pool. The ticket is created with the
    // rest of the worker's cycle (StoreStaged), before the job is published.
    auto submitted = SubmitJob(info, *t, **spec, r, delivery, lineage);
    if (!submitted) return refuse(submitted.error());
    submitted->staged = StagedSubmit{NewTicketOf(*t, r, lineage), BriefOf(r), t, lineage, started};
    return std::move(*submitted);
  }
  const std::optional<OnceScope> once = ScopeOf(*t, r, delivery, message_id, info);
  const bool atomic = batch_ && batch_->atomic;
  if ((once || atomic) && t->template_class == TemplateClass::kRel && session_ &&
      session_->For(*t)) {
    // Checked now, applied at the end of the cycle (or of the batch) with the other writes (one
    // transaction, one record round trip), and answered once it has committed.
    auto write = PrepareWrite(*t, **spec, r, &*once);
    if (!write) return refuse(write.error());
    Outcome staged;
    staged.staged = StagedWrite{std::move(*write), BriefOf(r), lineage, started};
    return staged;
  }
  if (!atomic && t->template_class == TemplateClass::kRel && IsFetchByKey(*t, r)) {
    // Waits for the other point reads of this template that the worker's cycle (or the batch)
    // holds: they run as one query, and each is answered as it would be alone.
    Outcome waiting;
    waiting.staged = PendingRead{PointReadOf(r), t, *spec, lineage, started};
    return waiting;
  }
  auto result = RunTemplate(*t, **spec, r, once ? &*once : nullptr);
  if (once) recorder_.CountOnce(result);
  return Answer(ReplyTo(r, delivery, *t, std::move(result), event_id, started));
}

std::string DispatchHandler::ReplyTo(const Request& r, const amqp::Delivery& delivery,
                                     const Template& t, Result<OpResult> result,
                                     const std::string& event_id,
                                     std::chrono::steady_clock::time_point started) {
  if (!result) {
    recorder_.Finish(r, delivery, &t, false, &result.error(), started);
    return protocol::EncodeError(event_id, result.error());
  }
  recorder_.Audit(r, delivery, t, *result);
  const bool replayed = result->replayed;
  std::string reply =
      protocol::EncodeOk(event_id, std::move(result->data), result->count, replayed);
  if (static_cast<int64_t>(reply.size()) > info_->max_reply_bytes) {
    // The broker would refuse it, leaving the message unacked and its write to be run again.
    const OpSpec* spec = OpOf(r) == Op::kCall ? t.Call(r.call) : t.Op(r.op);
    const bool read = spec && spec->read;
    const Error too_large{Code::kTooLarge,
                          "the result is " + std::to_string(reply.size()) +
                              " bytes, over this node's max_reply_bytes (" +
                              std::to_string(info_->max_reply_bytes) + "); " +
                              (read ? "narrow the filter or lower the limit"
                                    : "the write was applied, but its result cannot be sent")};
    recorder_.Finish(r, delivery, &t, false, &too_large, started);
    return protocol::EncodeError(event_id, too_large);
  }
  recorder_.Finish(r, delivery, &t, replayed, nullptr, started);
  return reply;
}

void DispatchHandler::StoreStaged(const std::vector<Staged>& cycle) {
  CreateTickets(cycle);
  ApplyWrites(cycle);
  // The cycle's point reads come from separate messages, so no order binds them to its writes;
  // run after them, they see what the cycle wrote.
  std::vector<PendingRead> reads;
  for (const Staged& s : cycle) {
    if (auto* read = std::any_cast<PendingRead>(&s.outcome.staged)) {
      read->delivery = &s.delivery;
      read->reply = &s.outcome.reply;
      reads.push_back(std::move(*read));
    }
  }
  RunReads(reads);
}

void DispatchHandler::ApplyWrites(const std::vector<Staged>& cycle) {
  std::vector<PendingWrite> pending;
  for (const Staged& s : cycle) {
    if (auto* w = std::any_cast<StagedWrite>(&s.outcome.staged)) {
      pending.push_back(PendingWrite{w, &s.delivery, &s.outcome.reply});
    }
  }
  ApplyPending(pending);
}

void DispatchHandler::ApplyPending(std::vector<PendingWrite>& pending) {
  // By database (each adapter applies its own), each in the order the writes came.
  std::map<NamasteCore*, std::vector<const PendingWrite*>> by_core;
  for (const PendingWrite& p : pending) by_core[session_->For(*p.write->write.t)].push_back(&p);
  for (auto& [core, group] : by_core) {
    std::vector<Write> writes;
    writes.reserve(group.size());
    for (const PendingWrite* p : group) writes.push_back(std::move(p->write->write));
    const auto began = std::chrono::steady_clock::now();
    std::vector<Result<OpResult>> results = core->ApplyWrites(writes);
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - began);
    for (size_t i = 0; i < group.size(); ++i) {
      Result<OpResult> result =
          i < results.size()
              ? std::move(results[i])
              : std::unexpected(Error{Code::kInternal, "the adapter gave no result"});
      *group[i]->reply = Answered(*core, *group[i]->write, writes[i], *group[i]->delivery,
                                  std::move(result), took);
    }
  }
  pending.clear();
}

void DispatchHandler::RunReads(std::vector<PendingRead>& reads) {
  // By template, each in the order the reads came.
  std::vector<std::vector<PendingRead*>> groups;
  for (PendingRead& p : reads) {
    auto same = std::find_if(groups.begin(), groups.end(),
                             [&](const auto& g) { return g.front()->t == p.t; });
    if (same == groups.end()) {
      groups.push_back({&p});
    } else {
      same->push_back(&p);
    }
  }
  for (const std::vector<PendingRead*>& group : groups) {
    const Template& t = *group.front()->t;
    std::vector<const Request*> requests;
    for (const PendingRead* p : group) requests.push_back(&p->request);
    auto core = CoreFor(t);
    std::vector<Result<OpResult>> results;
    std::chrono::microseconds took{0};
    if (!core) {
      results.assign(requests.size(), std::unexpected(core.error()));
    } else {
      // Counted, not recorded here: each read gets an adapter event of its own below.
      RecordedCore counted(**core, "mariadb", false);
      const auto began = std::chrono::steady_clock::now();
      results = RunFetchesByKey(t, *group.front()->spec, requests, counted);
      took = std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now() - began);
      if (counted.last_error) recorder_.CountAdapterError(t, *counted.last_error);
      recorder_.CountPointReads(t, group.size(), counted.calls);
    }
    for (size_t i = 0; i < group.size(); ++i) {
      PendingRead& p = *group[i];
      logs::EventScope scope(p.lineage);
      // A read refused before any query (its key invalid) has no adapter event.
      if (core && (results[i] || results[i].error().code != Code::kValidation)) {
        RecordedCore(**core, "mariadb").Record(t, "fetch", results[i], took);
      }
      *p.reply =
          ReplyTo(p.request, *p.delivery, t, std::move(results[i]), p.lineage.event_id, p.started);
    }
  }
  reads.clear();
}

std::string DispatchHandler::Answered(NamasteCore& core, const StagedWrite& w, const Write& write,
                                      const amqp::Delivery& delivery, Result<OpResult> result,
                                      std::chrono::microseconds took) {
  const Template& t = *write.t;
  logs::EventScope scope(w.lineage);
  RecordedCore(core, "mariadb").Record(t, OpLabel(w.request), result, took);
  if (!result) recorder_.CountAdapterError(t, result.error());
  if (write.payload.once) recorder_.CountOnce(result);
  return ReplyTo(w.request, delivery, t, std::move(result), w.lineage.event_id, w.started);
}

std::string DispatchHandler::RunBatch(const amqp::Delivery& delivery, json::object body) {
  const NodeInfo& info = *info_;
  const std::string& message_id = delivery.message.message_id;
  auto batch = protocol::DecodeBatch(std::move(body), info.max_batch);
  if (!batch) {
    return protocol::EncodeError(protocol::EventIdFor(message_id, info.node, info.env),
                                 batch.error());
  }
  Lineage lineage = batch->lineage.value_or(Lineage{});
  if (lineage.event_id.empty())
    lineage.event_id = protocol::EventIdFor(message_id, info.node, info.env);
  logs::EventScope scope(lineage);
  const auto started = std::chrono::steady_clock::now();
  Request whole;  // what the batch's own record names
  whole.template_name = "batch";
  whole.op = batch->atomic ? "atomic" : "run";
  whole.idempotency_key = batch->idempotency_key;
  auto finish = [&](std::string reply, const Error* error) {
    recorder_.Finish(whole, delivery, nullptr, false, error, started);
    return reply;
  };
  if (batch->deadline_ms != 0 && NowUnixMs() > batch->deadline_ms) {
    const Error late{Code::kTimeout, "the request's deadline passed before it could run"};
    return finish(protocol::EncodeError(lineage.event_id, late), &late);
  }

  BatchRun run;
  run.atomic = batch->atomic;
  batch_ = &run;
  struct Done {  // batch_ is this call's only
    BatchRun*& batch;
    ~Done() { batch = nullptr; }
  } done{batch_};

  const size_t n = batch->requests.size();
  std::vector<std::optional<std::string>> replies(n);
  std::vector<StagedWrite> staged(n);  // stable addresses for run.pending
  for (size_t i = 0; i < n; ++i) {
    // Each envelope is a child of the batch; a write without a key of its own is known by the
    // batch's key (or message id) and its place in the batch, so a re-sent batch repeats none.
    const Lineage child{NewEventId(info.node, info.env), lineage.event_id, lineage.depth + 1};
    Result<Request>& request = batch->requests[i];
    if (!request) {
      if (run.atomic) {
        return finish(protocol::EncodeErrorAt(lineage.event_id, request.error(), i),
                      &request.error());
      }
      replies[i] = protocol::EncodeError(child.event_id, request.error());
      continue;
    }
    Request& r = *request;
    if (r.deadline_ms == 0) r.deadline_ms = batch->deadline_ms;
    if (r.idempotency_key.empty() && !batch->idempotency_key.empty()) {
      r.idempotency_key = batch->idempotency_key + "#" + std::to_string(i);
    }
    if (run.atomic) {
      const Template* t = info.templates ? info.templates->Find(r.template_name) : nullptr;
      if (!t || t->template_class != TemplateClass::kRel || !IsWrite(*t, r)) {
        const Error not_write{Code::kValidation,
                              "an atomic batch holds REL writes only (create, update, delete "
                              "and write calls); envelope " +
                                  std::to_string(i) + " is " + Excerpt(r.template_name) + "/" +
                                  Excerpt(r.op) + ": nothing was run"};
        return finish(protocol::EncodeErrorAt(lineage.event_id, not_write, i), &not_write);
      }
      const Template* first = info.templates->Find(batch->requests[0]->template_name);
      if (first && first->database != t->database) {
        const Error two{Code::kValidation, "an atomic batch writes to one database; envelope " +
                                               std::to_string(i) + " writes to '" + t->database +
                                               "', envelope 0 to '" + first->database +
                                               "': nothing was run"};
        return finish(protocol::EncodeErrorAt(lineage.event_id, two, i), &two);
      }
    }
    // Waiting point reads run before anything that is not one of them, so the batch keeps its
    // order.
    if (!run.reads.empty() &&
        (r.template_name != run.reads.front().t->name || !IsFetchByKey(*run.reads.front().t, r))) {
      // The writes staged before them first: a read sees the batch's earlier writes.
      ApplyPending(run.pending);
      RunReads(run.reads);
    }
    logs::EventScope inner(child);
    Outcome o = Serve(r, delivery, child, std::chrono::steady_clock::now(), 0,
                      message_id.empty() ? "" : message_id + "#" + std::to_string(i));
    if (auto* read = std::any_cast<PendingRead>(&o.staged)) {
      read->delivery = &delivery;
      read->reply = &replies[i];
      run.reads.push_back(std::move(*read));
      continue;
    }
    if (auto* w = std::any_cast<StagedWrite>(&o.staged)) {
      staged[i] = std::move(*w);
      run.pending.push_back(PendingWrite{&staged[i], &delivery, &replies[i]});
      continue;
    }
    replies[i] = std::move(o.reply);
    if (run.atomic) {
      // Refused before running (validation, a template not bound): the batch runs nothing.
      auto decoded = protocol::DecodeReply(replies[i].value_or(""));
      const Error refused = decoded && decoded->error
                                ? *decoded->error
                                : Error{Code::kInternal, "envelope could not be staged"};
      return finish(protocol::EncodeErrorAt(lineage.event_id, refused, i), &refused);
    }
  }
  if (run.atomic) {
    auto applied = RunAtomic(run, delivery);
    if (!applied) {
      const WriteFailure& f = applied.error();
      return finish(protocol::EncodeErrorAt(lineage.event_id, f.error, f.index), &f.error);
    }
    return finish(protocol::EncodeBatchReply(lineage.event_id, *applied), nullptr);
  }
  ApplyPending(run.pending);
  RunReads(run.reads);
  std::vector<std::string> bodies;
  bodies.reserve(n);
  for (auto& reply : replies) {
    bodies.push_back(
        reply ? std::move(*reply)
              : protocol::EncodeError(lineage.event_id, Error{Code::kInternal, "no reply"}));
  }
  return finish(protocol::EncodeBatchReply(lineage.event_id, bodies), nullptr);
}

std::expected<std::vector<std::string>, WriteFailure> DispatchHandler::RunAtomic(
    BatchRun& run, const amqp::Delivery& delivery) {
  std::vector<Write> writes;
  writes.reserve(run.pending.size());
  for (const PendingWrite& p : run.pending) writes.push_back(std::move(p.write->write));
  NamasteCore* core = session_->For(*writes[0].t);
  const auto began = std::chrono::steady_clock::now();
  auto applied = core->ApplyAtomically(writes);
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - began);
  std::vector<std::string> bodies;
  for (size_t i = 0; i < writes.size(); ++i) {
    // Every envelope answers (and is recorded) the batch's outcome: its own result, or the
    // failure that stopped them all.
    Result<OpResult> result =
        applied ? Result<OpResult>(std::move((*applied)[i]))
                : std::unexpected(
                      i == applied.error().index
                          ? applied.error().error
                          : Error{applied.error().error.code,
                                  "not applied: envelope " + std::to_string(applied.error().index) +
                                      " failed (" + applied.error().error.message + ")"});
    bodies.push_back(
        Answered(*core, *run.pending[i].write, writes[i], delivery, std::move(result), took));
  }
  run.pending.clear();
  if (!applied) return std::unexpected(std::move(applied.error()));
  return bodies;
}

void DispatchHandler::CreateTickets(const std::vector<Staged>& cycle) {
  std::vector<NewTicket> tickets;
  for (const Staged& s : cycle) {
    if (const auto* submit = std::any_cast<StagedSubmit>(&s.outcome.staged)) {
      tickets.push_back(submit->ticket);
    }
  }
  if (tickets.empty()) return;
  const Result<void> created = tickets_.Create(tickets);
  for (const Staged& s : cycle) {
    const auto* submit = std::any_cast<StagedSubmit>(&s.outcome.staged);
    if (!submit) continue;
    logs::EventScope scope(submit->lineage);
    if (created) {
      recorder_.Finish(submit->request, s.delivery, submit->t, false, nullptr, submit->started);
      continue;
    }
    // No ticket, no job: the submit is answered the store's error, and nothing is queued.
    recorder_.Finish(submit->request, s.delivery, submit->t, false, &created.error(),
                     submit->started);
    s.outcome.forward.clear();
    s.outcome.unforwarded_reply.reset();
    s.outcome.reply = protocol::EncodeError(submit->lineage.event_id, created.error());
  }
}

}  // namespace beds::brokers
