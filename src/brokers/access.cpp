#include "brokers/access.hpp"

#include <algorithm>

#include "brokers/pool.hpp"
#include "core/ops.hpp"
#include "core/permissions.hpp"

namespace beds::brokers {
namespace {

bool Listed(const std::vector<std::string>& users, const std::string& user) {
  return std::find(users.begin(), users.end(), user) != users.end();
}

}  // namespace

std::optional<Error> Denied(const config::AccessSettings& access, const amqp::Delivery& delivery,
                            const Request& r) {
  if (access.clients.empty()) return std::nullopt;
  if (r.template_name == "sys" && OpOf(r) == Op::kPing) return std::nullopt;
  const Sender sender = SenderOf(delivery, access.trusted_users);
  if (!sender.via.empty()) return std::nullopt;
  if (!sender.user.empty() &&
      (Listed(access.node_users, sender.user) || Listed(access.trusted_users, sender.user))) {
    return std::nullopt;
  }
  const std::string permission = r.template_name + "/" + OpLabel(r);
  auto client = access.clients.find(sender.user);
  if (client == access.clients.end()) {
    return Error{Code::kForbidden,
                 sender.user.empty()
                     ? "the request names no AMQP user_id, and this node serves only known "
                       "users ([access] clients)"
                     : "AMQP user '" + sender.user +
                           "' is not a client of this node ([access] "
                           "clients)"};
  }
  if (Allows(client->second, permission)) return std::nullopt;
  return Error{Code::kForbidden, "AMQP user '" + sender.user + "' may not call " + permission +
                                     " ([access.clients." + sender.user + "] allow)"};
}

}  // namespace beds::brokers
