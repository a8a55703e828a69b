#include "brokers/tickets.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

#include "amqp/topology.hpp"
#include "core/backoff.hpp"
#include "core/ops.hpp"
#include "protocol/envelope.hpp"

namespace beds::brokers {
namespace {

namespace json = boost::json;

bool Finished(std::string_view status) {
  return status == kDone || status == kFailed || status == kCancelled || status == kExpired;
}

// The ticket a fetch or update of the store answered with.
Result<json::object> StoredTicket(Result<OpResult> answered) {
  if (!answered) return std::unexpected(answered.error());
  if (answered->data.empty() || !answered->data[0].is_object()) {
    return Fail(Code::kInternal, "a stored ticket is not a document");
  }
  return std::move(answered->data[0].as_object());
}

std::string_view StatusOf(const json::object& ticket) {
  const json::value* s = ticket.if_contains("status");
  return s && s->is_string() ? std::string_view(s->get_string()) : std::string_view();
}

// A ticket past its `expires` reads as expired, whatever it was (the sweeper removes it soon).
json::object Shown(json::object ticket) {
  const json::value* expires = ticket.if_contains("expires");
  if (expires && expires->is_string() &&
      std::string_view(expires->get_string()) < IsoTimeMs(NowUnixMs())) {
    ticket["status"] = kExpired;
  }
  return ticket;
}

}  // namespace

TicketStore::TicketStore(std::shared_ptr<const NodeInfo> info,
                         std::shared_ptr<const CoreFactory> factory)
    : info_(std::move(info)) {
  if (factory) session_.emplace(std::move(factory));
}

Result<std::pair<const Template*, NamasteCore*>> TicketStore::Store() {
  const std::string& name = info_->calgon.ticket_template;
  const Template* t = info_->templates ? info_->templates->Find(name) : nullptr;
  NamasteCore* core = t && session_ ? session_->For(*t) : nullptr;
  if (!core || info_->templates->unavailable.contains(name)) {
    return Fail(Code::kUnavailable, "this node has no CALGON ticket store (template '" + name +
                                        "', [calgon] ticket_template)");
  }
  return std::make_pair(t, core);
}

Result<void> TicketStore::Create(const std::vector<NewTicket>& tickets) {
  auto store = Store();
  if (!store) return std::unexpected(store.error());
  const auto [t, core] = *store;
  const int64_t now = NowUnixMs();
  std::vector<json::object> docs;
  docs.reserve(tickets.size());
  for (const NewTicket& n : tickets) {
    docs.push_back(json::object{{"ticket", n.ticket},
                                {"status", kQueued},
                                {"template", n.template_name},
                                {"op", n.op},
                                {"created", IsoTimeMs(now)},
                                {"attempts", 0},
                                {"expires", IsoTimeMs(now + info_->calgon.result_ttl_s * 1000)}});
  }
  auto created = core->CreateDocuments(*t, *t->Op("create"), std::move(docs));
  if (!created) return std::unexpected(created.error());
  return Ok();
}

Result<json::object> TicketStore::Get(const std::string& ticket, int64_t deadline_ms) {
  auto store = Store();
  if (!store) return std::unexpected(store.error());
  const auto [t, core] = *store;
  Request r;
  r.template_name = t->name;
  r.op = "fetch";
  r.id = ticket;
  r.deadline_ms = deadline_ms;
  auto found = RunOp(*t, *t->Op("fetch"), r, *core);
  if (!found && found.error().code == Code::kNotFound) {
    return Fail(Code::kNotFound, "no ticket '" + Excerpt(ticket, 160) +
                                     "' (unknown, or expired: tickets are kept [calgon] "
                                     "result_ttl_s after their job's last change)");
  }
  return StoredTicket(std::move(found));
}

Result<json::object> TicketStore::Update(const std::string& ticket, json::object fields) {
  auto store = Store();
  if (!store) return std::unexpected(store.error());
  const auto [t, core] = *store;
  fields["expires"] = IsoTimeMs(NowUnixMs() + info_->calgon.result_ttl_s * 1000);
  Request r;
  r.template_name = t->name;
  r.op = "update";
  r.id = ticket;
  r.data = std::move(fields);
  return StoredTicket(RunOp(*t, *t->Op("update"), r, *core));
}

NewTicket NewTicketOf(const Template& t, const Request& r, const Lineage& lineage) {
  return NewTicket{lineage.event_id, t.name, OpLabel(r)};
}

bool IsJob(const amqp::Delivery& delivery) {
  // Only our workers publish straight to a queue with this header; a client publishing on
  // beds.events cannot make its request skip the ticket.
  return delivery.exchange != amqp::kEventsExchange &&
         delivery.message.headers.contains(kTicketHeader);
}

Result<Outcome> SubmitJob(const NodeInfo& info, const Template& t, const OpSpec& spec,
                          const Request& r, const amqp::Delivery& delivery,
                          const Lineage& lineage) {
  // What can be refused now is refused now, not in a ticket the client must poll to learn it.
  if (auto checked = CheckOp(t, spec, r); !checked) return std::unexpected(checked.error());
  // The job is the request itself, run later as a child of this one (its lineage shows the work).
  std::error_code ec;
  json::value body = json::parse(delivery.message.body, ec);
  if (ec || !body.is_object()) return Fail(Code::kBadRequest, "the body is not a JSON object");
  json::object& job = body.as_object();
  job.erase("async");
  job["lineage"] =
      json::object{{"event_id", ""}, {"parent_id", lineage.event_id}, {"depth", lineage.depth + 1}};
  const std::string& ticket = lineage.event_id;
  Outcome::Forward forward;
  forward.exchange = "";  // straight to the job queue
  forward.routing_key = amqp::QueueName(info.calgon.broker);
  forward.message.body = json::serialize(job);
  forward.message.content_type = "application/json";
  forward.message.delivery_mode = 2;
  // A redelivered submit hands on a job with the same message id, so its write still applies once.
  forward.message.message_id =
      "job." + (delivery.message.message_id.empty() ? ticket : delivery.message.message_id);
  forward.message.headers[kTicketHeader] = ticket;
  // The job is published by this worker, so the sender goes with it as a header.
  if (const Sender sender = SenderOf(delivery, info.access.trusted_users); !sender.user.empty()) {
    forward.message.headers[kUserHeader] = sender.user;
  }
  Outcome out;
  out.reply = protocol::EncodeOkFields(lineage.event_id,
                                       json::object{{"ticket", ticket}, {"status", kQueued}});
  out.forward.push_back(std::move(forward));
  out.unforwarded_reply = protocol::EncodeError(
      lineage.event_id,
      Error{Code::kUnavailable, "the job could not be handed to the CALGON queue " +
                                    amqp::QueueName(info.calgon.broker) +
                                    " (does a node run [brokers." + info.calgon.broker +
                                    "] with handler = \"calgon\"?); it was not started: send "
                                    "it again"});
  return out;
}

Result<json::object> TicketOp(const NodeInfo& info, TicketStore& tickets, const Request& r) {
  const Op op = OpOf(r);
  if (op != Op::kPoll && op != Op::kWait && op != Op::kCancel) {
    return Fail(Code::kUnknownOp,
                "template 'calgon' has no op '" + Excerpt(r.op) + "' (poll, wait and cancel)");
  }
  if (r.id.empty()) {
    return Fail(Code::kValidation, "calgon/" + r.op + " needs \"id\": the ticket");
  }
  if (!IsEventId(r.id)) {
    return Fail(Code::kValidation, "'" + Excerpt(r.id) +
                                       "' is not a ticket: a ticket is the event id an async "
                                       "request was answered with ({node}.{env}.{guid})");
  }
  for (const auto& [key, value] : r.data) {
    if (key != "timeout_ms" || op != Op::kWait) {
      return Fail(Code::kValidation, "calgon/" + r.op + " takes no data field '" + Excerpt(key) +
                                         "'" + (op == Op::kWait ? " (only timeout_ms)" : ""));
    }
  }
  if (op == Op::kPoll) {
    auto ticket = tickets.Get(r.id, r.deadline_ms);
    if (!ticket) return ticket;
    return Shown(std::move(*ticket));
  }
  if (op == Op::kCancel) {
    auto ticket = tickets.Get(r.id, r.deadline_ms);
    if (!ticket) return ticket;
    const json::object shown = Shown(*ticket);
    const std::string_view status = StatusOf(shown);
    if (Finished(status)) {
      return Fail(Code::kConflict, "the job has already ended (" + std::string(status) +
                                       "): there is nothing to cancel");
    }
    // A queued job is skipped when its turn comes; a running one finishes, and its result is
    // discarded (what it wrote stays written).
    return tickets.Update(
        r.id, json::object{{"status", kCancelled}, {"finished", IsoTimeMs(NowUnixMs())}});
  }
  // wait
  int64_t timeout_ms = 0;
  if (const json::value* t = r.data.if_contains("timeout_ms")) {
    if (!t->is_int64() || t->get_int64() < 0 || t->get_int64() > info.calgon.max_wait_ms) {
      return Fail(Code::kValidation, "data.timeout_ms must be an integer from 0 to " +
                                         std::to_string(info.calgon.max_wait_ms) +
                                         " ([calgon] max_wait_ms)");
    }
    timeout_ms = t->get_int64();
  }
  int64_t until = NowUnixMs() + timeout_ms;
  if (r.deadline_ms > 0) until = std::min(until, r.deadline_ms);
  // Polled on the store: quickly at first (short jobs), then every 100 ms.
  Backoff pause(std::chrono::milliseconds(5), std::chrono::milliseconds(100));
  while (true) {
    auto ticket = tickets.Get(r.id, r.deadline_ms);
    if (!ticket) return ticket;
    json::object shown = Shown(std::move(*ticket));
    const int64_t now = NowUnixMs();
    if (Finished(StatusOf(shown)) || now >= until) return shown;
    std::this_thread::sleep_for(std::min(pause.Next(), std::chrono::milliseconds(until - now)));
  }
}

}  // namespace beds::brokers
