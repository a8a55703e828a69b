#include "brokers/calgon.hpp"

#include <spdlog/spdlog.h>

#include "amqp/topology.hpp"
#include "core/lineage.hpp"
#include "logs/logs.hpp"
#include "protocol/envelope.hpp"

namespace beds::brokers {
namespace {

namespace json = boost::json;

std::string TicketOf(const amqp::Delivery& delivery) {
  auto h = delivery.message.headers.find(kTicketHeader);
  if (h == delivery.message.headers.end()) return {};
  const auto* s = std::get_if<std::string>(&h->second);
  return s ? *s : std::string();
}

std::string Now() { return IsoTimeMs(NowUnixMs()); }

int64_t IntOf(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_int64() ? v->get_int64() : 0;
}

}  // namespace

CalgonHandler::CalgonHandler(std::shared_ptr<const NodeInfo> info,
                             std::shared_ptr<const CoreFactory> factory)
    : info_(info), dispatch_(info, factory), tickets_(info, factory) {}

Outcome CalgonHandler::Handle(const amqp::Delivery& delivery, int retries) {
  const std::string ticket = TicketOf(delivery);
  logs::EventScope scope(ticket.empty() ? NewEventId(info_->node, info_->env) : ticket);
  if (ticket.empty() || !IsJob(delivery)) {
    // Not something our dispatcher handed on: nobody waits for it, and running it would let any
    // publisher skip the ticket. Parked for an operator to look at.
    return Outcome::Park("not a CALGON job (no " + std::string(kTicketHeader) + " header)");
  }
  auto before = tickets_.Get(ticket);
  if (!before) {
    if (before.error().code == Code::kNotFound) {
      spdlog::warn("CALGON job {}: its ticket is gone (expired); not run", ticket);
      return Outcome{};
    }
    // The store is away: try again later, the job is fine.
    return Outcome::Retry(before.error().message);
  }
  const json::value* status = before->if_contains("status");
  if (status && status->is_string() && status->get_string() == kCancelled) {
    spdlog::info("CALGON job {}: cancelled before it ran", ticket);
    return Outcome{};
  }
  if (auto r = tickets_.Update(ticket, json::object{{"status", kRunning},
                                                    {"started", Now()},
                                                    {"attempts", IntOf(*before, "attempts") + 1}});
      !r) {
    return Outcome::Retry(r.error().message);
  }

  // The job's request, run now (IsJob keeps it from being handed on again).
  Outcome ran = dispatch_.Handle(delivery, retries);
  if (ran.staged.has_value()) {
    // A job is a cycle of its own: what the dispatcher staged for the cycle's end (an
    // exactly-once write) is done now, and gives the reply.
    const std::vector<Handler::Staged> cycle{Handler::Staged{delivery, ran}};
    dispatch_.StoreStaged(cycle);
  }
  if (ran.action != Outcome::Action::kAck) {
    // A retry comes back to this handler; a park is the job's end.
    if (ran.action == Outcome::Action::kPark) {
      (void)tickets_.Update(ticket,
                            json::object{{"status", kFailed},
                                         {"finished", Now()},
                                         {"error", json::object{{"code", "INTERNAL"},
                                                                {"message",
                                                                 "the job failed repeatedly and "
                                                                 "was set aside for an operator"},
                                                                {"retryable", false}}}});
    }
    return ran;
  }
  json::object fields{{"finished", Now()}};
  std::error_code ec;
  json::value reply = json::parse(ran.reply.value_or(""), ec);
  const json::object* o = ec ? nullptr : reply.if_object();
  const json::value* ok = o ? o->if_contains("ok") : nullptr;
  if (ok && ok->is_bool() && ok->get_bool()) {
    json::object result{{"data", o->contains("data") ? o->at("data") : json::value(nullptr)}};
    if (o->contains("count")) result["count"] = o->at("count");
    if (o->contains("replayed")) result["replayed"] = o->at("replayed");
    fields["status"] = kDone;
    fields["result"] = std::move(result);
  } else {
    fields["status"] = kFailed;
    fields["error"] = o && o->contains("error") ? o->at("error") : json::value("no reply");
  }
  // Cancelled while it ran: what it wrote stays written, and its result is discarded.
  auto now = tickets_.Get(ticket);
  const json::value* current = now ? now->if_contains("status") : nullptr;
  if (current && current->is_string() && current->get_string() == kCancelled) {
    spdlog::info("CALGON job {}: cancelled while it ran; its result is discarded", ticket);
    return Outcome{};
  }
  auto after = tickets_.Update(ticket, std::move(fields));
  if (!after) return Outcome::Retry(after.error().message);

  Outcome done;
  const json::value* template_name = after->if_contains("template");
  Outcome::Forward event;
  event.exchange = amqp::kEventsExchange;
  event.routing_key = "calgon.done." + std::string(template_name && template_name->is_string()
                                                       ? template_name->get_string()
                                                       : "unknown");
  event.message.body = json::serialize(*after);
  event.message.content_type = "application/json";
  event.message.message_id = ticket;
  event.must_route = false;  // an event nobody subscribed to is fine
  done.forward.push_back(std::move(event));
  return done;
}

std::string CalgonHandler::ParkedReply(const amqp::Delivery& delivery, const std::string& reason) {
  return dispatch_.ParkedReply(delivery, reason);
}

}  // namespace beds::brokers
