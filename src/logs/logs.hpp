// Process-wide logging: spdlog to the console and/or journald, every line stamped with the event
// id of the request the logging thread is working on (EventScope). Init() once at IPL step 2,
// before any worker thread starts; the log calls themselves (spdlog::info …) are thread-safe.
//
// Structured events (PROTOCOL.md "Log event") also go to an EventSink when one is installed:
// that is where the AMQP log sink of the admin pipeline plugs in. With none installed, Emit()
// costs one atomic load.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "core/lineage.hpp"

namespace beds::logs {

// Console only, level info: what runs before the configuration is loaded.
void InitDefault();

// Applies [logging]: level, console, journald. Safe to call again (tests, reload).
void Init(const config::LoggingSettings& settings);

void Flush();

// While alive, lines logged by this thread carry `event_id`; restores the previous id after.
class EventScope {
 public:
  explicit EventScope(std::string_view event_id);
  ~EventScope();
  EventScope(const EventScope&) = delete;
  EventScope& operator=(const EventScope&) = delete;

 private:
  std::string previous_;
};

struct LogEvent {
  std::string level;  // info, warn, …
  std::string node;
  std::string env;
  Lineage lineage;
  std::string template_name;
  std::string op;
  std::string msg;
  int64_t duration_us = 0;
};

// Receives structured events. Emit must not block: a sink buffers and drops, never waits.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Emit(const LogEvent& event) = 0;
};

// Installs (or with nullptr removes) the sink; thread-safe.
void SetEventSink(std::shared_ptr<EventSink> sink);

// Hands the event to the installed sink, if any.
void Emit(const LogEvent& event);

}  // namespace beds::logs
