// The gateway's way to the brokers: a few AMQP connections ("lanes"), each owned by one thread,
// that publish envelopes on beds.events through the C++ client (direct reply-to, mandatory
// publishes, a fresh idempotency key on every write) and hand the replies back. HTTP threads
// never block on AMQP: they queue a call on a lane and are called back with its reply.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"

namespace beds::gateway {

class Bridge {
 public:
  // Called on a lane's thread with the reply body, or TIMEOUT when no reply came in time,
  // UNAVAILABLE when the broker cannot be reached, or the gateway is stopping.
  using Done = std::move_only_function<void(Result<std::string>)>;

  // Starts `lanes` threads; each connects (and reconnects) with backoff.
  Bridge(const config::AmqpSettings& amqp, int lanes);
  // Stops every lane: calls still waiting are answered UNAVAILABLE.
  ~Bridge();
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Publishes `envelope` on `routing_key` (persistent when `write`) and calls `done` once.
  // `actor`: the authenticated principal the request is sent for ("" for none).
  void Call(std::string routing_key, std::string envelope, bool write, std::string actor,
            std::chrono::milliseconds timeout, Done done);
  // Whether some lane is connected to the broker now.
  bool Connected() const;

 private:
  struct Lane;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::atomic<size_t> next_{0};
};

}  // namespace beds::gateway
