#include "logs/logs.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <vector>

namespace beds::logs {
namespace {

thread_local std::string current_event_id;

// %E in the pattern: the calling thread's event id, or "-" outside a request.
class EventIdFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string_view id =
        current_event_id.empty() ? std::string_view("-") : std::string_view(current_event_id);
    dest.append(id.data(), id.data() + id.size());
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

}  // namespace

void InitDefault() { Init(config::LoggingSettings{}); }

void Init(const config::LoggingSettings& settings) {
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
  auto logger = std::make_shared<spdlog::logger>("beds", sinks.begin(), sinks.end());
  logger->set_level(spdlog::level::from_str(settings.level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

void Flush() {
  if (auto logger = spdlog::default_logger()) logger->flush();
}

EventScope::EventScope(std::string_view event_id) : previous_(std::move(current_event_id)) {
  current_event_id = event_id;
}

EventScope::~EventScope() { current_event_id = std::move(previous_); }

void SetEventSink(std::shared_ptr<EventSink> new_sink) {
  std::lock_guard lock(sink_mutex);
  sink = std::move(new_sink);
  has_sink.store(sink != nullptr, std::memory_order_release);
}

void Emit(const LogEvent& event) {
  if (!has_sink.load(std::memory_order_acquire)) return;
  std::shared_ptr<EventSink> target;
  {
    std::lock_guard lock(sink_mutex);
    target = sink;
  }
  if (target) target->Emit(event);
}

}  // namespace beds::logs
