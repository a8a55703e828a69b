// The front door (docs/gateway.md): HTTP/1.1 in front of the brokers. Each request is routed
// (gateway/rest.hpp) to a protocol envelope, published on beds.events through the bridge
// (gateway/bridge.hpp) and answered with the node's reply, so every guarantee of the broker path
// (validation, exactly-once writes, lineage, CALGON) holds for HTTP clients too. The gateway
// never touches a database. Started at IPL when [gateway] enabled = true; its own threads.
#pragma once

#include <memory>

#include "config/config.hpp"
#include "core/error.hpp"
#include "templates/templates.hpp"

namespace beds::gateway {

class Gateway {
 public:
  // Listens on settings.listen and starts the HTTP threads and the bridge's connections.
  // VALIDATION for a malformed listen address, UNAVAILABLE when it cannot be bound.
  [[nodiscard]] static Result<std::unique_ptr<Gateway>> Start(
      const config::GatewaySettings& settings, const config::AmqpSettings& amqp,
      std::shared_ptr<const templates::Snapshot> templates);

  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;
  // Stops taking connections, answers what waits for a reply UNAVAILABLE, joins the threads.
  ~Gateway();

  int port() const;  // the bound port

 private:
  struct Impl;
  explicit Gateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace beds::gateway
