// The gateway's way to the brokers: one AMQP connection per HTTP thread, driven by that thread's
// io_context. A request is read, published on beds.events through the C++ client (direct
// reply-to, mandatory publishes, a fresh idempotency key on every write), and answered when its
// reply arrives on the connection's socket, all on the one thread: no hand-over to another thread
// and back, which on a busy machine costs more than the publish itself.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/error.hpp"

namespace beds::gateway {

class Bridge {
 public:
  // Called on the io_context's thread with the reply body, or TIMEOUT when no reply came in time,
  // UNAVAILABLE when the broker cannot be reached.
  using Done = std::move_only_function<void(Result<std::string>)>;

  // Connects in the background (a connect blocks, so it runs on a thread of its own and hands
  // the connection over); `index` names it in the log.
  Bridge(boost::asio::io_context& ioc, const config::AmqpSettings& amqp, int index);
  // After the io_context has stopped: what still waits is dropped with its handlers.
  ~Bridge();
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // On the io_context's thread: publishes `envelope` on `routing_key` (persistent when `write`)
  // and calls `done` once, later (never from inside Call). `actor`: the authenticated principal
  // the request is sent for ("" for none).
  void Call(std::string routing_key, std::string envelope, bool write, std::string actor,
            std::chrono::milliseconds timeout, Done done);
  // Whether the connection is up now (any thread).
  bool Connected() const { return connected_.load(); }

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::atomic<bool> connected_{false};
};

}  // namespace beds::gateway
