#include "brokers/control.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

#include "amqp/connection.hpp"
#include "amqp/topology.hpp"
#include "core/backoff.hpp"
#include "core/clock.hpp"
#include "core/lineage.hpp"
#include "protocol/envelope.hpp"

namespace beds::brokers {
namespace {
using namespace std::chrono_literals;
namespace json = boost::json;
}  // namespace

struct ControlLoop::Impl {
  config::AmqpSettings amqp;
  std::shared_ptr<const NodeInfo> info;
  std::function<void(const std::string&)> on_shutdown;
  std::jthread thread;

  // Nothing escapes the thread; after an unexpected failure the loop starts over.
  void Run(std::stop_token stop) {
    while (!stop.stop_requested()) {
      try {
        Loop(stop);
      } catch (const std::exception& e) {
        spdlog::error("control loop failed: {}; restarting", e.what());
      } catch (...) {
        spdlog::error("control loop failed: unknown exception; restarting");
      }
      SleepUnlessStopped(stop, 1s);
    }
  }

  void Loop(std::stop_token stop) {
    std::unique_ptr<amqp::Connection> conn;
    Backoff backoff(100ms, 5s);
    while (!stop.stop_requested()) {
      if (!conn) {
        auto c = Connect();
        if (!c) {
          spdlog::debug("control loop: {}", c.error().message);
          SleepUnlessStopped(stop, backoff.Next());
          continue;
        }
        conn = std::move(*c);
        backoff.Reset();
      }
      auto next = conn->Next(200ms);
      if (!next) {
        spdlog::warn("control loop: {}", next.error().message);
        conn.reset();
        continue;
      }
      if (!*next) continue;
      Handle(*conn, **next);
    }
  }

  Result<std::unique_ptr<amqp::Connection>> Connect() {
    auto c = amqp::Connection::Open(amqp);
    if (!c) return c;
    if (auto r = amqp::DeclareExchanges(**c); !r) return std::unexpected(r.error());
    auto queue = amqp::DeclareControlQueue(**c, info->node);
    if (!queue) return std::unexpected(queue.error());
    if (auto tag = (*c)->Consume(*queue, false); !tag) return std::unexpected(tag.error());
    return c;
  }

  void Handle(amqp::Connection& conn, const amqp::Delivery& d) {
    // admin.{command}.{node|all}
    const std::string& key = d.routing_key;
    const size_t a = key.find('.');
    const size_t b = key.rfind('.');
    const std::string command =
        (a != std::string::npos && b > a) ? key.substr(a + 1, b - a - 1) : "";
    const std::string target = b != std::string::npos ? key.substr(b + 1) : "";
    if (target != info->node && target != "all") {
      (void)conn.Ack(d.delivery_tag);
      return;
    }
    const std::string event_id = protocol::EventIdFor(d.message.message_id, info->node, info->env);
    std::string reply;
    bool shutdown = false;
    std::string mode = "drain";
    if (!d.message.body.empty()) {
      auto request = protocol::DecodeRequest(d.message.body, info->max_body_bytes);
      if (!request) {
        reply = protocol::EncodeError(event_id, request.error());
      } else if (request->template_name != "admin" || request->op != command) {
        reply = protocol::EncodeError(
            event_id,
            Error{Code::kValidation, "the body must be {\"template\": \"admin\", \"op\": \"" +
                                         command + "\"} for routing key " + key});
      } else if (const auto* m = request->data.if_contains("mode"); m && m->is_string()) {
        mode = std::string(m->get_string());
      }
    }
    if (reply.empty()) {
      if (command == "shutdown") {
        if (mode != "drain") {
          reply = protocol::EncodeError(event_id,
                                        Error{Code::kValidation, "data.mode must be \"drain\""});
        } else {
          reply = protocol::EncodeOk(
              event_id, json::object{{"node", info->node}, {"status", "shutting down"}});
          shutdown = true;
        }
      } else if (command == "ping") {
        reply = protocol::EncodeOk(event_id, PingData(*info));
      } else {
        reply = protocol::EncodeError(
            event_id, Error{Code::kUnknownOp, "unknown admin command '" + command + "'"});
      }
    }
    if (!d.message.reply_to.empty()) {
      amqp::Message m;
      m.body = reply;
      m.correlation_id = d.message.correlation_id;
      (void)conn.Publish("", d.message.reply_to, m);
    }
    (void)conn.Ack(d.delivery_tag);
    if (shutdown) {
      spdlog::info("admin shutdown received ({})", key);
      on_shutdown(mode);
    }
  }
};

ControlLoop::ControlLoop(config::AmqpSettings amqp, std::shared_ptr<const NodeInfo> info,
                         std::function<void(const std::string&)> on_shutdown)
    : impl_(std::make_unique<Impl>()) {
  impl_->amqp = std::move(amqp);
  impl_->info = std::move(info);
  impl_->on_shutdown = std::move(on_shutdown);
}

ControlLoop::~ControlLoop() { Stop(); }

void ControlLoop::Start() {
  impl_->thread = std::jthread([this](std::stop_token stop) { impl_->Run(stop); });
}

void ControlLoop::Stop() {
  if (impl_->thread.joinable()) {
    impl_->thread.request_stop();
    impl_->thread.join();
  }
}

}  // namespace beds::brokers
