#include "logs/amqp_sink.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include "amqp/connection.hpp"
#include "amqp/topology.hpp"
#include "core/backoff.hpp"

namespace beds::logs {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// An event as it waits for the publisher: encoded by the thread that emitted it, so the event's
// many small allocations are freed where they were made (glibc's arenas make a free on another
// thread cost a lock) and the buffer holds one string per event.
struct Line {
  std::string routing_key;
  std::string body;
  bool persistent = false;  // audit and IPL records must survive a broker restart
};

Line Encode(const LogEvent& e) {
  return Line{RoutingKey(e), EncodeEvent(e), e.kind == "audit" || e.kind == "ipl"};
}

// The event id in an encoded event (event ids hold no characters JSON escapes).
std::string EventIdOf(std::string_view body) {
  constexpr std::string_view kField = "\"event_id\":\"";
  const size_t at = body.find(kField);
  if (at == std::string_view::npos) return "";
  const size_t from = at + kField.size();
  const size_t to = body.find('"', from);
  return to == std::string_view::npos ? "" : std::string(body.substr(from, to - from));
}

// Log lines and metrics are cheaper transient messages (a broker restart may lose the ones not
// yet stored).
amqp::Publication Lone(const Line& line) {
  amqp::Publication out;
  out.exchange = amqp::kLogsExchange;
  out.message.message_id = EventIdOf(line.body);
  out.routing_key = line.routing_key;
  out.message.body = line.body;
  out.message.delivery_mode = line.persistent ? 2 : 1;
  return out;
}

// Events bound for one routing key travel together: a message per key per batch, its body one
// event per line (application/x-ndjson), so a busy node publishes a few messages a second rather
// than one per event. A lone event stays a plain application/json message (docs/protocol.md's
// form).
constexpr size_t kMaxPackedBytes = 512 * 1024;

// Copies the bodies: a batch whose publish fails is kept as it was, to be sent again.
std::vector<amqp::Publication> Pack(const std::vector<Line>& events) {
  std::vector<amqp::Publication> out;
  std::map<std::string, std::vector<size_t>> by_key;  // routing key → events, in order
  std::vector<std::string> keys;                      // first-seen order
  for (size_t i = 0; i < events.size(); ++i) {
    auto [it, added] = by_key.try_emplace(events[i].routing_key);
    if (added) keys.push_back(events[i].routing_key);
    it->second.push_back(i);
  }
  for (const auto& key : keys) {
    const auto& members = by_key[key];
    size_t i = 0;
    while (i < members.size()) {
      const Line& first = events[members[i]];
      if (i + 1 == members.size() ||
          first.body.size() + events[members[i + 1]].body.size() > kMaxPackedBytes) {
        out.push_back(Lone(first));
        ++i;
        continue;
      }
      amqp::Publication packed;
      packed.exchange = amqp::kLogsExchange;
      packed.routing_key = key;
      packed.message.content_type = std::string(kBatchContentType);
      packed.message.delivery_mode = 1;
      int64_t n = 0;
      while (i < members.size() &&
             (n == 0 ||
              packed.message.body.size() + events[members[i]].body.size() + 1 <= kMaxPackedBytes)) {
        const Line& e = events[members[i]];
        if (n++ > 0) packed.message.body += '\n';
        packed.message.body += e.body;
        if (e.persistent) packed.message.delivery_mode = 2;
        ++i;
      }
      packed.message.headers[std::string(kBatchCountHeader)] = n;
      out.push_back(std::move(packed));
    }
  }
  return out;
}

// How soon events that no queue took are offered again, doubling up to the last.
constexpr std::chrono::milliseconds kFirstUnroutedRetry{500};
constexpr std::chrono::milliseconds kLastUnroutedRetry{8000};

Result<std::unique_ptr<amqp::Channel>> OpenLogChannel(const config::AmqpSettings& settings) {
  auto c = amqp::Connection::Open(settings);
  if (!c) return std::unexpected(c.error());
  // Only its own exchange: beds.events is the node's IPL to declare, with its queues.
  if (auto r = (*c)->DeclareExchange(amqp::kLogsExchange, "topic"); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = (*c)->EnableConfirms(); !r) return std::unexpected(r.error());
  return std::unique_ptr<amqp::Channel>(std::move(*c));
}

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(n);
}

}  // namespace

struct AmqpSink::Impl {
  AmqpSinkSettings settings;
  std::string replay_path;  // the spill file being replayed, renamed so new spills go elsewhere

  mutable std::mutex mutex;  // guards buffer and the stop deadline
  std::condition_variable_any wake;
  std::deque<Line> buffer;
  std::chrono::steady_clock::time_point stop_deadline{};

  std::mutex spill_mutex;  // guards the spill file
  std::FILE* spill = nullptr;
  std::atomic<int64_t> spill_bytes{0};  // spill file + replay file
  int64_t replay_offset = 0;    // publisher thread only: lines of the replay file already confirmed
  int64_t replay_released = 0;  // publisher thread only: their bytes, no longer in spill_bytes
  // Publisher thread only: a batch whose publish failed before its confirm. The broker may or
  // may not have it, so it is published again on the next connection (the store dedupes) and
  // never counted as dropped: the drop counter counts only events the broker never saw.
  std::vector<Line> unconfirmed;

  std::atomic<uint64_t> emitted{0}, published{0}, unrouted{0}, spilled{0}, replayed{0}, dropped{0},
      reconnects{0};
  // Publisher thread only: after events came back unrouted, the spill file is offered again no
  // sooner than this (with backoff), not on every turn of the loop.
  std::chrono::steady_clock::time_point next_replay{};
  Backoff unrouted_backoff{kFirstUnroutedRetry, kLastUnroutedRetry};
  std::atomic<bool> connected{false};
  std::unique_ptr<amqp::Channel> connection;  // publisher thread only
  std::jthread thread;

  ~Impl() {
    if (spill) std::fclose(spill);
  }

  // Appends encoded events to the spill file; what does not fit is dropped (and counted).
  template <typename Lines>
  void SpillLines(Lines& events) {
    std::lock_guard lock(spill_mutex);
    for (const Line& e : events) {
      const int64_t line = static_cast<int64_t>(e.routing_key.size() + e.body.size() + 2);
      if (settings.spill_path.empty() || spill_bytes.load() + line > settings.spill_max_bytes) {
        dropped.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (!spill) {
        std::error_code ec;
        fs::create_directories(fs::path(settings.spill_path).parent_path(), ec);
        spill = std::fopen(settings.spill_path.c_str(), "ab");
        if (!spill) {
          dropped.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
      }
      std::fwrite(e.routing_key.data(), 1, e.routing_key.size(), spill);
      std::fputc('\t', spill);
      std::fwrite(e.body.data(), 1, e.body.size(), spill);
      std::fputc('\n', spill);
      spill_bytes.fetch_add(line);
      spilled.fetch_add(1, std::memory_order_relaxed);
    }
    if (spill) std::fflush(spill);
    events.clear();
  }

  Result<void> Connect() {
    auto c = settings.open ? settings.open() : OpenLogChannel(settings.amqp);
    if (!c) return std::unexpected(c.error());
    connection = std::move(*c);
    connected = true;
    return Ok();
  }

  void Disconnect() {
    connection.reset();
    connected = false;
  }

  // Publishes `lines`, mandatory and confirmed; returns how many a queue took. Lines the broker
  // hands back (no queue bound to their key) are not published: log and audit lines wait in the
  // spill file for the admin node's queue, metric figures are only counted.
  // With `keep_returned` false (a replay's probe), what came back is left where it was.
  Result<size_t> PublishLines(const std::vector<Line>& lines, bool keep_returned = true) {
    std::vector<std::string> returned;
    std::vector<amqp::Publication> packed = Pack(lines);
    // Signed with our login, which RabbitMQ checks: the admin node stores events only from the
    // node users it knows ([access] node_users), so a client cannot forge an audit record.
    for (auto& p : packed) p.message.user_id = settings.amqp.user;
    if (auto r = connection->PublishMany(packed, &returned); !r) {
      return std::unexpected(r.error());
    }
    if (returned.empty()) return lines.size();
    std::vector<Line> keep;
    size_t routed = 0;
    for (const Line& line : lines) {
      if (std::find(returned.begin(), returned.end(), line.routing_key) == returned.end()) {
        ++routed;
      } else if (!line.routing_key.starts_with("metric.")) {
        keep.push_back(line);
      }
    }
    if (!keep_returned && routed == 0 && !keep.empty()) {
      DeferReplay();  // a probe: these were counted as unrouted when they first came back
      return routed;
    }
    unrouted.fetch_add(lines.size() - routed, std::memory_order_relaxed);
    if (!keep.empty()) {
      if (unrouted_backoff.Peek() == kFirstUnroutedRetry) {
        spdlog::warn(
            "log sink: no queue takes {} (has an admin node started on this vhost?); "
            "keeping such events in the spill file until one does",
            keep.front().routing_key);
      }
      SpillLines(keep);
      DeferReplay();
    }
    return routed;
  }

  // Once per interval: every batch a busy node publishes meanwhile comes back too, and must not
  // push the next try further away.
  void DeferReplay() {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_replay) return;
    next_replay = now + unrouted_backoff.Next();
  }

  // Publishes the spill file, oldest first. False when the connection failed (it is dropped).
  bool Replay() {
    if (spill_bytes.load() == 0) return true;
    if (std::chrono::steady_clock::now() < next_replay) return true;  // waiting for a consumer
    if (replay_path.empty()) replay_path = settings.spill_path + ".replay";
    {
      std::lock_guard lock(spill_mutex);
      if (!fs::exists(replay_path)) {
        if (spill) {
          std::fclose(spill);
          spill = nullptr;
        }
        std::error_code ec;
        fs::rename(settings.spill_path, replay_path, ec);
        if (ec) return true;  // nothing there after all
        replay_offset = 0;
        replay_released = 0;
      }
    }
    std::ifstream in(replay_path, std::ios::binary);
    std::string line;
    int64_t line_no = 0;
    std::vector<Line> batch;
    // What the lines in `batch` occupy in the file: released from spill_bytes once published, so
    // lines that come back again and are spilled anew are not charged twice against the cap.
    int64_t batch_bytes = 0;
    const auto before = next_replay;
    bool probe = true;  // the first batch tells whether anything takes the kept events yet
    bool waiting = false;
    auto flush = [&]() -> bool {
      if (batch.empty()) return true;
      auto routed = PublishLines(batch, !probe);
      if (!routed) {
        spdlog::warn("log sink: replaying the spill file: {}", routed.error().message);
        Disconnect();
        return false;
      }
      if (probe && *routed == 0 && next_replay != before) {
        // Still no queue for them: they stay in the replay file, offered again after backoff,
        // rather than being read and written back whole every time.
        waiting = true;
        batch.clear();
        return false;
      }
      probe = false;
      replay_offset = line_no;
      spill_bytes.fetch_sub(batch_bytes);
      replay_released += batch_bytes;
      batch_bytes = 0;
      replayed.fetch_add(*routed, std::memory_order_relaxed);
      published.fetch_add(*routed, std::memory_order_relaxed);
      batch.clear();
      return true;
    };
    while (std::getline(in, line)) {
      if (line_no++ < replay_offset) continue;
      batch_bytes += static_cast<int64_t>(line.size()) + 1;
      const size_t tab = line.find('\t');
      if (tab == std::string::npos) continue;  // a torn last line from a crash
      // Audit and IPL records are persistent (an IPL record's key is log.info…: its kind says).
      const bool persistent = line.compare(0, 6, "audit.") == 0 ||
                              line.find("\"kind\":\"ipl\"", tab) != std::string::npos;
      batch.push_back(Line{line.substr(0, tab), line.substr(tab + 1), persistent});
      if (batch.size() >= settings.batch_events && !flush()) return waiting;
    }
    if (!flush()) return waiting;
    const int64_t size = FileSize(replay_path);
    std::error_code ec;
    fs::remove(replay_path, ec);
    spill_bytes.fetch_sub(size - replay_released);
    replay_offset = 0;
    replay_released = 0;
    if (next_replay == before && unrouted_backoff.Peek() != kFirstUnroutedRetry) {
      spdlog::info("log sink: a queue takes the kept events now; the spill file is replayed");
      unrouted_backoff.Reset();  // everything was taken
    }
    return true;
  }

  // A batch worth publishing without lingering: full, or half the buffer (a small buffer must
  // not fill, and spill, only because the publisher lingers).
  size_t FullBatch() const {
    return std::max<size_t>(1, std::min(settings.batch_events, settings.buffer_events / 2));
  }

  void Run(std::stop_token stop) {
    MuteEventsOnThisThread();
    Backoff backoff(100ms, 5s);
    bool ever_connected = false;
    int failures = 0;
    while (true) {
      const bool stopping = stop.stop_requested();
      if (!connection) {
        if (stopping) break;
        if (auto r = Connect(); !r) {
          if (failures++ % 10 == 0) {
            spdlog::warn("log sink: {} (spilling; retrying in {} ms)", r.error().message,
                         backoff.Peek().count());
          }
          std::deque<Line> pending;
          {
            std::lock_guard lock(mutex);
            pending.swap(buffer);
          }
          SpillLines(pending);
          std::unique_lock lock(mutex);
          wake.wait_for(lock, stop, backoff.Next(), [] { return false; });
          continue;
        }
        if (ever_connected) reconnects.fetch_add(1, std::memory_order_relaxed);
        if (failures > 0) spdlog::info("log sink: connected again");
        ever_connected = true;
        failures = 0;
        backoff.Reset();
      }
      if (!Replay()) continue;
      if (!unconfirmed.empty()) {
        auto routed = PublishLines(unconfirmed);
        if (!routed) {
          Disconnect();
          continue;
        }
        published.fetch_add(*routed, std::memory_order_relaxed);
        unconfirmed.clear();
      }
      std::vector<Line> taken;
      {
        std::unique_lock lock(mutex);
        if (buffer.empty()) {
          if (stopping) break;
          wake.wait_for(lock, stop, 100ms, [&] { return !buffer.empty(); });
        }
        // Linger for company: Emit() wakes this thread early once the batch is full.
        if (!buffer.empty() && !stopping && buffer.size() < FullBatch()) {
          wake.wait_for(lock, stop, settings.flush_interval,
                        [&] { return buffer.size() >= FullBatch(); });
        }
        if (stopping && std::chrono::steady_clock::now() > stop_deadline) break;
        const size_t n = std::min(buffer.size(), settings.batch_events);
        taken.reserve(n);
        for (size_t i = 0; i < n; ++i) {
          taken.push_back(std::move(buffer.front()));
          buffer.pop_front();
        }
      }
      if (taken.empty()) continue;
      auto routed = PublishLines(taken);
      if (!routed) {
        spdlog::warn("log sink: publishing: {} (spilling until the broker is back)",
                     routed.error().message);
        Disconnect();
        unconfirmed = std::move(taken);
        continue;
      }
      published.fetch_add(*routed, std::memory_order_relaxed);
    }
    // Whatever is left (no broker, or the grace ran out) waits in the spill file.
    SpillLines(unconfirmed);
    std::deque<Line> rest;
    {
      std::lock_guard lock(mutex);
      rest.swap(buffer);
    }
    SpillLines(rest);
    Disconnect();
  }
};

AmqpSink::AmqpSink(AmqpSinkSettings settings) : impl_(std::make_unique<Impl>()) {
  impl_->settings = std::move(settings);
  if (!impl_->settings.spill_path.empty()) {
    // A previous run's spill (and an interrupted replay) are replayed once the broker is there.
    impl_->spill_bytes =
        FileSize(impl_->settings.spill_path) + FileSize(impl_->settings.spill_path + ".replay");
  }
  impl_->thread = std::jthread([impl = impl_.get()](std::stop_token stop) { impl->Run(stop); });
}

AmqpSink::~AmqpSink() { Stop(); }

void AmqpSink::Emit(LogEvent event) {
  Impl& s = *impl_;
  s.emitted.fetch_add(1, std::memory_order_relaxed);
  Line line = Encode(event);
  bool wake = false;
  bool pushed = false;
  {
    std::lock_guard lock(s.mutex);
    if (s.buffer.size() < s.settings.buffer_events) {
      s.buffer.push_back(std::move(line));
      // The publisher waits for a first event, then for a full batch: only those wake it.
      wake = s.buffer.size() == 1 || s.buffer.size() == s.FullBatch();
      pushed = true;
    }
  }
  if (pushed) {
    if (wake) s.wake.notify_one();
    return;
  }
  // The buffer is full: the publisher is behind or the broker is away. Spilling is a local
  // append, the one bit of I/O a request may do here.
  std::vector<Line> one;
  one.push_back(std::move(line));
  s.SpillLines(one);
}

void AmqpSink::Stop(std::chrono::milliseconds grace) {
  if (!impl_->thread.joinable()) return;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stop_deadline = std::chrono::steady_clock::now() + grace;
  }
  impl_->thread.request_stop();
  impl_->thread.join();
}

SinkStats AmqpSink::Stats() const {
  const Impl& s = *impl_;
  SinkStats out;
  out.emitted = s.emitted.load();
  out.published = s.published.load();
  out.unrouted = s.unrouted.load();
  out.spilled = s.spilled.load();
  out.replayed = s.replayed.load();
  out.dropped = s.dropped.load();
  out.reconnects = s.reconnects.load();
  {
    std::lock_guard lock(s.mutex);
    out.buffered = s.buffer.size();
  }
  out.spill_bytes = s.spill_bytes.load();
  out.connected = s.connected.load();
  return out;
}

}  // namespace beds::logs
