// A running BEDS node: what `beds run` builds from a validated Config. Start() runs IPL steps
// 3–8 (the caller did 1–2: config and logging), Stop() drains in reverse order. RequestStop() may
// be called from any thread (the control loop's admin.shutdown, a signal watcher).
#pragma once

#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/error.hpp"

namespace beds::app {

class Node {
 public:
  explicit Node(config::Config config);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // IPL. On a production node any failed step is returned (the caller exits non-zero with its
  // message); on a development node failures are logged and the node runs degraded, its workers
  // reconnecting until the servers appear.
  Result<void> Start();

  void RequestStop(const std::string& why);
  bool stop_requested() const;

  // Stop consuming, finish in-flight work (the broker requeues the rest), close connections.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace beds::app
