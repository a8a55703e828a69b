#include "logs/logs.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <vector>

namespace beds::logs {
namespace {

namespace json = boost::json;

thread_local Lineage current_lineage;

// %E in the pattern: the calling thread's event id, or "-" outside a request.
class EventIdFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string& id = current_lineage.event_id;
    const std::string_view text = id.empty() ? std::string_view("-") : std::string_view(id);
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EventIdFlag>();
  }
};

std::unique_ptr<spdlog::formatter> MakeFormatter(bool with_time) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<EventIdFlag>('E').set_pattern(with_time ? "%Y-%m-%dT%H:%M:%S.%fZ %l [%E] %v"
                                                              : "%l [%E] %v");
  return formatter;
}

// The sink lives behind a mutex-guarded shared_ptr; `has_sink` spares the lock when none is set.
std::mutex sink_mutex;
std::shared_ptr<EventSink> sink;  // guarded by sink_mutex
std::atomic<bool> has_sink{false};

// This process's name in events; set by Init() before any worker starts, read-only after.
// Written by Init() only, which runs at IPL before any other thread exists (the header's
// contract), so every event reads them without a lock.
std::string identity_node = "beds";
std::string identity_env = "dev";
std::atomic<int> enabled_rank{2};  // info

// Log lines as `log` events: a child of the thread's current event. Lines logged while the
// event sink itself runs (its own connection trouble) are kept out, or a broker outage would
// feed the buffer it is trying to drain.
thread_local bool in_sink = false;

class EventBridge : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (in_sink || !has_sink.load(std::memory_order_acquire)) return;
    LogEvent event;
    event.kind = "log";
    const auto level = spdlog::level::to_string_view(msg.level);
    event.level.assign(level.data(), level.size());
    if (event.level == "warning") event.level = "warn";
    event.lineage = ChildOfCurrent();
    event.msg.assign(msg.payload.data(), msg.payload.size());
    event.ts_us =
        std::chrono::duration_cast<std::chrono::microseconds>(msg.time.time_since_epoch()).count();
    Emit(std::move(event));
  }
  void flush_() override {}
};

int64_t IntField(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_int64() ? v->get_int64() : 0;
}

std::string StringField(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// "2026-11-23T17:07:20.123456Z" → Unix µs; 0 when it does not parse.
int64_t ParseIso(std::string_view s) {
  std::tm tm{};
  int frac_us = 0;
  if (s.size() < 20) return 0;
  const std::string head(s.substr(0, 19));
  if (!strptime(head.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
  size_t i = 19;
  if (i < s.size() && s[i] == '.') {
    int digits = 0;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
      if (digits < 6) frac_us = frac_us * 10 + (s[i] - '0');
      ++digits;
    }
    for (; digits < 6; ++digits) frac_us *= 10;
  }
  return static_cast<int64_t>(timegm(&tm)) * 1000000 + frac_us;
}

}  // namespace

void InitDefault() { Init(config::LoggingSettings{}); }

void Init(const config::LoggingSettings& settings, std::string_view node, std::string_view env) {
  identity_node = node;
  identity_env = env;
  enabled_rank = LevelRank(settings.level);
  std::vector<spdlog::sink_ptr> sinks;
  if (settings.console) {
    auto console = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    console->set_formatter(MakeFormatter(true));
    sinks.push_back(console);
  }
  if (settings.journald) {
    auto journal = std::make_shared<spdlog::sinks::systemd_sink_mt>("beds");
    journal->set_formatter(MakeFormatter(false));
    sinks.push_back(journal);
  }
  sinks.push_back(std::make_shared<EventBridge>());
  auto logger = std::make_shared<spdlog::logger>("beds", sinks.begin(), sinks.end());
  logger->set_level(spdlog::level::from_str(settings.level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

void Flush() {
  if (auto logger = spdlog::default_logger()) logger->flush();
}

EventScope::EventScope(const Lineage& lineage) : previous_(std::move(current_lineage)) {
  current_lineage = lineage;
}

EventScope::EventScope(std::string_view event_id) : previous_(std::move(current_lineage)) {
  current_lineage = Lineage{std::string(event_id), "", 0};
}

EventScope::~EventScope() { current_lineage = std::move(previous_); }

const Lineage& CurrentLineage() { return current_lineage; }

Lineage ChildOfCurrent() {
  if (current_lineage.event_id.empty()) return RootLineage(identity_node, identity_env);
  return ChildLineage(current_lineage, identity_node, identity_env);
}

int LevelRank(std::string_view level) {
  static constexpr std::array<std::string_view, 7> kLevels = {"trace", "debug",    "info", "warn",
                                                              "error", "critical", "off"};
  for (size_t i = 0; i < kLevels.size(); ++i) {
    if (kLevels[i] == level) return static_cast<int>(i);
  }
  if (level == "warning") return 3;
  if (level == "err") return 4;
  return -1;
}

bool Enabled(std::string_view level) {
  const int rank = LevelRank(level);
  return rank >= 0 && rank < 6 && rank >= enabled_rank.load(std::memory_order_relaxed);
}

namespace {

// A JSON string literal, appended. Every node encodes every event it emits, so this writes the
// few fields straight into one buffer rather than building a JSON object to serialize.
void AppendQuoted(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t plain = 0;  // start of the run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
    }
  }
  out.append(s.data() + plain, s.size() - plain);
  out += '"';
}

void AppendField(std::string& out, std::string_view name, std::string_view value) {
  out += ",\"";
  out += name;
  out += "\":";
  AppendQuoted(out, value);
}

void AppendField(std::string& out, std::string_view name, int64_t value) {
  out += ",\"";
  out += name;
  out += "\":";
  out += std::to_string(value);
}

}  // namespace

std::string EncodeEvent(const LogEvent& e) {
  std::string out;
  out.reserve(256 + e.msg.size());
  out += "{\"ts\":";
  AppendQuoted(out, IsoTimeUs(e.ts_us));
  AppendField(out, "kind", e.kind);
  AppendField(out, "level", e.level);
  AppendField(out, "node", e.node);
  AppendField(out, "env", e.env);
  AppendField(out, "event_id", e.lineage.event_id);
  AppendField(out, "parent_id", e.lineage.parent_id);
  AppendField(out, "depth", e.lineage.depth);
  AppendField(out, "template", e.template_name);
  AppendField(out, "op", e.op);
  AppendField(out, "msg", e.msg);
  AppendField(out, "duration_us", e.duration_us);
  out += ",\"fields\":";
  out += json::serialize(e.fields);
  out += '}';
  return out;
}

Result<LogEvent> DecodeEvent(std::string_view body) {
  // The admin node decodes every event: parse into an arena, then copy out what is kept.
  unsigned char arena[4096];
  json::monotonic_resource memory(arena, sizeof arena);
  boost::system::error_code ec;
  json::value v = json::parse(body, ec, &memory);
  if (ec || !v.is_object()) {
    return std::unexpected(Error{Code::kBadRequest, "a log event must be a JSON object"});
  }
  const json::object& o = v.get_object();
  LogEvent e;
  e.kind = StringField(o, "kind");
  if (e.kind.empty()) e.kind = "log";
  e.level = StringField(o, "level");
  e.node = StringField(o, "node");
  e.env = StringField(o, "env");
  e.lineage.event_id = StringField(o, "event_id");
  e.lineage.parent_id = StringField(o, "parent_id");
  e.lineage.depth = static_cast<int>(IntField(o, "depth"));
  e.template_name = StringField(o, "template");
  e.op = StringField(o, "op");
  e.msg = StringField(o, "msg");
  e.duration_us = IntField(o, "duration_us");
  e.ts_us = ParseIso(StringField(o, "ts"));
  if (const auto* f = o.if_contains("fields"); f && f->is_object()) {
    e.fields = json::object(f->get_object(), json::storage_ptr());  // out of the arena
  }
  if (!IsEventId(e.lineage.event_id)) {
    return std::unexpected(Error{Code::kBadRequest, "a log event needs an event_id"});
  }
  if (!e.lineage.parent_id.empty() && !IsEventId(e.lineage.parent_id)) {
    return std::unexpected(Error{Code::kBadRequest, "parent_id is not an event id"});
  }
  if (e.ts_us == 0) return std::unexpected(Error{Code::kBadRequest, "ts is not ISO 8601"});
  if (LevelRank(e.level) < 0) {
    return std::unexpected(Error{Code::kBadRequest, "level is not a log level"});
  }
  return e;
}

std::vector<Result<LogEvent>> DecodeEvents(std::string_view body, std::string_view content_type) {
  std::vector<Result<LogEvent>> out;
  if (content_type != kBatchContentType) {
    out.push_back(DecodeEvent(body));
    return out;
  }
  while (!body.empty()) {
    const size_t nl = body.find('\n');
    const std::string_view line = body.substr(0, nl);
    if (!line.empty()) out.push_back(DecodeEvent(line));
    if (nl == std::string_view::npos) break;
    body.remove_prefix(nl + 1);
  }
  if (out.empty()) {
    out.push_back(std::unexpected(Error{Code::kBadRequest, "an empty batch of log events"}));
  }
  return out;
}

std::string RoutingKey(const LogEvent& e) {
  if (e.kind == "audit") return "audit." + e.template_name + "." + e.op;
  if (e.kind == "metric") return "metric." + e.node;
  return "log." + e.level + "." + e.node;
}

void SetEventSink(std::shared_ptr<EventSink> new_sink) {
  std::lock_guard lock(sink_mutex);
  sink = std::move(new_sink);
  has_sink.store(sink != nullptr, std::memory_order_release);
}

void MuteEventsOnThisThread() { in_sink = true; }

bool HasSink() { return has_sink.load(std::memory_order_acquire); }

void Emit(LogEvent event) {
  if (!has_sink.load(std::memory_order_acquire)) return;
  std::shared_ptr<EventSink> target;
  {
    std::lock_guard lock(sink_mutex);
    target = sink;
  }
  if (!target) return;
  if (event.node.empty() || event.env.empty()) {
    if (event.node.empty()) event.node = identity_node;
    if (event.env.empty()) event.env = identity_env;
  }
  if (event.ts_us == 0) event.ts_us = NowUnixUs();
  const bool was_muted = in_sink;
  in_sink = true;
  target->Emit(std::move(event));
  in_sink = was_muted;
}

}  // namespace beds::logs
