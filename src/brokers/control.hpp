// The node's control loop: an exclusive, auto-delete queue bound to admin.# on beds.events.
// Routing key admin.{command}.{node|all}; commands for other nodes are ignored. Commands:
// shutdown (answers, then calls on_shutdown) and ping (answers like sys/ping). One thread with its
// own connection, reconnecting (and redeclaring its queue) after a broker restart.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "brokers/dispatch.hpp"
#include "config/config.hpp"

namespace beds::brokers {

class ControlLoop {
 public:
  ControlLoop(config::AmqpSettings amqp, std::shared_ptr<const NodeInfo> info,
              std::function<void(const std::string& mode)> on_shutdown);
  ~ControlLoop();
  ControlLoop(const ControlLoop&) = delete;
  ControlLoop& operator=(const ControlLoop&) = delete;

  void Start();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace beds::brokers
