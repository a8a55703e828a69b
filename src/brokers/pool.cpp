#include "brokers/pool.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "amqp/topology.hpp"
#include "brokers/intake.hpp"
#include "brokers/worker.hpp"

namespace beds::brokers {

namespace {

std::string HeaderText(const amqp::Delivery& delivery, const char* name) {
  auto h = delivery.message.headers.find(name);
  if (h == delivery.message.headers.end()) return {};
  const auto* s = std::get_if<std::string>(&h->second);
  return s ? *s : std::string();
}

}  // namespace

Sender SenderOf(const amqp::Delivery& delivery, const std::vector<std::string>& trusted_users) {
  Sender sender;
  if (!delivery.message.user_id.empty()) {
    sender = Sender{delivery.message.user_id, true, {}, {}};
  } else if (delivery.exchange != amqp::kEventsExchange) {
    sender = Sender{HeaderText(delivery, kUserHeader), false, {}, {}};
  }
  const std::string actor = HeaderText(delivery, kActorHeader);
  if (actor.empty()) return sender;
  // A retried copy names its trusted user in x-beds-user (unverified, as every copy is), so its
  // write keeps the principal's exactly-once scope.
  if (!sender.user.empty() &&
      std::find(trusted_users.begin(), trusted_users.end(), sender.user) != trusted_users.end()) {
    sender.via = std::move(sender.user);
    sender.user = actor;
  } else {
    sender.claimed = actor;
  }
  return sender;
}

std::vector<Outcome> Handler::HandleBatch(const std::vector<amqp::Delivery>& batch) {
  std::vector<Outcome> out;
  out.reserve(batch.size());
  for (const auto& d : batch) out.push_back(Handle(d, 0));
  return out;
}

struct Pool::Impl {
  config::BrokerSettings broker;
  std::unique_ptr<Links> links;
  HandlerMaker make_handler;
  PoolCounters counters;
  std::unique_ptr<Intake> intake;  // the workers' links: their lanes on the pool's connection

  // Guarded by `mutex`: the worker slots and the flag that a worker has exited.
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::unique_ptr<Worker>> workers;
  bool exit_pending = false;
  bool stopping = false;

  std::jthread supervisor;

  std::unique_ptr<Worker> MakeWorker(int index) {
    return std::make_unique<Worker>(index, broker, *intake, SteadyClock(), make_handler(), counters,
                                    [this] {
                                      std::lock_guard lock(mutex);
                                      exit_pending = true;
                                      changed.notify_all();
                                    });
  }

  // Replaces every worker that died; runs until Stop(). Joins outside the lock: a dying worker
  // takes the lock in its exit callback.
  void Supervise(std::stop_token stop) {
    while (true) {
      std::vector<size_t> dead;
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return exit_pending || stopping || stop.stop_requested(); });
        if (stopping || stop.stop_requested()) return;
        exit_pending = false;
        for (size_t i = 0; i < workers.size(); ++i) {
          if (workers[i]->exited() && workers[i]->died()) dead.push_back(i);
        }
      }
      for (size_t i : dead) {
        workers[i]->Join();
        auto fresh = MakeWorker(static_cast<int>(i));
        // The old worker is destroyed after the lock is released: its handler may still be
        // closing database connections.
        std::unique_ptr<Worker> replaced;
        {
          std::lock_guard lock(mutex);
          replaced = std::exchange(workers[i], std::move(fresh));
        }
        counters.respawns.fetch_add(1);
        spdlog::warn("broker {}: worker {} replaced ({} respawns so far)", broker.name, i,
                     counters.respawns.load());
      }
    }
  }
};

Pool::Pool(config::BrokerSettings broker, config::AmqpSettings amqp, HandlerMaker make_handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->broker = std::move(broker);
  impl_->links = std::make_unique<AmqpLinks>(std::move(amqp));
  impl_->make_handler = std::move(make_handler);
}

Pool::Pool(config::BrokerSettings broker, config::AmqpSettings amqp,
           std::shared_ptr<Handler> handler)
    : Pool(std::move(broker), std::move(amqp), [handler] { return handler; }) {}

Pool::~Pool() { Stop(); }

void Pool::Start() {
  std::lock_guard lock(impl_->mutex);
  // A dispatcher answers pings on the intake's thread, with a handler of its own.
  std::shared_ptr<Handler> quick;
  if (impl_->broker.handler == config::HandlerKind::kDispatch) quick = impl_->make_handler();
  impl_->intake = std::make_unique<Intake>(impl_->broker, *impl_->links, SteadyClock(),
                                           std::move(quick), impl_->counters);
  impl_->intake->Start();
  for (int i = 0; i < impl_->broker.instances; ++i) impl_->workers.push_back(impl_->MakeWorker(i));
  impl_->supervisor = std::jthread([this](std::stop_token stop) { impl_->Supervise(stop); });
}

void Pool::RequestStop() {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) return;
    impl_->stopping = true;
    impl_->changed.notify_all();
  }
  if (impl_->supervisor.joinable()) impl_->supervisor.join();
  // No supervisor any more: the slots are ours.
  for (auto& w : impl_->workers) w->RequestStop();
  if (impl_->intake) impl_->intake->RequestStop();
}

void Pool::Stop() {
  RequestStop();
  for (auto& w : impl_->workers) w->Join();
  impl_->workers.clear();
  // Last: it writes what the workers answered before they ended.
  if (impl_->intake) impl_->intake->Stop();
  impl_->intake.reset();
}

PoolStats Pool::Stats() const {
  const PoolCounters& c = impl_->counters;
  PoolStats s;
  s.broker = impl_->broker.name;
  s.handler = config::HandlerName(impl_->broker.handler);
  s.instances = impl_->broker.instances;
  s.alive = c.alive.load();
  s.connected = c.connected.load();
  s.respawns = c.respawns.load();
  s.consumed = c.consumed.load();
  s.acked = c.acked.load();
  s.retried = c.retried.load();
  s.parked = c.parked.load();
  s.reconnects = c.reconnects.load();
  s.in_flight = c.in_flight.load();
  return s;
}

}  // namespace beds::brokers
