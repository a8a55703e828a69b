// Who may call what over AMQP ([access], docs/operations.md "Access"): the dispatcher's check
// of a request against its sender, the user RabbitMQ verified (SenderOf).
#pragma once

#include <optional>

#include "amqp/channel.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "core/request.hpp"

namespace beds::brokers {

// FORBIDDEN when [access] clients are configured and the sender of `delivery` may not make
// request `r`: it is no node user, trusted user or client, or no pattern of its client entry
// covers `{template}/{op}`. A request a trusted user vouches for (a gateway's principal) was
// checked by the gateway. sys/ping is open to every sender (it is how clients find a node up).
std::optional<Error> Denied(const config::AccessSettings& access, const amqp::Delivery& delivery,
                            const Request& r);

}  // namespace beds::brokers
