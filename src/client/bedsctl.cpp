// `bedsctl`: the operator's client. Reads the same config as `beds` (for the broker connection)
// and speaks docs/protocol.md through the C++ client. Every command prints the JSON it received.
//   bedsctl ping [--node NAME]              sys/ping (or admin.ping.NAME; "all": every node)
//   bedsctl describe                        sys/describe
//   bedsctl request KEY JSON [--parent ID]  any request (a child of event ID with --parent)
//   bedsctl batch KEY [FILE] [--atomic]     the envelopes of FILE (JSON Lines; - = stdin) as one
//   batch bedsctl fanout KEY JSON N --parent ID   N copies at once, each a child of event ID
//   bedsctl lineage ID [--tree]             lineage/fetch: the event and all it caused
//   bedsctl dlq list BROKER                 parked messages and their x-beds-error (left in place)
//   bedsctl dlq replay BROKER               move them back to beds.{BROKER} for another try
//   bedsctl shutdown NODE|all               admin.shutdown.{node}
//   bedsctl access                          the rabbitmqctl commands for [access] (pipe to sh)
//   bedsctl curl JSON [--parent ID]         the same request through the HTTP gateway, as curl
#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <expected>
#include <fstream>
#include <iostream>
#include <optional>

#include "amqp/connection.hpp"
#include "amqp/topology.hpp"
#include "brokers/pool.hpp"
#include "client/client.hpp"
#include "config/config.hpp"
#include "core/listen.hpp"
#include "gateway/rest.hpp"
#include "protocol/envelope.hpp"

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

std::string HeaderText(const beds::amqp::HeaderValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return std::to_string(std::get<int64_t>(v));
}

// True when a reply body says "ok": true (a body that is not JSON says nothing of the kind).
bool ReplyOk(const std::string& body) {
  boost::system::error_code ec;
  const auto parsed = json::parse(body, ec);
  const auto* ok = !ec && parsed.is_object() ? parsed.as_object().if_contains("ok") : nullptr;
  return ok && ok->is_bool() && ok->get_bool();
}

// Sends `body` on `key` and prints the reply. No reply, or one the broker returned because no
// queue takes `key`, is said on stderr and answered with bedsctl's exit code for it.
std::expected<beds::client::Reply, int> SendAndPrint(const beds::config::AmqpSettings& amqp,
                                                     const std::string& key,
                                                     const std::string& body, int timeout_ms,
                                                     const std::string& idempotency_key) {
  auto client = beds::client::Client::Connect(amqp);
  if (!client) {
    std::cerr << "bedsctl: " << client.error().message << "\n";
    return std::unexpected(3);
  }
  beds::client::SendOptions options;
  options.idempotency_key = idempotency_key;
  auto reply = (*client)->Call(key, body, std::chrono::milliseconds(timeout_ms), options);
  if (!reply) {
    std::cerr << "bedsctl: " << reply.error().message << "\n";
    return std::unexpected(4);
  }
  std::cout << reply->body << "\n";
  if (reply->unroutable) {
    std::cerr << "bedsctl: nothing is bound to routing key '" << key
              << "' on beds.events: check the key (e.g. rel.read, rel.write, sys.read)\n";
    return std::unexpected(1);
  }
  return std::move(*reply);
}

int Request(const beds::config::AmqpSettings& amqp, const std::string& key, const std::string& body,
            int timeout_ms, const std::string& idempotency_key = {}) {
  auto reply = SendAndPrint(amqp, key, body, timeout_ms, idempotency_key);
  if (!reply) return reply.error();
  if (!reply->idempotency_key.empty() && !ReplyOk(reply->body)) {
    auto decoded = beds::protocol::DecodeReply(reply->body);
    if (decoded && decoded->error && decoded->error->retryable()) {
      std::cerr << "bedsctl: this write can be sent again safely: add --idempotency-key "
                << reply->idempotency_key
                << " (if it was applied, its recorded reply answers; if not, it is applied)\n";
    }
  }
  return ReplyOk(reply->body) ? 0 : 1;
}

// One batch of the envelopes in `file` (one JSON object per line, "-" for stdin; blank lines
// skipped): prints the reply, and says on stderr how many envelopes failed (exit 1 if any did).
int Batch(const beds::config::AmqpSettings& amqp, const std::string& key, const std::string& file,
          bool atomic, int timeout_ms, const std::string& idempotency_key) {
  std::ifstream opened;
  if (file != "-") {
    opened.open(file);
    if (!opened) {
      std::cerr << "bedsctl: cannot read " << file << "\n";
      return 2;
    }
  }
  std::istream& in = file == "-" ? std::cin : opened;
  std::vector<std::string> envelopes;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    boost::system::error_code ec;
    const json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) {
      std::cerr << "bedsctl: " << file << " line " << number
                << ": not a JSON object (a batch file holds one envelope per line)\n";
      return 2;
    }
    envelopes.push_back(line);
  }
  if (envelopes.empty()) {
    std::cerr << "bedsctl: " << file << " holds no envelopes (one JSON object per line)\n";
    return 2;
  }
  auto reply = SendAndPrint(amqp, key, beds::client::BatchBody(envelopes, atomic), timeout_ms,
                            idempotency_key);
  if (!reply) return reply.error();
  auto replies = beds::client::BatchReplies(reply->body);
  if (!replies) {
    std::cerr << "bedsctl: the batch failed: " << replies.error().message << "\n";
    if (!reply->idempotency_key.empty() && replies.error().retryable()) {
      std::cerr << "bedsctl: it can be sent again safely: add --idempotency-key "
                << reply->idempotency_key << "\n";
    }
    return 1;
  }
  size_t failed = 0;
  for (const std::string& r : *replies) failed += ReplyOk(r) ? 0 : 1;
  if (failed > 0) {
    std::cerr << "bedsctl: " << failed << " of " << replies->size()
              << " envelopes failed (their replies say why)\n";
    return 1;
  }
  return 0;
}

// The body as a child of `parent` (when given), or an error line and nullopt.
std::optional<std::string> WithParent(const std::string& body, const std::string& parent) {
  if (parent.empty()) return body;
  auto child = beds::client::AsChildOf(beds::Lineage{parent, "", 0}, body);
  if (!child) {
    std::cerr << "bedsctl: " << child.error().message << "\n";
    return std::nullopt;
  }
  return *child;
}

int FanOut(const beds::config::AmqpSettings& amqp, const std::string& key, const std::string& body,
           int n, const std::string& parent, int timeout_ms) {
  auto client = beds::client::Client::Connect(amqp);
  if (!client) {
    std::cerr << "bedsctl: " << client.error().message << "\n";
    return 3;
  }
  auto child = WithParent(body, parent);
  if (!child) return 2;
  std::vector<beds::client::Client::Request> requests(static_cast<size_t>(n), {key, *child, {}});
  const auto started = std::chrono::steady_clock::now();
  auto replies = (*client)->FanOut(std::move(requests), std::chrono::milliseconds(timeout_ms));
  if (!replies) {
    std::cerr << "bedsctl: " << replies.error().message << "\n";
    return 4;
  }
  int failed = 0;
  for (const auto& r : *replies) {
    std::cout << r.body << "\n";
    if (!ReplyOk(r.body)) ++failed;
  }
  std::cerr << n << " replies in "
            << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
                   .count()
            << " ms" << (failed ? ", " + std::to_string(failed) + " not ok" : "") << "\n";
  return failed ? 1 : 0;
}

// One line per event, indented by depth: what happened, where, how long.
void PrintTree(const json::object& e, int indent) {
  auto text = [&](const char* k) {
    const auto* v = e.if_contains(k);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  const auto* d = e.if_contains("duration_us");
  const double ms = d && d->is_int64() ? static_cast<double>(d->get_int64()) / 1000.0 : 0;
  char duration[32];
  std::snprintf(duration, sizeof duration, "%8.3f ms", ms);
  std::cout << std::string(static_cast<size_t>(indent) * 2, ' ') << text("kind") << "  "
            << text("template") << "/" << text("op") << "  " << text("node") << "  " << duration
            << "  " << text("message") << "  [" << text("event_id") << "]\n";
  if (const auto* c = e.if_contains("children"); c && c->is_array()) {
    for (const auto& child : c->get_array()) {
      if (child.is_object()) PrintTree(child.get_object(), indent + 1);
    }
  }
}

int Lineage(const beds::config::AmqpSettings& amqp, const std::string& id, bool tree,
            int timeout_ms) {
  auto client = beds::client::Client::Connect(amqp);
  if (!client) {
    std::cerr << "bedsctl: " << client.error().message << "\n";
    return 3;
  }
  json::object request{{"template", "lineage"}, {"op", "fetch"}, {"id", id}};
  auto reply =
      (*client)->Call("sys.read", json::serialize(request), std::chrono::milliseconds(timeout_ms));
  if (!reply) {
    std::cerr << "bedsctl: " << reply.error().message << "\n";
    return 4;
  }
  // Parsed here rather than through ReplyOk: the tree below reads the same document.
  boost::system::error_code ec;
  const auto parsed = json::parse(reply->body, ec);
  const bool ok =
      !ec && parsed.is_object() && parsed.as_object().contains("ok") && parsed.at("ok").as_bool();
  if (!tree || !ok) {
    std::cout << reply->body << "\n";
    return ok ? 0 : 1;
  }
  const auto& data = parsed.at("data").as_object();
  PrintTree(data.at("root").as_object(), 0);
  std::cout << data.at("events").as_int64() << " event(s)"
            << (data.at("truncated").as_bool() ? " (truncated)" : "") << "\n";
  return 0;
}

// admin.ping.all is answered by every node: collect replies until `timeout_ms` passes.
int PingNodes(const beds::config::AmqpSettings& amqp, const std::string& node, int timeout_ms) {
  auto conn = beds::amqp::Connection::Open(amqp);
  if (!conn) {
    std::cerr << "bedsctl: " << conn.error().message << "\n";
    return 3;
  }
  if (auto r = (*conn)->Consume("amq.rabbitmq.reply-to", true); !r) return 3;
  beds::amqp::Message m;
  m.body = R"({"template":"admin","op":"ping"})";
  m.reply_to = "amq.rabbitmq.reply-to";
  m.correlation_id = "bedsctl-ping";
  if (auto r = (*conn)->PublishReturnable(beds::amqp::kEventsExchange, "admin.ping." + node, m); !r)
    return 3;
  int answers = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < until) {
    auto d = (*conn)->Next(100ms);
    if (!d) return 3;
    if (!*d) {
      if (answers > 0 && node != "all") break;
      continue;
    }
    if ((*d)->returned) {
      // Every running node binds its control queue to admin.#: none is running on this vhost.
      std::cerr << "bedsctl: no node is running on this vhost (nothing is bound to admin.ping."
                << node << ")\n";
      return 4;
    }
    std::cout << (*d)->message.body << "\n";
    ++answers;
  }
  return answers > 0 ? 0 : 4;
}

int DlqList(const beds::config::AmqpSettings& amqp, const std::string& broker, int max) {
  auto conn = beds::amqp::Connection::Open(amqp);
  if (!conn) {
    std::cerr << "bedsctl: " << conn.error().message << "\n";
    return 3;
  }
  // Unacked gets: closing the connection at the end puts every message back.
  int n = 0;
  for (; n < max; ++n) {
    auto d = (*conn)->Get(beds::amqp::DlqName(broker), false);
    if (!d) {
      std::cerr << "bedsctl: " << d.error().message << "\n";
      return 3;
    }
    if (!*d) break;
    json::object line{{"routing_key", (*d)->routing_key}, {"body", (*d)->message.body}};
    json::object headers;
    for (const auto& [k, v] : (*d)->message.headers) headers[k] = HeaderText(v);
    line["headers"] = headers;
    std::cout << json::serialize(line) << "\n";
  }
  std::cerr << n << " message(s) in " << beds::amqp::DlqName(broker)
            << (n == max ? " (listing capped)" : "") << "\n";
  return 0;
}

int DlqReplay(const beds::config::AmqpSettings& amqp, const std::string& broker) {
  auto conn = beds::amqp::Connection::Open(amqp);
  if (!conn || !(*conn)->EnableConfirms()) {
    std::cerr << "bedsctl: cannot connect\n";
    return 3;
  }
  // Only what is parked now: a message that fails again at once lands back in the DLQ and
  // must not be replayed forever.
  auto count = (*conn)->MessageCount(beds::amqp::DlqName(broker));
  if (!count) return 3;
  int n = 0;
  while (n < static_cast<int>(*count)) {
    auto d = (*conn)->Get(beds::amqp::DlqName(broker), false);
    if (!d) return 3;
    if (!*d) break;
    beds::amqp::Message m = (*d)->message;
    m.headers.erase(beds::brokers::kRetriesHeader);
    m.headers.erase(beds::brokers::kErrorHeader);
    // Confirmed publish first, ack second: a crash in between duplicates, never loses.
    if (auto r = (*conn)->Publish("", beds::amqp::QueueName(broker), m); !r) return 3;
    if (auto r = (*conn)->Ack((*d)->delivery_tag); !r) return 3;
    ++n;
  }
  std::cerr << "replayed " << n << " message(s) into " << beds::amqp::QueueName(broker) << "\n";
  return 0;
}

// A shell word: single-quoted, with any single quote closed, escaped and reopened.
std::string Quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The environment variable that holds `user`'s password in the printed script.
std::string PasswordVariable(const std::string& user) {
  std::string name = "BEDS_PASS_";
  for (char c : user) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

// The RabbitMQ side of [access] (docs/operations.md "Access"), as a script for sh: node users may
// do everything on the vhost; trusted users and clients may only publish on beds.events and read
// their replies (direct reply-to), so they can neither forge log events on beds.logs nor reach a
// queue directly. Passwords come from the environment, never from this output.
int AccessScript(const beds::config::Config& c) {
  const beds::config::AccessSettings& a = c.access;
  if (a.node_users.empty() && a.trusted_users.empty() && a.clients.empty()) {
    std::cerr << "bedsctl access: [access] lists no users: set node_users, trusted_users or "
                 "[access.clients.*] first (docs/operations.md \"Access\")\n";
    return 2;
  }
  const std::string vhost = Quoted(c.amqp.vhost);
  std::cout << "#!/bin/sh\n# RabbitMQ users and permissions for [access] (docs/operations.md "
               "\"Access\"), vhost "
            << c.amqp.vhost << ".\n# Each user's password comes from BEDS_PASS_{user}.\nset -eu\n"
            << "rabbitmqctl -q add_vhost " << vhost << " 2>/dev/null || true\n";
  auto user = [&](const std::string& name, const char* configure, const char* write,
                  const char* read) {
    const std::string q = Quoted(name);
    const std::string pass = PasswordVariable(name);
    std::cout << "rabbitmqctl -q add_user " << q << " \"${" << pass << ":?set " << pass
              << "}\" 2>/dev/null || rabbitmqctl -q change_password " << q << " \"$" << pass
              << "\"\n"
              << "rabbitmqctl -q set_permissions -p " << vhost << " " << q << " '" << configure
              << "' '" << write << "' '" << read << "'\n";
  };
  for (const auto& n : a.node_users) user(n, ".*", ".*", ".*");
  for (const auto& t : a.trusted_users)
    user(t, "^$", "^beds\\.events$", "^amq\\.rabbitmq\\.reply-to$");
  for (const auto& [name, allow] : a.clients) {
    user(name, "^$", "^beds\\.events$", "^amq\\.rabbitmq\\.reply-to$");
  }
  return 0;
}

// The envelope as the curl command that sends it through the HTTP gateway at [gateway] listen
// (docs/gateway.md): prints, sends nothing. The token, when the gateway wants one, is left to the
// shell ($BEDS_TOKEN) so it never lands in a history file from here.
int Curl(const beds::config::GatewaySettings& gateway, const std::string& body) {
  std::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) {
    std::cerr << "bedsctl curl: the envelope is not a JSON object\n";
    return 2;
  }
  auto form = beds::gateway::HttpOf(v.get_object());
  if (!form) {
    std::cerr << "bedsctl curl: " << form.error().message << "\n";
    return 2;
  }
  auto listen = beds::ParseListen(gateway.listen, "gateway listen");
  if (!listen) {
    std::cerr << "bedsctl curl: " << listen.error().message << "\n";
    return 2;
  }
  // A wildcard address is reached on loopback from this machine.
  std::string host = listen->ip == "0.0.0.0" ? "127.0.0.1"
                     : listen->ip == "::"    ? "::1"
                                             : listen->ip;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  const std::string url = std::string(gateway.cert_file.empty() ? "http" : "https") + "://" + host +
                          ":" + std::to_string(listen->port) + form->target;
  std::cout << "curl -sS";
  if (form->method != "GET") std::cout << " -X " << form->method;
  for (const auto& [name, value] : form->headers)
    std::cout << " -H " << Quoted(name + ": " + value);
  if (gateway.auth.required || !gateway.auth.principals.empty() || gateway.auth.jwt.enabled()) {
    std::cout << " -H \"Authorization: Bearer $BEDS_TOKEN\"";
  }
  if (!form->body.empty()) std::cout << " -d " << Quoted(form->body);
  std::cout << " " << Quoted(url) << "\n";
  if (listen->port == 0) {
    std::cerr << "bedsctl curl: [gateway] listen has port 0 (any free port): use the port the "
                 "node's log names\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bedsctl: talk to BEDS nodes over AMQP"};
  app.require_subcommand(1);
  // Options of bedsctl itself may also follow the subcommand (bedsctl ping --timeout-ms 500).
  app.fallthrough();
  std::string config_dir = "config";
  std::string env;
  int timeout_ms = 10000;
  app.add_option("--config-dir", config_dir, "directory holding beds.toml and env_*.toml");
  app.add_option("--env", env, "environment name (default: $BEDS_ENV, else dev)");
  app.add_option("--timeout-ms", timeout_ms, "how long to wait for a reply");

  std::string node;
  auto* ping = app.add_subcommand("ping", "sys/ping, or admin.ping.NODE with --node");
  ping->add_option("--node", node, "ask this node (or all) through its control queue");
  auto* describe = app.add_subcommand("describe", "sys/describe");
  std::string key, body;
  auto* request = app.add_subcommand("request", "send any request and print the reply");
  request->add_option("key", key, "routing key, e.g. sys.read")->required();
  request->add_option("body", body, "the JSON envelope")->required();
  std::string parent;
  request->add_option("--parent", parent, "send it as a child of this event id");
  std::string idempotency_key;
  request->add_option("--idempotency-key", idempotency_key,
                      "a write's key (default: a fresh one); re-send an unanswered write with "
                      "the key it was first sent with");
  int copies = 0;
  std::string batch_file = "-";
  bool atomic = false;
  auto* batch = app.add_subcommand("batch", "send envelopes (JSON Lines) as one batch envelope");
  batch->add_option("key", key, "routing key, e.g. rel.write")->required();
  batch->add_option("file", batch_file, "one JSON envelope per line; - (the default) = stdin");
  batch->add_flag("--atomic", atomic, "all or nothing: REL writes to one database only");
  batch->add_option("--idempotency-key", idempotency_key,
                    "the batch's key (default: a fresh one); re-send an unanswered batch with it");
  auto* fanout = app.add_subcommand("fanout", "send N copies at once as children of an event");
  fanout->add_option("key", key, "routing key, e.g. rel.read")->required();
  fanout->add_option("body", body, "the JSON envelope")->required();
  fanout->add_option("n", copies, "how many")->required()->check(CLI::Range(1, 10000));
  fanout->add_option("--parent", parent, "the parent event id")->required();
  std::string event_id;
  bool as_tree = false;
  auto* lineage = app.add_subcommand("lineage", "lineage/fetch: an event and everything it caused");
  lineage->add_option("id", event_id, "the event id (a reply's event_id)")->required();
  lineage->add_flag("--tree", as_tree, "print one indented line per event instead of JSON");
  auto* dlq = app.add_subcommand("dlq", "the parking lot of a broker");
  dlq->require_subcommand(1);
  std::string broker;
  int max = 100;
  auto* list = dlq->add_subcommand("list", "print parked messages, leaving them in place");
  list->add_option("broker", broker, "broker name, e.g. rBroker")->required();
  list->add_option("--max", max, "at most this many");
  auto* replay = dlq->add_subcommand("replay", "move parked messages back to their work queue");
  replay->add_option("broker", broker, "broker name, e.g. rBroker")->required();
  auto* shutdown = app.add_subcommand("shutdown", "admin.shutdown.{node|all}");
  shutdown->add_option("node", node, "node name or all")->required();
  auto* access = app.add_subcommand(
      "access", "print the rabbitmqctl commands that give [access]'s users their rights (| sh)");
  auto* curl = app.add_subcommand(
      "curl", "print the curl command that sends an envelope through the HTTP gateway");
  curl->add_option("body", body, "the JSON envelope, as for request")->required();
  curl->add_option("--parent", parent, "send it as a child of this event id");
  CLI11_PARSE(app, argc, argv);

  auto options =
      beds::config::FromEnvironment(config_dir, env.empty() ? std::nullopt : std::optional(env));
  auto config = beds::config::Load(options);
  if (!config) {
    std::cerr << "bedsctl: config invalid:\n" << config.error().message << "\n";
    return 2;
  }
  const auto& amqp = config->amqp;
  if (*access) return AccessScript(*config);
  if (*curl) {
    auto child = WithParent(body, parent);
    return child ? Curl(config->gateway, *child) : 2;
  }
  if (*ping) {
    if (!node.empty()) return PingNodes(amqp, node, timeout_ms);
    return Request(amqp, "sys.read", R"({"template":"sys","op":"ping"})", timeout_ms);
  }
  if (*describe)
    return Request(amqp, "sys.read", R"({"template":"sys","op":"describe"})", timeout_ms);
  if (*request) {
    auto child = WithParent(body, parent);
    return child ? Request(amqp, key, *child, timeout_ms, idempotency_key) : 2;
  }
  if (*batch) return Batch(amqp, key, batch_file, atomic, timeout_ms, idempotency_key);
  if (*fanout) return FanOut(amqp, key, body, copies, parent, timeout_ms);
  if (*lineage) return Lineage(amqp, event_id, as_tree, timeout_ms);
  if (*list) return DlqList(amqp, broker, max);
  if (*replay) return DlqReplay(amqp, broker);
  if (*shutdown) {
    return Request(amqp, "admin.shutdown." + node,
                   R"({"template":"admin","op":"shutdown","data":{"mode":"drain"}})", timeout_ms);
  }
  return 2;
}
