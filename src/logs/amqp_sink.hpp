// The AMQP log sink: publishes log, audit and metric events on beds.logs (docs/protocol.md routing
// keys) from a bounded in-memory buffer, so a slow or absent broker never delays a request.
// Emit() takes a mutex for a push and never touches the network; one background thread publishes
// in batches with publisher confirms, lingering up to `flush_interval` for a batch to fill. When
// the buffer is full, or the broker is away, events go to a local spill file (one
// `routing_key<TAB>event` line each) up to `spill_max_bytes`; past that they are dropped and
// counted. The spill file is replayed, oldest first, when the broker returns (also after a restart
// of the node). Events are published mandatory: a log or audit event that no queue takes (no
// admin node has ever declared its queue on this vhost) comes back, waits in the spill file too,
// and is offered again with backoff, so nothing emitted before the first admin node started is
// lost; metric figures nobody takes are only counted (the next ones supersede them).
// Delivery is at least once: the log store dedupes by event id. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "amqp/channel.hpp"
#include "config/config.hpp"
#include "logs/logs.hpp"

namespace beds::logs {

struct AmqpSinkSettings {
  config::AmqpSettings amqp;
  size_t buffer_events = 10000;  // in memory, waiting for the publisher
  std::string spill_path;        // "" = no spill file: overflow is dropped
  int64_t spill_max_bytes = int64_t{256} << 20;
  size_t batch_events = 512;  // events per confirmed publish batch
  // How long an event may wait in the buffer for others to share its publish. The broker's cost
  // is per message, not per event: lingering turns a busy node's thousands of events a second
  // into a few dozen messages. A batch goes as soon as it is full (or half the buffer is used).
  std::chrono::milliseconds flush_interval{50};
  // Opens the channel the sink publishes on (beds.logs declared, publisher confirms on). Unset: a
  // connection to `amqp`; the sink's unit tests give an in-memory broker.
  std::function<Result<std::unique_ptr<amqp::Channel>>()> open;
};

struct SinkStats {
  uint64_t emitted = 0;    // events handed to Emit()
  uint64_t published = 0;  // confirmed by the broker and taken by a queue (replayed included)
  uint64_t unrouted = 0;   // handed back by the broker: no queue was bound to the key (yet)
  uint64_t spilled = 0;    // written to the spill file
  uint64_t replayed = 0;   // read back from the spill file and confirmed
  uint64_t dropped = 0;    // lost: buffer full and spill file full (or none)
  uint64_t reconnects = 0;
  uint64_t buffered = 0;    // in memory now
  int64_t spill_bytes = 0;  // in the spill file now
  bool connected = false;
};

class AmqpSink : public EventSink {
 public:
  explicit AmqpSink(AmqpSinkSettings settings);
  ~AmqpSink() override;  // Stop()
  AmqpSink(const AmqpSink&) = delete;
  AmqpSink& operator=(const AmqpSink&) = delete;

  void Emit(LogEvent event) override;

  // Publishes what is buffered for up to `grace`, spills the rest, and stops the thread.
  void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

  SinkStats Stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace beds::logs
