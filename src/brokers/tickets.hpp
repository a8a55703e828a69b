// CALGON tickets (docs/protocol.md "CALGON"). A data request sent with `async: true`, or a call
// its template declares `kind = "job"`, is checked, given a ticket (its event id) in the ticket
// store (a REC template, [calgon] ticket_template) and answered at once; the job goes to the queue
// of the calgon pool ([calgon] broker), served by CalgonHandler (brokers/calgon.hpp). calgon/poll,
// calgon/wait and calgon/cancel read and change tickets.
#pragma once

#include <boost/json.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "brokers/pool.hpp"
#include "brokers/system.hpp"
#include "core/lineage.hpp"
#include "core/namaste.hpp"
#include "core/request.hpp"

namespace beds::brokers {

// Ticket states.
inline constexpr const char* kQueued = "queued";
inline constexpr const char* kRunning = "running";
inline constexpr const char* kDone = "done";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kCancelled = "cancelled";
inline constexpr const char* kExpired = "expired";

// A ticket to create: its id (the submit's event id) and the job's template and op.
struct NewTicket {
  std::string ticket;
  std::string template_name;
  std::string op;  // "call:{name}" for a call
};

// One worker's view of the ticket store, through its own adapter session.
class TicketStore {
 public:
  TicketStore(std::shared_ptr<const NodeInfo> info, std::shared_ptr<const CoreFactory> factory);

  // New tickets, queued, in one transaction where the store has them (a redelivered submit finds
  // its ticket there and leaves it).
  Result<void> Create(const std::vector<NewTicket>& tickets);
  // The ticket as stored; NOT_FOUND when there is none (or it expired and was swept).
  Result<boost::json::object> Get(const std::string& ticket, int64_t deadline_ms = 0);
  // Sets `fields` (and expires: result_ttl_s from now); the ticket after the change.
  Result<boost::json::object> Update(const std::string& ticket, boost::json::object fields);

 private:
  // The ticket template and its adapter, or UNAVAILABLE naming what is missing.
  Result<std::pair<const Template*, NamasteCore*>> Store();

  std::shared_ptr<const NodeInfo> info_;
  std::optional<CoreFactory::Session> session_;
};

// The ticket of a submit of `r` on `t`.
NewTicket NewTicketOf(const Template& t, const Request& r, const Lineage& lineage);

// Whether a delivery is a CALGON job (our worker sent it to the job queue): it runs now.
bool IsJob(const amqp::Delivery& delivery);

// The submit of `r` (already routed and its op found): the reply with its ticket (the request's
// event id), and the job to hand to the calgon pool's queue. The caller creates the ticket
// (TicketStore::Create, NewTicketOf) before the job is published. `lineage` is the request's.
Result<Outcome> SubmitJob(const NodeInfo& info, const Template& t, const OpSpec& spec,
                          const Request& r, const amqp::Delivery& delivery, const Lineage& lineage);

// calgon/poll, calgon/wait and calgon/cancel: the ticket after the op.
Result<boost::json::object> TicketOp(const NodeInfo& info, TicketStore& tickets, const Request& r);

}  // namespace beds::brokers
