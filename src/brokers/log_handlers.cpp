#include "brokers/log_handlers.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "logs/logs.hpp"
#include "logs/store.hpp"

namespace beds::brokers {
namespace {

using Action = Outcome::Action;

Outcome Park(std::string reason) { return Outcome::Park(std::move(reason)); }
Outcome Done() { return Outcome::Ack(); }

}  // namespace

LogStoreHandler::LogStoreHandler(std::shared_ptr<const templates::Snapshot> templates,
                                 std::shared_ptr<const CoreFactory> factory,
                                 std::string store_template, std::vector<std::string> node_users)
    : templates_(std::move(templates)),
      store_template_(std::move(store_template)),
      node_users_(std::move(node_users)) {
  if (factory) session_.emplace(std::move(factory));
}

Outcome LogStoreHandler::Handle(const amqp::Delivery& delivery, int) {
  return HandleBatch({delivery}).front();
}

std::vector<Outcome> LogStoreHandler::HandleBatch(const std::vector<amqp::Delivery>& batch) {
  // Without a store nothing can be done now; a retry hands the batch back to the queue, where
  // the events wait for an operator to fix the node (they are not parked: they are fine).
  auto later = [&](const std::string& why) {
    return std::vector<Outcome>(batch.size(), Outcome::Retry(why));
  };
  const Template* store = templates_ ? templates_->Find(store_template_) : nullptr;
  if (!store) return later("no log store template '" + store_template_ + "'");
  if (templates_->unavailable.contains(store_template_)) {
    return later("log store template '" + store_template_ + "' is unavailable");
  }
  NamasteCore* core = session_ ? session_->For(*store) : nullptr;
  if (!core) return later("no adapter for database '" + store->database + "'");

  std::vector<Outcome> outcomes(batch.size(), Done());
  std::vector<logs::StoreItem> items;
  std::vector<size_t> index;  // items[k] came from batch[index[k]]
  // A message may carry several events: the good ones are stored, and one bad line parks the
  // message for an operator (a replay of it stores the good ones nothing twice).
  auto prepare = [&] {
    items.clear();
    index.clear();
    items.reserve(std::max<size_t>(batch.size(), 1024));  // a message may hold many events
    for (size_t i = 0; i < batch.size(); ++i) {
      const std::string& user = batch[i].message.user_id;
      if (!node_users_.empty() &&
          std::find(node_users_.begin(), node_users_.end(), user) == node_users_.end()) {
        // RabbitMQ checked user_id against the publisher's login: only nodes write the record.
        outcomes[i] = Park(user.empty() ? "not from a node user: the message names no user_id"
                                        : "not from a node user: AMQP user '" + user +
                                              "' is not in [access] node_users");
        continue;
      }
      for (auto& event : logs::DecodeEvents(batch[i].message.body, batch[i].message.content_type)) {
        if (!event) {
          outcomes[i] = Park("not a log event: " + event.error().message);
          continue;
        }
        auto item = logs::ToStoreItem(*store, *event);
        if (!item) {
          outcomes[i] = Park("cannot be stored: " + item.error().message);
          continue;
        }
        items.push_back(std::move(*item));
        index.push_back(i);
      }
    }
  };
  prepare();
  if (items.empty()) return outcomes;
  auto stored = logs::StoreEvents(*core, *store, std::move(items));
  if (stored) return outcomes;
  if (stored.error().retryable()) return later(stored.error().message);
  // One bad event must not hold the batch back: store one by one and park what still fails.
  // (The batch call consumed its items; this rare path makes them again.)
  prepare();
  for (size_t k = 0; k < items.size(); ++k) {
    std::vector<logs::StoreItem> one_item;
    one_item.push_back(std::move(items[k]));
    auto one = logs::StoreEvents(*core, *store, std::move(one_item));
    if (one) continue;
    if (one.error().retryable()) return later(one.error().message);
    outcomes[index[k]] = Park("cannot be stored: " + one.error().message);
  }
  return outcomes;
}

SyslogHandler::SyslogHandler(std::string socket_path, std::string min_level)
    : socket_path_(std::move(socket_path)), min_rank_(logs::LevelRank(min_level)) {}

SyslogHandler::~SyslogHandler() {
  if (fd_ >= 0) ::close(fd_);
}

Outcome SyslogHandler::Handle(const amqp::Delivery& delivery, int) {
  Outcome outcome = Done();
  for (auto& event : logs::DecodeEvents(delivery.message.body, delivery.message.content_type)) {
    if (!event) {
      outcome = Park("not a log event: " + event.error().message);
      continue;
    }
    if (auto failed = Forward(*event)) {
      return Outcome::Retry(*failed);
    }
  }
  return outcome;
}

std::optional<std::string> SyslogHandler::Forward(const logs::LogEvent& event) {
  const int rank = logs::LevelRank(event.level);
  if (rank < min_rank_) return std::nullopt;
  // RFC 3164 over the local datagram socket: <PRI>TAG: MSG. Facility user (1); the severity
  // follows the level (critical 2, error 3, warn 4, info 6, debug and trace 7).
  static constexpr int kSeverity[] = {7, 7, 6, 4, 3, 2};
  const int pri = 8 + kSeverity[std::min(rank, 5)];
  std::string line = "<" + std::to_string(pri) + ">beds[" + event.node + "]: " + event.level +
                     " [" + event.lineage.event_id + "]";
  if (!event.template_name.empty()) line += " " + event.template_name + "/" + event.op;
  line += " " + event.msg;
  if (line.size() > 8192) line.resize(8192);
  if (fd_ < 0) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return std::string("syslog socket: ") + std::strerror(errno);
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof addr.sun_path) {
    return "syslog_socket path too long: " + socket_path_;
  }
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  if (::sendto(fd_, line.data(), line.size(), 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr) <
      0) {
    // No syslog on this machine (or it is full): the event is still in the log store. Retrying
    // would not help and would feed itself: each warning about it is a forwardable event too.
    ++unsent_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_warning_ > std::chrono::minutes(1)) {
      last_warning_ = now;
      spdlog::warn("syslog {}: {} ({} events not forwarded so far)", socket_path_,
                   std::strerror(errno), unsent_);
    }
  }
  return std::nullopt;
}

void NodeMetricsTable::Update(const std::string& node, boost::json::object fields) {
  std::lock_guard lock(mutex_);
  latest_[node] = std::move(fields);
}

std::map<std::string, boost::json::object> NodeMetricsTable::Snapshot() const {
  std::lock_guard lock(mutex_);
  return latest_;
}

Outcome MetricsHandler::Handle(const amqp::Delivery& delivery, int) {
  Outcome outcome = Done();
  for (auto& event : logs::DecodeEvents(delivery.message.body, delivery.message.content_type)) {
    if (!event) {
      outcome = Park("not a metric event: " + event.error().message);
      continue;
    }
    if (event->kind == "metric") table_->Update(event->node, std::move(event->fields));
  }
  return outcome;
}

}  // namespace beds::brokers
