#include "brokers/dispatch.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "core/lineage.hpp"
#include "logs/logs.hpp"
#include "protocol/envelope.hpp"

namespace beds::brokers {
namespace {

namespace json = boost::json;
using Action = Outcome::Action;

Outcome Answer(std::string reply) { return Outcome{Action::kAck, std::move(reply), ""}; }

Outcome AnswerError(const std::string& event_id, Code code, std::string message) {
  return Answer(protocol::EncodeError(event_id, Error{code, std::move(message)}));
}

json::object DescribeData(const NodeInfo& info) {
  json::array ops = {"ping", "describe"};
  json::object sys{{"name", "sys"}, {"class", "sys"},           {"route", "sys"},
                   {"ops", ops},    {"fields", json::object{}}, {"filter_fields", json::array{}}};
  if (info.fault_injection) {
    sys["ops"].as_array().push_back("call");
    sys["calls"] = json::array{"fault"};
  }
  return json::object{{"node", info.node}, {"templates", json::array{sys}}};
}

// sys/call "fault": test hooks, only on nodes with [node] fault_injection = true.
//   {"mode": "throw", "times": n}  throw while the message was retried fewer than n times
//   {"mode": "die"}                kill the worker unless this is a redelivery
//   {"mode": "sleep", "ms": n}     take n ms (at most 10 s), then answer
Outcome Fault(const protocol::Request& request, const amqp::Delivery& delivery, int retries,
              const std::string& event_id) {
  const auto* mode = request.data.if_contains("mode");
  const std::string m = mode && mode->is_string() ? std::string(mode->get_string()) : "";
  if (m == "throw") {
    const auto* times = request.data.if_contains("times");
    const int64_t n = times && times->is_int64() ? times->get_int64() : INT64_MAX;
    if (retries < n)
      throw std::runtime_error("injected fault (retry " + std::to_string(retries) + ")");
  } else if (m == "die") {
    if (!delivery.redelivered) throw WorkerDeath("injected worker death");
  } else if (m == "sleep") {
    const auto* ms = request.data.if_contains("ms");
    const int64_t n = ms && ms->is_int64() ? std::clamp<int64_t>(ms->get_int64(), 0, 10000) : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(n));
  } else {
    return AnswerError(event_id, Code::kValidation, "data.mode must be throw, die or sleep");
  }
  return Answer(protocol::EncodeOk(event_id, json::object{{"mode", m}, {"retries", retries}}));
}

}  // namespace

json::object PingData(const NodeInfo& info) {
  json::array pools;
  if (info.pools) {
    for (const PoolStats& p : info.pools()) {
      pools.push_back(json::object{{"broker", p.broker},
                                   {"handler", p.handler},
                                   {"instances", p.instances},
                                   {"alive", p.alive},
                                   {"connected", p.connected},
                                   {"respawns", p.respawns},
                                   {"consumed", p.consumed},
                                   {"acked", p.acked},
                                   {"retried", p.retried},
                                   {"parked", p.parked}});
    }
  }
  const auto uptime = std::chrono::steady_clock::now() - info.started;
  return json::object{{"node", info.node},
                      {"env", info.env},
                      {"version", info.version},
                      {"uptime_s", std::chrono::duration<double>(uptime).count()},
                      {"pools", pools}};
}

DispatchHandler::DispatchHandler(std::shared_ptr<const NodeInfo> info) : info_(std::move(info)) {}

std::string DispatchHandler::ParkedReply(const amqp::Delivery& delivery,
                                         const std::string& reason) {
  const std::string event_id =
      protocol::EventIdFor(delivery.message.message_id, info_->node, info_->env);
  (void)reason;  // the reason may hold internals; the client gets a safe summary
  return protocol::EncodeError(
      event_id,
      Error{Code::kInternal, "the request failed repeatedly and was set aside for an operator"});
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
    return Outcome{Action::kPark, protocol::EncodeError(event_id, body.error()),
                   std::string(CodeName(body.error().code)) + ": " + body.error().message};
  }
  auto request = protocol::DecodeFields(std::move(*body));
  if (!request) {
    const std::string event_id = protocol::EventIdFor(in.message_id, info.node, info.env);
    return Answer(protocol::EncodeError(event_id, request.error()));
  }
  const Lineage lineage = protocol::RequestLineage(*request, in.message_id, info.node, info.env);
  const std::string& event_id = lineage.event_id;
  logs::EventScope scope(event_id);

  if (request->deadline_ms != 0 && NowUnixMs() > request->deadline_ms) {
    return AnswerError(event_id, Code::kTimeout,
                       "the request's deadline passed before it could run");
  }

  if (request->template_name == "sys") {
    if (request->op == "ping") return Answer(protocol::EncodeOk(event_id, PingData(info)));
    if (request->op == "describe") return Answer(protocol::EncodeOk(event_id, DescribeData(info)));
    if (request->op == "call" && request->call == "fault" && info.fault_injection) {
      return Fault(*request, delivery, retries, event_id);
    }
    if (request->op == "call") {
      return AnswerError(event_id, Code::kUnknownOp,
                         "template 'sys' has no call '" + protocol::Excerpt(request->call) + "'");
    }
    return AnswerError(event_id, Code::kUnknownOp,
                       "template 'sys' has no op '" + protocol::Excerpt(request->op) + "'");
  }
  return AnswerError(event_id, Code::kUnknownTemplate,
                     "no template named '" + protocol::Excerpt(request->template_name) + "'");
}

}  // namespace beds::brokers
