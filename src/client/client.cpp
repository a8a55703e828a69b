#include "client/client.hpp"

#include <boost/json.hpp>
#include <map>
#include <thread>

#include "core/backoff.hpp"
#include "core/lineage.hpp"
#include "protocol/envelope.hpp"

namespace beds::client {
namespace {
using namespace std::chrono_literals;
constexpr const char* kDirectReplyTo = "amq.rabbitmq.reply-to";
}  // namespace

Result<std::string> AsChildOf(const Lineage& parent, std::string_view body) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) return Fail(Code::kValidation, "a request body is a JSON object");
  if (!IsEventId(parent.event_id)) return Fail(Code::kValidation, "the parent has no event id");
  v.get_object()["lineage"] =
      boost::json::object{{"parent_id", parent.event_id}, {"depth", parent.depth + 1}};
  return boost::json::serialize(v);
}

Result<Lineage> LineageOfReply(std::string_view reply_body) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(reply_body, ec);
  const auto* id = !ec && v.is_object() ? v.get_object().if_contains("event_id") : nullptr;
  if (!id || !id->is_string() || !IsEventId(id->get_string())) {
    return Fail(Code::kValidation, "the reply carries no event id");
  }
  return Lineage{std::string(id->get_string()), "", 0};
}

std::string BatchBody(const std::vector<std::string>& envelopes, bool atomic) {
  std::string body = atomic ? R"({"atomic":true,"batch":[)" : R"({"batch":[)";
  for (size_t i = 0; i < envelopes.size(); ++i) {
    if (i) body += ',';
    body += envelopes[i];
  }
  return body + "]}";
}

Result<std::vector<std::string>> BatchReplies(std::string_view reply_body) {
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(reply_body, ec);
  const boost::json::object* o = ec ? nullptr : v.if_object();
  if (!o) return std::unexpected(Error{Code::kInternal, "the batch's reply is not a JSON object"});
  const boost::json::value* ok = o->if_contains("ok");
  if (!ok || !ok->is_bool() || !ok->get_bool()) {
    auto decoded = protocol::DecodeReply(reply_body);
    if (!decoded || !decoded->error) {
      return std::unexpected(Error{Code::kInternal, "the batch's reply has no error"});
    }
    Error e = *decoded->error;
    const boost::json::value* err = o->if_contains("error");
    if (err && err->is_object()) {
      if (const auto* index = err->as_object().if_contains("index"); index && index->is_int64()) {
        e.message = "envelope " + std::to_string(index->get_int64()) + ": " + e.message;
      }
    }
    return std::unexpected(std::move(e));
  }
  const boost::json::value* data = o->if_contains("data");
  if (!data || !data->is_array()) {
    return std::unexpected(Error{Code::kInternal, "the batch's reply has no data array"});
  }
  std::vector<std::string> replies;
  for (const auto& r : data->get_array()) replies.push_back(boost::json::serialize(r));
  return replies;
}

std::string UnroutableReply(const std::string& exchange, const std::string& routing_key) {
  const std::string message =
      "no queue is bound to routing key '" + routing_key + "' on " + exchange +
      ", so no node received this request: requests go on {route}.read or {route}.write (e.g. "
      "rel.read, rec.write, sys.read), and a node serving that route must have started once on "
      "this vhost";
  return boost::json::serialize(boost::json::object{
      {"ok", false},
      {"event_id", ""},
      {"error",
       boost::json::object{{"code", "UNAVAILABLE"}, {"message", message}, {"retryable", false}}}});
}

Result<std::vector<Reply>> Client::FanOut(std::vector<Request> requests,
                                          std::chrono::milliseconds timeout) {
  std::map<std::string, size_t> slot;  // correlation id → position
  for (size_t i = 0; i < requests.size(); ++i) {
    auto& r = requests[i];
    r.options.expect_reply = true;
    auto id = Send(r.routing_key, std::move(r.body), r.options);
    if (!id) return std::unexpected(id.error());
    slot[*id] = i;
  }
  std::vector<Reply> replies(requests.size());
  std::deque<Reply> others;  // replies to other requests, kept for Receive() afterwards
  const auto until = std::chrono::steady_clock::now() + timeout;
  Result<void> outcome = Ok();
  while (!slot.empty()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      for (const auto& [id, i] : slot) pending_.erase(id);
      outcome = Fail(Code::kTimeout, std::to_string(slot.size()) + " of " +
                                         std::to_string(requests.size()) + " not answered within " +
                                         std::to_string(timeout.count()) + " ms");
      break;
    }
    auto r = Receive(left);
    if (!r) {
      outcome = std::unexpected(r.error());
      break;
    }
    if (!*r) continue;
    auto it = slot.find((*r)->correlation_id);
    if (it == slot.end()) {
      others.push_back(std::move(**r));
      continue;
    }
    replies[it->second] = std::move(**r);
    slot.erase(it);
  }
  for (auto& o : others) early_.push_back(std::move(o));
  if (!outcome) return std::unexpected(outcome.error());
  return replies;
}

Client::Client(config::AmqpSettings settings)
    : settings_(std::move(settings)), prefix_(NewGuid()) {}

Result<std::unique_ptr<Client>> Client::Connect(const config::AmqpSettings& settings) {
  std::unique_ptr<Client> client(new Client(settings));
  if (auto r = client->Open(); !r) return std::unexpected(r.error());
  return client;
}

Result<void> Client::Open() {
  auto c = amqp::Connection::Open(settings_);
  if (!c) return std::unexpected(c.error());
  // Direct reply-to needs its consumer (no-ack) before the first publish on the same channel.
  if (auto tag = (*c)->Consume(kDirectReplyTo, true); !tag) return std::unexpected(tag.error());
  connection_ = std::move(*c);
  return Ok();
}

Result<void> Client::Reconnect(const Error& cause) {
  connection_.reset();
  const auto give_up = std::chrono::steady_clock::now() + reconnect_window_;
  Backoff backoff(100ms, 2s);
  Error last = cause;
  while (std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(backoff.Next());
    if (auto r = Open(); !r) {
      last = r.error();
      continue;
    }
    ++reconnects_;
    bool resent = true;
    for (const auto& [id, p] : pending_) {
      if (auto r = connection_->PublishReturnable(p.exchange, p.routing_key, p.message); !r) {
        last = r.error();
        connection_.reset();
        resent = false;
        break;
      }
    }
    if (resent) return Ok();
  }
  return Fail(Code::kUnavailable, "lost the broker and could not reconnect: " + last.message);
}

std::optional<std::string> WithIdempotencyKey(std::string_view body, std::string& key) {
  std::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  boost::json::object& o = v.as_object();
  if (const auto* given = o.if_contains("idempotency_key")) {
    if (given->is_string()) key = std::string(given->get_string());
    return std::string(body);
  }
  o["idempotency_key"] = key;
  return boost::json::serialize(o);
}

Result<std::string> Client::Send(const std::string& routing_key, std::string body,
                                 const SendOptions& options) {
  Pending p;
  p.exchange = options.exchange;
  p.routing_key = routing_key;
  std::string id = prefix_ + "-" + std::to_string(++next_id_);
  // Every write carries a key, so that a write whose outcome was unknown can be re-sent safely
  // (docs/protocol.md "Exactly once"); the message id lets the node tell a redelivery apart.
  if (routing_key.ends_with(".write") && options.expect_reply && options.add_idempotency_key) {
    p.idempotency_key = options.idempotency_key.empty() ? NewGuid() : options.idempotency_key;
    if (auto keyed = WithIdempotencyKey(body, p.idempotency_key)) body = std::move(*keyed);
  }
  p.message.body = std::move(body);
  p.message.message_id = !options.message_id.empty() ? options.message_id
                         : options.add_message_id    ? id
                                                     : "";
  p.message.delivery_mode = options.delivery_mode;
  if (!options.actor.empty()) p.message.headers["x-beds-actor"] = options.actor;
  // The broker checks user_id against our login, so the node's audit records can name us.
  if (!settings_.user.empty()) p.message.user_id = settings_.user;
  if (options.expect_reply) {
    p.message.reply_to = kDirectReplyTo;
    p.message.correlation_id = id;
  }
  if (!connection_) {
    if (auto r = Reconnect(Error{Code::kUnavailable, "not connected"}); !r)
      return std::unexpected(r.error());
  }
  // A request that expects a reply is published mandatory: if nothing is bound to its key, the
  // broker hands it back and Receive() answers it at once.
  auto published = options.expect_reply
                       ? connection_->PublishReturnable(p.exchange, p.routing_key, p.message)
                       : connection_->Publish(p.exchange, p.routing_key, p.message);
  if (auto r = published; !r) {
    // Reconnect re-sends everything pending; a fire-and-forget message is sent again here.
    if (options.expect_reply) {
      pending_.emplace(id, std::move(p));
      if (auto rc = Reconnect(r.error()); !rc) return std::unexpected(rc.error());
      return id;
    }
    if (auto rc = Reconnect(r.error()); !rc) return std::unexpected(rc.error());
    if (auto again = connection_->Publish(p.exchange, p.routing_key, p.message); !again) {
      connection_.reset();
      return std::unexpected(again.error());
    }
    return id;
  }
  if (options.expect_reply) pending_.emplace(id, std::move(p));
  return id;
}

Result<std::optional<Reply>> Client::Receive(std::chrono::milliseconds timeout) {
  if (auto early = TakeEarly()) return early;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left <= 0ms) return std::nullopt;
    if (!connection_) {
      if (auto r = Reconnect(Error{Code::kUnavailable, "not connected"}); !r)
        return std::unexpected(r.error());
    }
    auto next = connection_->Next(std::min<std::chrono::milliseconds>(left, 500ms));
    if (!next) {
      if (auto r = Reconnect(next.error()); !r) return std::unexpected(r.error());
      continue;
    }
    if (!*next) continue;
    if (auto reply = Answer(std::move(**next))) return reply;
  }
}

std::optional<Reply> Client::Answer(amqp::Delivery delivery) {
  auto it = pending_.find(delivery.message.correlation_id);
  // A duplicate answer to a request re-sent after a reconnect, or one its caller gave up on.
  if (it == pending_.end()) return std::nullopt;
  if (delivery.returned) {
    Reply reply{it->first, UnroutableReply(it->second.exchange, it->second.routing_key), true,
                it->second.idempotency_key};
    pending_.erase(it);
    return reply;
  }
  Reply reply{delivery.message.correlation_id, std::move(delivery.message.body), false,
              std::move(it->second.idempotency_key)};
  pending_.erase(it);
  return reply;
}

std::optional<Reply> Client::TakeEarly() {
  if (early_.empty()) return std::nullopt;
  Reply r = std::move(early_.front());
  early_.pop_front();
  return r;
}

int Client::fd() const { return connection_ ? connection_->fd() : -1; }

Result<std::optional<Reply>> Client::Poll() {
  if (auto early = TakeEarly()) return early;
  if (!connection_) return Fail(Code::kUnavailable, "not connected to the broker");
  // A frame that is not a reply (a heartbeat, a confirm) reads as nothing: go on while
  // rabbitmq-c still holds bytes, or a reply behind it would wait for the socket's next news.
  for (int quiet = 0; quiet < 64;) {
    auto next = connection_->Next(0ms);
    if (!next) {
      connection_.reset();
      return std::unexpected(next.error());
    }
    if (*next) {
      if (auto reply = Answer(std::move(**next))) return reply;
      continue;  // a late or duplicate answer
    }
    if (!connection_->Buffered()) return std::nullopt;
    ++quiet;
  }
  return std::nullopt;
}

Result<Reply> Client::Call(const std::string& routing_key, std::string body,
                           std::chrono::milliseconds timeout, const SendOptions& options) {
  auto id = Send(routing_key, std::move(body), options);
  if (!id) return std::unexpected(id.error());
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::deque<Reply> others;
  Result<Reply> result =
      Fail(Code::kTimeout, "no reply within " + std::to_string(timeout.count()) + " ms");
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      pending_.erase(*id);
      break;
    }
    auto r = Receive(left);
    if (!r) {
      result = std::unexpected(r.error());
      break;
    }
    if (!*r) continue;
    if ((*r)->correlation_id == *id) {
      result = std::move(**r);
      break;
    }
    others.push_back(std::move(**r));
  }
  for (auto& o : others) early_.push_back(std::move(o));
  return result;
}

}  // namespace beds::client
