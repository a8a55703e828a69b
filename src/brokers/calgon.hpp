// The calgon pool's handler (docs/protocol.md "CALGON"): runs each job the dispatcher handed on
// (brokers/tickets.hpp) as the dispatcher runs any request, exactly once for a write, keeps its
// ticket's state and result, and publishes `calgon.done.{template}` when it ends.
#pragma once

#include <memory>
#include <string>

#include "brokers/dispatch.hpp"
#include "brokers/pool.hpp"
#include "brokers/system.hpp"
#include "brokers/tickets.hpp"

namespace beds::brokers {

// The calgon pool's handler: one job at a time per worker.
class CalgonHandler : public Handler {
 public:
  CalgonHandler(std::shared_ptr<const NodeInfo> info, std::shared_ptr<const CoreFactory> factory);
  Outcome Handle(const amqp::Delivery& delivery, int retries) override;
  std::string ParkedReply(const amqp::Delivery& delivery, const std::string& reason) override;

 private:
  std::shared_ptr<const NodeInfo> info_;
  DispatchHandler dispatch_;  // runs the job's request
  TicketStore tickets_;
};

}  // namespace beds::brokers
