// Process-wide logging: spdlog to the console and/or journald, every line stamped with the event
// id of the request the logging thread is working on (EventScope). Init() once at IPL step 2,
// before any worker thread starts; the log calls themselves (spdlog::info …) are thread-safe.
//
// Structured events (docs/protocol.md "Log events") go to an EventSink when one is installed: the
// AMQP log sink (logs/amqp_sink.hpp) publishes them on beds.logs. With a sink installed, every
// spdlog line at or above the configured level becomes a `log` event too, a child of the thread's
// current event. With none installed, Emit() costs one atomic load.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"
#include "core/lineage.hpp"

namespace beds::logs {

// Console only, level info: what runs before the configuration is loaded.
void InitDefault();

// Applies [logging]: level, console, journald. Call before other threads log or emit events
// (IPL step 2); calling it again while they run is not safe.
// `node` and `env` name this process in the events it emits (event ids, the `node` field).
void Init(const config::LoggingSettings& settings, std::string_view node = "beds",
          std::string_view env = "dev");

void Flush();

// While alive, lines logged by this thread carry the event's id, and the events emitted from
// it (log lines, adapter calls) are its children; restores the previous scope after.
class EventScope {
 public:
  explicit EventScope(const Lineage& lineage);
  explicit EventScope(std::string_view event_id);  // a root event known only by its id
  ~EventScope();
  EventScope(const EventScope&) = delete;
  EventScope& operator=(const EventScope&) = delete;

 private:
  Lineage previous_;
};

// The lineage of the thread's current event (empty event_id outside any scope).
const Lineage& CurrentLineage();

// A fresh event caused by the thread's current event (a root when there is none).
Lineage ChildOfCurrent();

// The kinds of event (the `kind` field, an extension of docs/protocol.md's log event):
//   request  one per handled request: its template, op, outcome and duration
//   adapter  one per database call a request made
//   audit    one per write: template, op, key, actor, after (what the write returned)
//   log      a log line
//   ipl      a node's start: version, config digest, templates
//   metric   a node's counters
struct LogEvent {
  std::string kind = "log";
  std::string level = "info";  // trace … critical
  std::string node;            // "" = this process's (Init)
  std::string env;
  Lineage lineage;
  std::string template_name;
  std::string op;
  std::string msg;
  int64_t duration_us = 0;
  int64_t ts_us = 0;           // Unix µs; 0 = when emitted
  boost::json::object fields;  // anything else the event carries
};

// The wire form (docs/protocol.md "Log events", plus `kind`).
std::string EncodeEvent(const LogEvent& event);
// Parses an event as published by EncodeEvent (or by a client in another language); BAD_REQUEST
// for anything that is not such an object.
Result<LogEvent> DecodeEvent(std::string_view body);
// A message on beds.logs carries one event (application/json, docs/protocol.md's form) or, from the
// AMQP log sink of a busy node, several with the same routing key: content type
// application/x-ndjson, one event per line, x-beds-events = how many (an extension of v1).
inline constexpr std::string_view kBatchContentType = "application/x-ndjson";
inline constexpr std::string_view kBatchCountHeader = "x-beds-events";
// Every event of a message, each decoded on its own (one bad line spoils only itself).
std::vector<Result<LogEvent>> DecodeEvents(std::string_view body, std::string_view content_type);
// Its routing key on beds.logs: log.{level}.{node}, audit.{template}.{op} or metric.{node}.
std::string RoutingKey(const LogEvent& event);

// Severity order of level names: trace 0 … critical 5, off 6; unknown names are -1.
int LevelRank(std::string_view level);

// Whether events at `level` pass the configured level (request and adapter events are `info`).
bool Enabled(std::string_view level);

// Receives structured events. Emit must not block: a sink buffers and spills, never waits.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Emit(LogEvent event) = 0;
};

// Installs (or with nullptr removes) the sink; thread-safe.
void SetEventSink(std::shared_ptr<EventSink> sink);

// Hands the event to the installed sink, if any, stamping node, env and ts when unset.
void Emit(LogEvent event);

// Log lines of the calling thread never become events: for the sink's own thread, whose
// connection trouble must not feed the buffer it drains.
void MuteEventsOnThisThread();

// Whether a sink is installed (callers may skip building an event when none is).
bool HasSink();

}  // namespace beds::logs
