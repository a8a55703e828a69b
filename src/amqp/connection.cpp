#include "amqp/connection.hpp"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace beds::amqp {
namespace {

constexpr amqp_channel_t kChannel = 1;

amqp_bytes_t Bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

std::string ToString(amqp_bytes_t b) {
  return std::string(static_cast<const char*>(b.bytes), b.len);
}

std::unexpected<Error> Unavailable(std::string message) {
  return Fail(Code::kUnavailable, std::move(message));
}

// Keeps the entries of an AMQP field table alive for the duration of one call.
class TableView {
 public:
  explicit TableView(const Headers& headers) {
    entries_.reserve(headers.size());
    for (const auto& [key, value] : headers) {
      amqp_table_entry_t entry{};
      entry.key = Bytes(key);
      if (const auto* s = std::get_if<std::string>(&value)) {
        entry.value.kind = AMQP_FIELD_KIND_UTF8;
        entry.value.value.bytes = Bytes(*s);
      } else {
        entry.value.kind = AMQP_FIELD_KIND_I64;
        entry.value.value.i64 = std::get<int64_t>(value);
      }
      entries_.push_back(entry);
    }
  }
  amqp_table_t table() {
    return amqp_table_t{static_cast<int>(entries_.size()),
                        entries_.empty() ? nullptr : entries_.data()};
  }

 private:
  std::vector<amqp_table_entry_t> entries_;
};

Headers FromTable(const amqp_table_t& table) {
  Headers headers;
  for (int i = 0; i < table.num_entries; ++i) {
    const amqp_table_entry_t& e = table.entries[i];
    const std::string key = ToString(e.key);
    switch (e.value.kind) {
      case AMQP_FIELD_KIND_UTF8:
      case AMQP_FIELD_KIND_BYTES:
        headers[key] = ToString(e.value.value.bytes);
        break;
      case AMQP_FIELD_KIND_I8:
        headers[key] = int64_t{e.value.value.i8};
        break;
      case AMQP_FIELD_KIND_U8:
        headers[key] = int64_t{e.value.value.u8};
        break;
      case AMQP_FIELD_KIND_I16:
        headers[key] = int64_t{e.value.value.i16};
        break;
      case AMQP_FIELD_KIND_U16:
        headers[key] = int64_t{e.value.value.u16};
        break;
      case AMQP_FIELD_KIND_I32:
        headers[key] = int64_t{e.value.value.i32};
        break;
      case AMQP_FIELD_KIND_U32:
        headers[key] = int64_t{e.value.value.u32};
        break;
      case AMQP_FIELD_KIND_I64:
        headers[key] = e.value.value.i64;
        break;
      case AMQP_FIELD_KIND_U64:
        headers[key] = static_cast<int64_t>(e.value.value.u64);
        break;
      default:
        break;  // arrays and tables (x-death) are not needed by BEDS
    }
  }
  return headers;
}

Message FromProperties(const amqp_basic_properties_t& p, amqp_bytes_t body) {
  Message m;
  m.body = ToString(body);
  m.content_type = (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) ? ToString(p.content_type) : "";
  if (p._flags & AMQP_BASIC_CORRELATION_ID_FLAG) m.correlation_id = ToString(p.correlation_id);
  if (p._flags & AMQP_BASIC_REPLY_TO_FLAG) m.reply_to = ToString(p.reply_to);
  if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) m.message_id = ToString(p.message_id);
  if (p._flags & AMQP_BASIC_USER_ID_FLAG) m.user_id = ToString(p.user_id);
  if (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) m.delivery_mode = p.delivery_mode;
  if (p._flags & AMQP_BASIC_EXPIRATION_FLAG) m.expiration = ToString(p.expiration);
  if (p._flags & AMQP_BASIC_HEADERS_FLAG) m.headers = FromTable(p.headers);
  return m;
}

std::string ReplyText(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "missing RPC reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return "connection closed by broker: " + std::to_string(m->reply_code) + " " +
               ToString(m->reply_text);
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return "channel closed by broker: " + std::to_string(m->reply_code) + " " +
               ToString(m->reply_text);
      }
      return "unexpected broker method " + std::to_string(r.reply.id);
  }
  return "unknown reply";
}

timeval ToTimeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

// AMQP frames (0-9-1, section 4.2.3): type, channel, payload size, payload, frame end.
constexpr size_t kFrameOverhead = 8;

void PutBigEndian(char* at, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) at[i] = static_cast<char>((v >> (8 * (bytes - 1 - i))) & 0xff);
}

void AppendFrame(std::string& out, uint8_t type, const char* payload, size_t n) {
  char head[7];
  head[0] = static_cast<char>(type);
  PutBigEndian(head + 1, kChannel, 2);
  PutBigEndian(head + 3, n, 4);
  out.append(head, sizeof head);
  out.append(payload, n);
  out.push_back(static_cast<char>(AMQP_FRAME_END));
}

}  // namespace

std::string LibraryVersion() { return amqp_version(); }

struct Connection::Impl {
  amqp_connection_state_t conn = nullptr;
  bool broken = false;  // after any error: skip the polite close
  bool channel_open = false;
  bool confirms = false;
  // Set by the first PublishReturnable(): only then does Next() hand returned messages to the
  // caller. Other connections (workers, the control loop) never see one.
  bool surfaces_returns = false;
  uint64_t next_publish_seq = 1;  // confirm mode: the sequence number of the next publish
  bool tls = false;
  // Coalesce(true) on a plain TCP connection: publishes and acks are encoded here (by
  // rabbitmq-c's own encoders) and leave in one send at Coalesce(false), where rabbitmq-c would
  // make a send per frame, three for a publish.
  bool coalescing = false;
  std::string out;
  std::string scratch;  // one frame's payload while it is encoded

  // A buffer for one frame's payload, made once: resizing it per frame would clear it each time.
  char* Scratch(size_t& size) {
    size = static_cast<size_t>(std::max(4096, amqp_get_frame_max(conn))) - kFrameOverhead;
    if (scratch.size() < size) scratch.resize(size);
    return scratch.data();
  }

  // Encodes a method frame into `out`.
  Result<void> AppendMethod(amqp_method_number_t id, void* decoded) {
    size_t size = 0;
    char* payload = Scratch(size);
    PutBigEndian(payload, id, 4);
    const int n = amqp_encode_method(id, decoded, {size - 4, payload + 4});
    if (n < 0) return Unavailable(std::string("encoding a frame: ") + amqp_error_string2(n));
    AppendFrame(out, AMQP_FRAME_METHOD, payload, static_cast<size_t>(n) + 4);
    return Ok();
  }

  // Encodes a message's header and body frames into `out`.
  Result<void> AppendContent(amqp_basic_properties_t* properties, const std::string& body) {
    size_t size = 0;
    char* payload = Scratch(size);
    PutBigEndian(payload, AMQP_BASIC_CLASS, 2);
    PutBigEndian(payload + 2, 0, 2);  // weight
    PutBigEndian(payload + 4, body.size(), 8);
    constexpr size_t kHead = 12;
    const int n =
        amqp_encode_properties(AMQP_BASIC_CLASS, properties, {size - kHead, payload + kHead});
    if (n < 0) return Unavailable(std::string("encoding a frame: ") + amqp_error_string2(n));
    AppendFrame(out, AMQP_FRAME_HEADER, payload, kHead + static_cast<size_t>(n));
    for (size_t at = 0; at < body.size(); at += size) {
      AppendFrame(out, AMQP_FRAME_BODY, body.data() + at, std::min(body.size() - at, size));
    }
    return Ok();
  }

  // Sends what Coalesce held, whole; waits as rabbitmq-c's own sends do while the socket is full.
  Result<void> SendPending() {
    size_t at = 0;
    const int fd = amqp_get_sockfd(conn);
    while (at < out.size()) {
      const ssize_t n = ::send(fd, out.data() + at, out.size() - at, MSG_NOSIGNAL);
      if (n > 0) {
        at += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        // A broker that stops reading is given up on as rabbitmq-c would (two heartbeats), or
        // after a minute without heartbeats: the caller holds the pool's connection meanwhile.
        const int heartbeat_s = amqp_get_heartbeat(conn);
        const int wait_ms = heartbeat_s > 0 ? 2000 * heartbeat_s : 60'000;
        pollfd p{fd, POLLOUT, 0};
        const int ready = ::poll(&p, 1, wait_ms);
        if (ready > 0 || (ready < 0 && errno == EINTR)) continue;
        if (ready == 0) {
          out.clear();
          broken = true;
          return Unavailable("sending to broker: it has not read for " +
                             std::to_string(wait_ms / 1000) + " s");
        }
      }
      const int error = errno;
      out.clear();
      broken = true;
      return Unavailable(std::string("sending to broker: ") + std::strerror(error));
    }
    out.clear();
    return Ok();
  }

  ~Impl() {
    if (!conn) return;
    if (!broken) {
      const timeval quick{1, 0};
      amqp_set_rpc_timeout(conn, &quick);
      if (channel_open) amqp_channel_close(conn, kChannel, AMQP_REPLY_SUCCESS);
      amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(conn);
  }

  // Checks the last RPC; marks the connection broken on failure.
  Result<void> Check(const char* what) {
    const amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return Ok();
    broken = true;
    return Unavailable(std::string(what) + ": " + ReplyText(r));
  }

  Result<void> CheckStatus(int status, const char* what) {
    if (status == AMQP_STATUS_OK) return Ok();
    broken = true;
    return Unavailable(std::string(what) + ": " + amqp_error_string2(status));
  }

  // Confirm mode: waits for the broker's ack of everything published since `first` (the sequence
  // number of the batch's first publish). Confirmed publishes are mandatory, so a message no
  // queue took comes back as basic.return before its ack: that is a failure too (a confirm alone
  // would say "handled", not "stored"). The broker may ack out of order (a message for a queue
  // that syncs to disk after one that needs nothing), so each sequence number is ticked off.
  Result<void> WaitConfirm(uint64_t first, std::vector<std::string>* unroutable = nullptr) {
    const uint64_t last = next_publish_seq - 1;
    if (last < first) return Ok();
    std::vector<bool> acked(last - first + 1, false);
    size_t missing = acked.size();
    auto tick = [&](uint64_t from, uint64_t to) {
      for (uint64_t seq = std::max(from, first); seq <= std::min(to, last); ++seq) {
        if (!acked[seq - first]) {
          acked[seq - first] = true;
          --missing;
        }
      }
    };
    bool returned = false;
    while (true) {
      amqp_maybe_release_buffers(conn);
      amqp_frame_t frame;
      timeval tv{10, 0};
      const int status = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
      if (status == AMQP_STATUS_TIMEOUT) {
        broken = true;
        return Unavailable("no publisher confirm from the broker within 10 s");
      }
      if (status != AMQP_STATUS_OK) return CheckStatus(status, "waiting for publisher confirm");
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
          const auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          tick(ack->multiple ? first : ack->delivery_tag, ack->delivery_tag);
          if (missing > 0) break;
          if (returned && !unroutable)
            return Fail(Code::kUnavailable, "no queue is bound to take the message");
          return Ok();
        }
        case AMQP_BASIC_RETURN_METHOD: {
          const auto* ret = static_cast<amqp_basic_return_t*>(frame.payload.method.decoded);
          if (unroutable) unroutable->push_back(ToString(ret->routing_key));
          amqp_message_t message;
          const amqp_rpc_reply_t r = amqp_read_message(conn, frame.channel, &message, 0);
          if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            broken = true;
            return Unavailable("reading a returned message: " + ReplyText(r));
          }
          amqp_destroy_message(&message);
          returned = true;
          break;
        }
        case AMQP_BASIC_NACK_METHOD:
          return Fail(Code::kUnavailable, "the broker refused a published message (nack)");
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
          broken = true;
          return Unavailable("broker closed the channel while confirming a publish");
        default:
          break;
      }
    }
  }
};

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::~Connection() = default;

Result<std::unique_ptr<Connection>> Connection::Open(const config::AmqpSettings& s) {
  auto impl = std::make_unique<Impl>();
  impl->conn = amqp_new_connection();
  if (!impl->conn) return Unavailable("out of memory creating an AMQP connection");
  const std::string where = s.host + ":" + std::to_string(s.port);
  amqp_socket_t* socket = nullptr;
  impl->tls = s.tls;
  if (s.tls) {
    socket = amqp_ssl_socket_new(impl->conn);
    if (socket) {
      amqp_ssl_socket_set_verify_peer(socket, s.tls_verify ? 1 : 0);
      amqp_ssl_socket_set_verify_hostname(socket, s.tls_verify ? 1 : 0);
      if (!s.tls_ca_file.empty() &&
          amqp_ssl_socket_set_cacert(socket, s.tls_ca_file.c_str()) != 0) {
        impl->broken = true;
        return Unavailable("cannot read TLS CA file " + s.tls_ca_file);
      }
    }
  } else {
    socket = amqp_tcp_socket_new(impl->conn);
  }
  if (!socket) {
    impl->broken = true;
    return Unavailable("cannot create a socket for AMQP");
  }
  timeval connect_timeout = ToTimeval(std::chrono::milliseconds(s.connect_timeout_ms));
  const int status = amqp_socket_open_noblock(socket, s.host.c_str(), s.port, &connect_timeout);
  if (status != AMQP_STATUS_OK) {
    impl->broken = true;
    return Unavailable("cannot connect to AMQP broker at " + where + ": " +
                       amqp_error_string2(status));
  }
  // Requests are small and latency-bound: never wait to coalesce them.
  const int one = 1;
  setsockopt(amqp_get_sockfd(impl->conn), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const timeval rpc_timeout{10, 0};
  amqp_set_rpc_timeout(impl->conn, &rpc_timeout);
  const amqp_rpc_reply_t login = amqp_login(impl->conn, s.vhost.c_str(), 0, 131072, s.heartbeat_s,
                                            AMQP_SASL_METHOD_PLAIN, s.user.c_str(), s.pass.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    impl->broken = true;
    return Unavailable("AMQP login to " + where + " vhost '" + s.vhost + "' as '" + s.user +
                       "' failed: " + ReplyText(login));
  }
  amqp_channel_open(impl->conn, kChannel);
  if (auto r = impl->Check("opening AMQP channel"); !r) return std::unexpected(r.error());
  impl->channel_open = true;
  return std::unique_ptr<Connection>(new Connection(std::move(impl)));
}

Result<void> Connection::DeclareExchange(const std::string& name, const std::string& type) {
  amqp_exchange_declare(impl_->conn, kChannel, Bytes(name), Bytes(type), 0, 1, 0, 0,
                        amqp_empty_table);
  return impl_->Check(("declaring exchange " + name).c_str());
}

Result<std::string> Connection::DeclareQueue(const std::string& name, const QueueOptions& o) {
  TableView args(o.arguments);
  amqp_queue_declare_ok_t* ok = amqp_queue_declare(impl_->conn, kChannel, Bytes(name), 0, o.durable,
                                                   o.exclusive, o.auto_delete, args.table());
  if (auto r = impl_->Check(("declaring queue " + name).c_str()); !r) {
    return std::unexpected(r.error());
  }
  return ToString(ok->queue);
}

Result<void> Connection::DeleteQueue(const std::string& name) {
  amqp_queue_delete(impl_->conn, kChannel, Bytes(name), 0, 0);
  return impl_->Check(("deleting queue " + name).c_str());
}

Result<void> Connection::BindQueue(const std::string& queue, const std::string& exchange,
                                   const std::string& key) {
  amqp_queue_bind(impl_->conn, kChannel, Bytes(queue), Bytes(exchange), Bytes(key),
                  amqp_empty_table);
  return impl_->Check(("binding " + queue + " to " + exchange + " with " + key).c_str());
}

Result<void> Connection::Qos(uint16_t prefetch) {
  amqp_basic_qos(impl_->conn, kChannel, 0, prefetch, 0);
  return impl_->Check("setting prefetch");
}

Result<std::string> Connection::Consume(const std::string& queue, bool no_ack) {
  amqp_basic_consume_ok_t* ok = amqp_basic_consume(
      impl_->conn, kChannel, Bytes(queue), amqp_empty_bytes, 0, no_ack, 0, amqp_empty_table);
  if (auto r = impl_->Check(("consuming from " + queue).c_str()); !r) {
    return std::unexpected(r.error());
  }
  return ToString(ok->consumer_tag);
}

Result<void> Connection::Cancel(const std::string& consumer_tag) {
  if (auto r = impl_->SendPending(); !r) return r;
  amqp_basic_cancel(impl_->conn, kChannel, Bytes(consumer_tag));
  return impl_->Check("cancelling consumer");
}

Result<void> Connection::EnableConfirms() {
  amqp_confirm_select(impl_->conn, kChannel);
  if (auto r = impl_->Check("enabling publisher confirms"); !r) return r;
  impl_->confirms = true;
  return Ok();
}

Result<void> Connection::Publish(const std::string& exchange, const std::string& routing_key,
                                 const Message& m) {
  const uint64_t first = impl_->next_publish_seq;
  if (auto r = PublishOne(exchange, routing_key, m, impl_->confirms); !r) return r;
  if (!impl_->confirms) return Ok();
  return impl_->WaitConfirm(first);
}

Result<void> Connection::PublishMany(const std::vector<Publication>& batch,
                                     std::vector<std::string>* unroutable) {
  const uint64_t first = impl_->next_publish_seq;
  for (const Publication& p : batch) {
    if (auto r = PublishOne(p.exchange, p.routing_key, p.message, p.mandatory); !r) return r;
  }
  if (!impl_->confirms) return Ok();
  return impl_->WaitConfirm(first, unroutable);
}

Result<void> Connection::PublishReturnable(const std::string& exchange,
                                           const std::string& routing_key, const Message& m) {
  impl_->surfaces_returns = true;
  const uint64_t first = impl_->next_publish_seq;
  if (auto r = PublishOne(exchange, routing_key, m, true); !r) return r;
  if (!impl_->confirms) return Ok();
  return impl_->WaitConfirm(first);
}

Result<void> Connection::PublishOne(const std::string& exchange, const std::string& routing_key,
                                    const Message& m, bool mandatory_flag) {
  amqp_basic_properties_t p{};
  TableView headers(m.headers);
  if (!m.content_type.empty()) {
    p._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    p.content_type = Bytes(m.content_type);
  }
  if (!m.correlation_id.empty()) {
    p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    p.correlation_id = Bytes(m.correlation_id);
  }
  if (!m.reply_to.empty()) {
    p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
    p.reply_to = Bytes(m.reply_to);
  }
  if (!m.message_id.empty()) {
    p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    p.message_id = Bytes(m.message_id);
  }
  if (!m.user_id.empty()) {
    p._flags |= AMQP_BASIC_USER_ID_FLAG;
    p.user_id = Bytes(m.user_id);
  }
  if (m.delivery_mode != 0) {
    p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = m.delivery_mode;
  }
  if (!m.expiration.empty()) {
    p._flags |= AMQP_BASIC_EXPIRATION_FLAG;
    p.expiration = Bytes(m.expiration);
  }
  if (!m.headers.empty()) {
    p._flags |= AMQP_BASIC_HEADERS_FLAG;
    p.headers = headers.table();
  }
  if (impl_->coalescing && !impl_->confirms) {
    amqp_basic_publish_t method{};
    method.exchange = Bytes(exchange);
    method.routing_key = Bytes(routing_key);
    method.mandatory = mandatory_flag ? 1 : 0;
    // All of the message's frames or none: a lone method frame would make the broker close the
    // connection.
    const size_t before = impl_->out.size();
    Result<void> r = impl_->AppendMethod(AMQP_BASIC_PUBLISH_METHOD, &method);
    if (r) r = impl_->AppendContent(&p, m.body);
    if (!r) impl_->out.resize(before);
    return r;
  }
  if (auto r = impl_->SendPending(); !r) return r;
  const int status = amqp_basic_publish(impl_->conn, kChannel, Bytes(exchange), Bytes(routing_key),
                                        mandatory_flag ? 1 : 0, 0, &p, Bytes(m.body));
  if (auto r = impl_->CheckStatus(status, "publishing"); !r) return r;
  if (impl_->confirms) ++impl_->next_publish_seq;
  return Ok();
}

Result<std::optional<Delivery>> Connection::Next(std::chrono::milliseconds timeout) {
  if (auto r = impl_->SendPending(); !r) return std::unexpected(r.error());
  amqp_maybe_release_buffers(impl_->conn);
  amqp_envelope_t envelope;
  timeval tv = ToTimeval(timeout);
  const amqp_rpc_reply_t r = amqp_consume_message(impl_->conn, &envelope, &tv, 0);
  if (r.reply_type == AMQP_RESPONSE_NORMAL) {
    Delivery d;
    d.message = FromProperties(envelope.message.properties, envelope.message.body);
    d.exchange = ToString(envelope.exchange);
    d.routing_key = ToString(envelope.routing_key);
    d.delivery_tag = envelope.delivery_tag;
    d.redelivered = envelope.redelivered != 0;
    amqp_destroy_envelope(&envelope);
    return d;
  }
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) {
    return std::nullopt;
  }
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
      r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
    // A frame that is not a delivery: read it and decide.
    amqp_frame_t frame;
    const int status = amqp_simple_wait_frame(impl_->conn, &frame);
    if (status != AMQP_STATUS_OK) {
      impl_->broken = true;
      return Unavailable(std::string("reading from broker: ") + amqp_error_string2(status));
    }
    if (frame.frame_type == AMQP_FRAME_METHOD) {
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD:
          return std::nullopt;
        case AMQP_BASIC_RETURN_METHOD: {
          const auto* ret = static_cast<amqp_basic_return_t*>(frame.payload.method.decoded);
          Delivery d;
          d.returned = true;
          d.exchange = ToString(ret->exchange);
          d.routing_key = ToString(ret->routing_key);
          d.return_reason = ToString(ret->reply_text);
          amqp_message_t returned;
          const amqp_rpc_reply_t r = amqp_read_message(impl_->conn, frame.channel, &returned, 0);
          if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            impl_->broken = true;
            return Unavailable("reading a returned message: " + ReplyText(r));
          }
          d.message = FromProperties(returned.properties, returned.body);
          amqp_destroy_message(&returned);
          if (!impl_->surfaces_returns) return std::nullopt;
          return d;
        }
        case AMQP_BASIC_CANCEL_METHOD:
          impl_->broken = true;
          return Unavailable("the broker cancelled the consumer (queue deleted?)");
        case AMQP_CHANNEL_CLOSE_METHOD: {
          impl_->broken = true;
          const auto* m = static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
          return Unavailable("channel closed by broker: " + std::to_string(m->reply_code) + " " +
                             ToString(m->reply_text));
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
          impl_->broken = true;
          const auto* m = static_cast<amqp_connection_close_t*>(frame.payload.method.decoded);
          return Unavailable("connection closed by broker: " + std::to_string(m->reply_code) + " " +
                             ToString(m->reply_text));
        }
        default:
          return std::nullopt;
      }
    }
    return std::nullopt;
  }
  impl_->broken = true;
  return Unavailable("consuming: " + ReplyText(r));
}

Result<void> Connection::Ack(uint64_t delivery_tag, bool multiple) {
  if (impl_->coalescing) {
    amqp_basic_ack_t method{delivery_tag, multiple ? 1 : 0};
    return impl_->AppendMethod(AMQP_BASIC_ACK_METHOD, &method);
  }
  return impl_->CheckStatus(amqp_basic_ack(impl_->conn, kChannel, delivery_tag, multiple ? 1 : 0),
                            "acking");
}

Result<void> Connection::Coalesce(bool on) {
  if (!impl_->tls) {
    impl_->coalescing = on;
    return on ? Ok() : impl_->SendPending();
  }
  // Over TLS the frames are rabbitmq-c's to write: corked, they at least leave as few packets.
  // Best effort: a socket that refuses it just sends as before.
  const int flag = on ? 1 : 0;
  setsockopt(amqp_get_sockfd(impl_->conn), IPPROTO_TCP, TCP_CORK, &flag, sizeof(flag));
  return Ok();
}

int Connection::fd() const { return amqp_get_sockfd(impl_->conn); }

bool Connection::Buffered() const {
  return amqp_frames_enqueued(impl_->conn) || amqp_data_in_buffer(impl_->conn);
}

Result<void> Connection::Reject(uint64_t delivery_tag, bool requeue) {
  if (auto r = impl_->SendPending(); !r) return r;
  return impl_->CheckStatus(amqp_basic_reject(impl_->conn, kChannel, delivery_tag, requeue),
                            "rejecting");
}

Result<std::optional<Delivery>> Connection::Get(const std::string& queue, bool auto_ack) {
  amqp_maybe_release_buffers(impl_->conn);
  const amqp_rpc_reply_t r = amqp_basic_get(impl_->conn, kChannel, Bytes(queue), auto_ack ? 1 : 0);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    impl_->broken = true;
    return Unavailable("basic.get from " + queue + ": " + ReplyText(r));
  }
  if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return std::nullopt;
  const auto* ok = static_cast<amqp_basic_get_ok_t*>(r.reply.decoded);
  Delivery d;
  d.exchange = ToString(ok->exchange);
  d.routing_key = ToString(ok->routing_key);
  d.delivery_tag = ok->delivery_tag;
  d.redelivered = ok->redelivered != 0;
  amqp_message_t message;
  const amqp_rpc_reply_t read = amqp_read_message(impl_->conn, kChannel, &message, 0);
  if (read.reply_type != AMQP_RESPONSE_NORMAL) {
    impl_->broken = true;
    return Unavailable("reading message from " + queue + ": " + ReplyText(read));
  }
  d.message = FromProperties(message.properties, message.body);
  amqp_destroy_message(&message);
  return d;
}

Result<uint32_t> Connection::MessageCount(const std::string& queue) {
  amqp_queue_declare_ok_t* ok =
      amqp_queue_declare(impl_->conn, kChannel, Bytes(queue), 1, 0, 0, 0, amqp_empty_table);
  if (auto r = impl_->Check(("inspecting queue " + queue).c_str()); !r) {
    return std::unexpected(r.error());
  }
  return ok->message_count;
}

}  // namespace beds::amqp
